"""Benchmarks and load tools; results land in docs/."""
