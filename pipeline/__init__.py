"""Runs the stages for one source (used by the DAG tasks and the CLI)."""
