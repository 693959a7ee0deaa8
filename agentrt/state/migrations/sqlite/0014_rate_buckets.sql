-- Rate buckets: one per tenant's Model with rate limits, its levels of requests and
-- tokens at its last take (negative: owed to takers waiting their turn), and the
-- limits that take was made under.
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    requests REAL NOT NULL,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER
);
CREATE INDEX rate_buckets_namespace ON rate_buckets (namespace, key);
