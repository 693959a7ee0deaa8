-- Tool quotas: one row per recorded tool call, so counting a tenant's or a
-- session's calls never decodes event payloads. Namespace and session are
-- copied from the run so both counts are served by one index each. Nothing
-- to backfill: tool.call events got their "toolset" key with this version.
CREATE TABLE tool_calls (
    run_pk INTEGER NOT NULL REFERENCES runs (pk),
    seq INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    session_id TEXT,
    tool TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (run_pk, seq)
) WITHOUT ROWID;

-- Quota per tenant per day.
CREATE INDEX tool_calls_tenant ON tool_calls (namespace, tool, ts);

-- Quota per session; most runs have no session, so only the others are indexed.
CREATE INDEX tool_calls_session ON tool_calls (session_id, tool, ts, namespace) WHERE session_id IS NOT NULL;
