-- The budget ledger: an account per budget and period (a tenant's Budget in a day or
-- a month), with what settled steps used and what steps in flight hold; and each
-- step's reservation, held until its result is recorded. Cost is in billionths of a
-- dollar, so sums are exact.
CREATE TABLE budget_accounts (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    max_tokens BIGINT,
    max_input_tokens BIGINT,
    max_output_tokens BIGINT,
    max_cost_nusd BIGINT,
    max_tool_calls BIGINT,
    used_input BIGINT NOT NULL DEFAULT 0,
    used_output BIGINT NOT NULL DEFAULT 0,
    used_cost_nusd BIGINT NOT NULL DEFAULT 0,
    used_tool_calls BIGINT NOT NULL DEFAULT 0,
    held_input BIGINT NOT NULL DEFAULT 0,
    held_output BIGINT NOT NULL DEFAULT 0,
    held_cost_nusd BIGINT NOT NULL DEFAULT 0,
    held_tool_calls BIGINT NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX budget_accounts_namespace ON budget_accounts (namespace, key);
CREATE TABLE budget_reservations (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    accounts TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_nusd BIGINT NOT NULL,
    tool_calls BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    settled_at DOUBLE PRECISION,
    actual_input BIGINT,
    actual_output BIGINT,
    actual_cost_nusd BIGINT,
    actual_tool_calls BIGINT
);
-- A run's reservations still held, released when it ends.
CREATE INDEX budget_reservations_held ON budget_reservations (run_id) WHERE settled_at IS NULL;
