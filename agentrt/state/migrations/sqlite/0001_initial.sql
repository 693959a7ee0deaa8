-- The first schema: resources, sessions, runs with leases, the event log and its blobs.

CREATE TABLE resources (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    created_at REAL NOT NULL,
    parent_session TEXT,
    parent_turn INTEGER,
    next_turn INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- parent_run is informational (no FK): gc may delete the parent of a fork.
CREATE TABLE runs (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    session_id TEXT REFERENCES sessions (id),
    turn INTEGER,
    reason TEXT,
    finished_at REAL,
    idempotency_key TEXT,
    parent_run TEXT,
    fork_step INTEGER,
    lease_owner TEXT,
    lease_expires REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    model_calls INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, idempotency_key)
);

-- list_runs(session_id=...) and the sessions FK lookups; NULLs never collide.
CREATE UNIQUE INDEX runs_session_turn ON runs (session_id, turn);

-- list_runs: newest first.
CREATE INDEX runs_created ON runs (created_at);

-- claim_runs: only active runs are indexed, so it stays small.
CREATE INDEX runs_claimable ON runs (created_at) WHERE status IN ('queued', 'running');

-- gc: only finished runs are indexed.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE events (
    run_pk INTEGER NOT NULL REFERENCES runs (pk),
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    step INTEGER,
    ts REAL NOT NULL,
    data BLOB,
    blob BLOB,
    PRIMARY KEY (run_pk, seq)
) WITHOUT ROWID;

-- gc: finding unreferenced blobs; only events with a blob are indexed.
CREATE INDEX events_blob ON events (blob) WHERE blob IS NOT NULL;

CREATE TABLE blobs (
    hash BLOB PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
