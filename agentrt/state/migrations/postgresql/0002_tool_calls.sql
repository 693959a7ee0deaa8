-- Tool quotas: one row per recorded tool call, so counting a tenant's or a
-- session's calls never decodes event payloads. Namespace and session are
-- copied from the run so both counts are served by one index each.
CREATE TABLE tool_calls (
    run_pk BIGINT NOT NULL REFERENCES runs (pk),
    seq BIGINT NOT NULL,
    namespace TEXT NOT NULL,
    session_id TEXT,
    tool TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_pk, seq)
);

-- Quota per tenant per day.
CREATE INDEX tool_calls_tenant ON tool_calls (namespace, tool, ts);

-- Quota per session; most runs have no session, so only the others are indexed.
CREATE INDEX tool_calls_session ON tool_calls (session_id, tool, ts, namespace) WHERE session_id IS NOT NULL;
