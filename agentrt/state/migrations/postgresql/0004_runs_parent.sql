-- list_runs(parent=...): a run's children and forks; most runs have no
-- parent, so only the others are indexed.
CREATE INDEX runs_parent ON runs (parent_run, created_at) WHERE parent_run IS NOT NULL;
