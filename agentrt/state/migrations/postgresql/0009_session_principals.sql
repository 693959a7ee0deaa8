-- Who started a session (the principal of its first turn, an API key's `key:NAME`);
-- NULL where nobody is known (the CLI, older sessions). A `user` key sees only its own.
ALTER TABLE sessions ADD COLUMN principal TEXT;
CREATE INDEX sessions_namespace_principal ON sessions (namespace, principal, created_at, id)
    WHERE principal IS NOT NULL;
