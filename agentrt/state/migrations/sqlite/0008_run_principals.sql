-- Who started a run (an API key's principal, `key:NAME`), who first asked for its
-- cancellation and when; NULL where nobody is known (the CLI, a worker, older runs).
ALTER TABLE runs ADD COLUMN principal TEXT;
ALTER TABLE runs ADD COLUMN cancel_by TEXT;
ALTER TABLE runs ADD COLUMN cancel_at REAL;
-- list_runs pages newest first by (created_at, id): a page's cursor is that pair,
-- which is unique, so a run is on exactly one page however many are inserted.
DROP INDEX runs_created;
CREATE INDEX runs_created ON runs (created_at, id);
DROP INDEX runs_parent;
CREATE INDEX runs_parent ON runs (parent_run, created_at, id) WHERE parent_run IS NOT NULL;
-- A tenant's runs, alone or by status, by target, by principal, newest first.
CREATE INDEX runs_namespace ON runs (namespace, created_at, id);
CREATE INDEX runs_namespace_status ON runs (namespace, status, created_at, id);
CREATE INDEX runs_namespace_agent ON runs (namespace, agent, created_at, id);
CREATE INDEX runs_namespace_principal ON runs (namespace, principal, created_at, id)
    WHERE principal IS NOT NULL;
