"""Stand-ins for the agency and central systems, a seeded province generator, and the demo's orchestration.
May import every room; only simulators/, tests/ and the demo entry point (simulators/cli.py) import it."""
