"""The built-in demo: a scripted analyst agent with real tools, runnable offline."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_QUESTION", "demo_resources_path"]

DEFAULT_QUESTION = "How many seconds and minutes are in a leap year? Keep a note of it."


def demo_resources_path() -> Path:
    """The YAML file with the demo's Model, Tools and Agent."""
    return Path(__file__).with_name("resources.yaml")
