"""Tests of the backend adapters in providers/."""
