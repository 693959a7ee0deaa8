"""agentrt.observe."""
