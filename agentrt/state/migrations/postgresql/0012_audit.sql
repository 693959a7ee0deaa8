-- The audit log. Per tenant, records numbered 1, 2, 3, ... without a gap, each
-- holding the previous record's hash and its own: SHA-256 over its fields and that
-- previous hash (agentrt/observe/audit.py), so an edited, removed, inserted or moved
-- record breaks the chain at the first one. body is the canonical JSON that was
-- hashed (text, not jsonb: jsonb would not keep it byte for byte). A record that
-- reflects an event of a run's log names it (run_id, event_seq) and is written in
-- the same transaction as the event, once. ref is a caller's key: an append whose
-- ref is recorded writes nothing. Runs and sessions deleted keep their records.
CREATE TABLE audit (
    namespace TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT,
    run_id TEXT,
    agent TEXT,
    event_seq BIGINT,
    ref TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (namespace, seq)
);
-- Each tenant's last record. An append locks its row, takes the next seq from it and
-- sets it before committing, so concurrent appends of one tenant, on any number of
-- workers, follow one another: none takes a seq another took, none forks the chain.
-- Verification knows where the log ends from it (a removed last record is missed).
CREATE TABLE audit_heads (
    namespace TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_ref ON audit (namespace, ref) WHERE ref IS NOT NULL;
CREATE UNIQUE INDEX audit_event ON audit (run_id, event_seq) WHERE run_id IS NOT NULL;
-- audit list: a tenant's records by who, by agent, by kind, in a time range.
CREATE INDEX audit_principal ON audit (namespace, principal, seq) WHERE principal IS NOT NULL;
CREATE INDEX audit_agent ON audit (namespace, agent, seq) WHERE agent IS NOT NULL;
CREATE INDEX audit_kind ON audit (namespace, kind, seq);
CREATE INDEX audit_ts ON audit (namespace, ts);
-- Append-only: the store never changes nor deletes a record, and refuses to.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
