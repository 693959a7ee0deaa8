"""agentrt: an Agentic Runtime that runs AI agents as durable, governable workloads."""

__version__ = "0.1.0"
