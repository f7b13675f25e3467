"""Benchmarks: scripts that measure, never tests that assert (issue 11)."""
