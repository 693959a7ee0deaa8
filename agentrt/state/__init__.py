"""agentrt.state."""
