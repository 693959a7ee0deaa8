"""agentrt.engine."""
