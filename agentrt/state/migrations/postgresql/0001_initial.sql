-- The first schema: resources, sessions, runs with leases, the event log and its blobs.
-- The same versions as the SQLite store's migrations, in PostgreSQL's dialect. Times
-- are Unix seconds (DOUBLE PRECISION), as the store contract passes them.

CREATE TABLE resources (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    parent_session TEXT,
    parent_turn INTEGER,
    next_turn INTEGER NOT NULL DEFAULT 0
);

-- parent_run is informational (no FK): gc may delete the parent of a fork.
CREATE TABLE runs (
    pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    session_id TEXT REFERENCES sessions (id),
    turn INTEGER,
    reason TEXT,
    finished_at DOUBLE PRECISION,
    idempotency_key TEXT,
    parent_run TEXT,
    fork_step INTEGER,
    lease_owner TEXT,
    lease_expires DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    last_seq BIGINT NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    model_calls BIGINT NOT NULL DEFAULT 0,
    tool_calls BIGINT NOT NULL DEFAULT 0,
    UNIQUE (namespace, idempotency_key)
);

-- list_runs(session_id=...) and the sessions FK lookups; NULLs never collide.
CREATE UNIQUE INDEX runs_session_turn ON runs (session_id, turn);

-- list_runs: newest first.
CREATE INDEX runs_created ON runs (created_at, pk);

-- claim_runs: only active runs are indexed, so it stays small.
CREATE INDEX runs_claimable ON runs (created_at, pk) WHERE status IN ('queued', 'running');

-- gc: only finished runs are indexed.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- data is the orjson-encoded payload, or NULL when blob names it in the blob table.
CREATE TABLE events (
    run_pk BIGINT NOT NULL REFERENCES runs (pk),
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    step INTEGER,
    ts DOUBLE PRECISION NOT NULL,
    data BYTEA,
    blob BYTEA,
    PRIMARY KEY (run_pk, seq)
);

-- gc: finding unreferenced blobs; only events with a blob are indexed.
CREATE INDEX events_blob ON events (blob) WHERE blob IS NOT NULL;

CREATE TABLE blobs (
    hash BYTEA PRIMARY KEY,
    data BYTEA NOT NULL
);
