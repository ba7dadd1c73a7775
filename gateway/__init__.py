"""Switchyard: an async, OpenAI-compatible model gateway."""

__version__ = "0.1.0"
