"""The runner: a stream as a batch, the declared sources, Airflow task entry points, settings, progress, CLI.
May import connectors/, transforms/, quality/, warehouse/, reporting/ and standards/; never exchange/ or simulators/."""
