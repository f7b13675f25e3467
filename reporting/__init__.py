"""Reporting: the indicators, the report's tables and one module per output format, the data dictionary.
May import quality/, warehouse/, transforms/ and standards/; never pipeline/, exchange/ or simulators/."""
