"""agentrt.models."""
