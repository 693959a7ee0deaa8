-- Blobs a run refers to by name as of a step (its scratch snapshots), kept in the
-- blob table beside event payloads: gc keeps a blob while a run or an event refers
-- to it.
CREATE TABLE run_blobs (
    run_pk BIGINT NOT NULL REFERENCES runs (pk),
    name TEXT NOT NULL,
    step BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (run_pk, name, step)
);

-- gc: finding blobs no run refers to.
CREATE INDEX run_blobs_hash ON run_blobs (hash);
