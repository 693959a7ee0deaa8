-- Long-term memory per tenant. (namespace, key) makes a write happen once.
CREATE TABLE memories (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    key TEXT,
    run_id TEXT,
    session_id TEXT,
    created_at REAL NOT NULL,
    UNIQUE (namespace, key)
);

CREATE INDEX memories_listed ON memories (namespace, created_at);

-- External-content FTS5 index over text and tags, kept in step by triggers;
-- porter folds "rotates" and "rotation" to one stem.
CREATE VIRTUAL TABLE memories_fts USING fts5(text, tags, content='memories', content_rowid='pk', tokenize='porter unicode61');

CREATE TRIGGER memories_indexed AFTER INSERT ON memories BEGIN INSERT INTO memories_fts (rowid, text, tags) VALUES (new.pk, new.text, new.tags); END;

CREATE TRIGGER memories_unindexed AFTER DELETE ON memories BEGIN INSERT INTO memories_fts (memories_fts, rowid, text, tags) VALUES ('delete', old.pk, old.text, old.tags); END;
