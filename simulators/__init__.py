"""Simulated sources for tests and the demo: a seeded province and the portal serving it."""
