-- Long-term memory per tenant. (namespace, key) makes a write happen once.
-- search is the fact's text and tags as an English tsvector (stemmed, stop words
-- dropped), written with the fact: the store's counterpart of SQLite's FTS5 index.
CREATE TABLE memories (
    pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT[] NOT NULL,
    key TEXT,
    run_id TEXT,
    session_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    search TSVECTOR NOT NULL,
    UNIQUE (namespace, key)
);

CREATE INDEX memories_listed ON memories (namespace, created_at);

CREATE INDEX memories_search ON memories USING GIN (search);
