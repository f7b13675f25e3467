"""Crash-recovery harness: SIGKILL the sync at named points, re-run it, compare the warehouse."""
