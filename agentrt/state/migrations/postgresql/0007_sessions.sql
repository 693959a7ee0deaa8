-- Why a run's cancellation was asked for, when the asker said: the engine writes
-- 'interrupt' or 'rollback' when a newer turn of the run's session superseded it
-- (an interrupted turn stays in the session's history, a rolled-back one leaves it).
ALTER TABLE runs ADD COLUMN cancel_cause TEXT;
-- list_sessions: a tenant's sessions, newest first, a page at a time.
CREATE INDEX sessions_namespace ON sessions (namespace, created_at, id);
