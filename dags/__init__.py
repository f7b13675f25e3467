"""The DAG files: thin wiring of the stages, one DAG per file (dag_id = file name), Airflow imported here only.
May import pipeline/, reporting/, exchange/ and the rooms below them; never simulators/."""
