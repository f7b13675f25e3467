"""Pure functions that turn source records into records of the shared standard."""
