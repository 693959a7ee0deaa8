"""Runnable examples. Run `agentrt` from the repository root so their tools import."""
