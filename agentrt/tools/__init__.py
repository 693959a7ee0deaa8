"""agentrt.tools."""
