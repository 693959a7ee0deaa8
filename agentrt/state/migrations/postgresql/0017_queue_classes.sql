-- Each tenant's queue by priority class, oldest first. The scheduler's read takes
-- the first few claimable runs of each class and ranks only those: its cost follows
-- the tenants and classes waiting, not the length of the queue.
CREATE INDEX runs_queue ON runs (namespace, priority, created_at, pk)
    WHERE status IN ('queued', 'running');
-- What runs now, per tenant and agent (the scheduler's shares and limits): counted
-- over the running runs alone.
CREATE INDEX runs_running ON runs (namespace, agent) WHERE status = 'running';
