-- How long a run's lease lasts from a write of its holder: set by every grant and
-- renewal, it lets each write the holder makes extend the lease, so a live holder
-- whose renewal waits behind that write keeps its run.
ALTER TABLE runs ADD COLUMN lease_ttl_s DOUBLE PRECISION;
