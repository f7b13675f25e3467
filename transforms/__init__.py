"""Normalise: small pure functions from source records to the standard's rows (no I/O).
May import standards/ only."""
