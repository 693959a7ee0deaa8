"""Benchmarks of agentrt against a bare agent loop and LangGraph: ``python bench/run.py``."""
