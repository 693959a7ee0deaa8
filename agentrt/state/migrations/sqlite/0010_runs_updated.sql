-- An Agent's runs in a tenant, the last updated first by (updated_at, id), paged by
-- that pair and bounded by updated_at: A2A's ListTasks, and its totalSize counted
-- from the index alone.
CREATE INDEX runs_namespace_agent_updated ON runs (namespace, agent, updated_at, id);
