-- The budget ledger: an account per budget and period (a tenant's Budget in a day or
-- a month), with what settled steps used and what steps in flight hold; and each
-- step's reservation, held until its result is recorded. Cost is in billionths of a
-- dollar, so sums are exact.
CREATE TABLE budget_accounts (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    max_tokens INTEGER,
    max_input_tokens INTEGER,
    max_output_tokens INTEGER,
    max_cost_nusd INTEGER,
    max_tool_calls INTEGER,
    used_input INTEGER NOT NULL DEFAULT 0,
    used_output INTEGER NOT NULL DEFAULT 0,
    used_cost_nusd INTEGER NOT NULL DEFAULT 0,
    used_tool_calls INTEGER NOT NULL DEFAULT 0,
    held_input INTEGER NOT NULL DEFAULT 0,
    held_output INTEGER NOT NULL DEFAULT 0,
    held_cost_nusd INTEGER NOT NULL DEFAULT 0,
    held_tool_calls INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX budget_accounts_namespace ON budget_accounts (namespace, key);
CREATE TABLE budget_reservations (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    accounts TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_nusd INTEGER NOT NULL,
    tool_calls INTEGER NOT NULL,
    created_at REAL NOT NULL,
    settled_at REAL,
    actual_input INTEGER,
    actual_output INTEGER,
    actual_cost_nusd INTEGER,
    actual_tool_calls INTEGER
);
-- A run's reservations still held, released when it ends.
CREATE INDEX budget_reservations_held ON budget_reservations (run_id) WHERE settled_at IS NULL;
