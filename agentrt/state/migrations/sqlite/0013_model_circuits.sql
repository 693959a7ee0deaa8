-- The circuit breaker of each model endpoint (a Model and its base_url), shared by
-- every worker: closed (with its failed calls in a row), open until a time, or
-- half open while one probe call, claimed by its id, is let through.
CREATE TABLE model_circuits (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures INTEGER NOT NULL DEFAULT 0,
    open_until REAL NOT NULL DEFAULT 0,
    probe TEXT,
    probe_until REAL NOT NULL DEFAULT 0,
    opened INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX model_circuits_namespace ON model_circuits (namespace, key);
