-- A run's priority class (its query's): the scheduler takes a tenant's queued runs
-- by priority (raised the longer a run waits), then oldest first. The queue's read
-- goes over the claimable runs the runs_claimable index already finds.
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
