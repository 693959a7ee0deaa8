"""Sandbox backends for model-written code: gVisor, bubblewrap, process."""
