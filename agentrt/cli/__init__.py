"""agentrt.cli."""
