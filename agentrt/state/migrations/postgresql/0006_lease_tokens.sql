-- Fencing tokens: how many times a run's lease was granted to an owner that did
-- not hold it live. A write made under a lease may be conditional on it, so a
-- worker paused past its lease writes nothing once the run was granted again.
-- Existing runs start at 0: their next grant gives 1.
ALTER TABLE runs ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
