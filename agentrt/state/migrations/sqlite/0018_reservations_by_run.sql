-- Every reservation of a run, settled or not: garbage collection removes a removed
-- run's settled reservations with it (what they used stays on their accounts).
CREATE INDEX budget_reservations_run ON budget_reservations (run_id);
