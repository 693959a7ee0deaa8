-- A run's priority class (its query's): the scheduler takes a tenant's queued runs
-- by priority (raised the longer a run waits), then oldest first.
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_queue ON runs (namespace, priority, created_at) WHERE status IN ('queued', 'running');
