# lienthong — the two commands: `make demo` and `make test`.
# Both create .venv when it is missing and install the pinned dependencies into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
UV_VERSION := 0.13.9
PACKAGES := connectors transforms standards quality warehouse pipeline reporting exchange simulators dags

export AIRFLOW_HOME ?= $(CURDIR)/var/airflow
export PYTHONPATH := $(CURDIR)

.PHONY: demo test crash-test cluster-test bench install lint clean help

help:
	@echo "make demo   run every source's DAG through Airflow on the simulated province and print the report"
	@echo "make test   run the test suite (PostgreSQL tests use TEST_POSTGRES_URL)"
	@echo "make crash-test  kill the sync at every crash point, re-run, compare (SQLite and PostgreSQL); updates docs/reliability.md"
	@echo "make cluster-test  the DAGs on a real CeleryExecutor cluster on loopback: api-server, scheduler,"
	@echo "                   dag-processor, two celery workers (PostgreSQL metadata, Redis broker)"
	@echo "make bench  throughput of the pipeline vs raw COPY, pandas to_sql and target-postgres (PostgreSQL, MariaDB); updates docs/benchmarks.md"
	@echo "make lint   ruff and mypy over the packages"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	@echo "installing pinned dependencies into $(VENV) (constraints.txt)…"
	@# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set
	@# (CI's machines) every process would compile Great Expectations, Airflow and pandas from
	@# source at import (`import great_expectations` 8 s instead of 3 s; every CLI and task pays it).
	@$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[dev,cluster]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lienthong demo

# Two pytest workers (pytest-xdist), a test file per worker at a time: the module-scoped
# provinces are built once. TEST_WORKERS=0 runs in this one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Every kill point of every source on both databases (docs/reliability.md); CRASH_ARGS passes options
# (e.g. CRASH_ARGS="--db sqlite --sources lgsp").
crash-test: $(STAMP)
	$(BIN)/python -m tests.reliability.crash_harness --doc docs/reliability.md $(CRASH_ARGS)

# Airflow's CeleryExecutor for real (tests/cluster/harness.py): every DAG triggered through the REST
# API, tasks on both workers, the warehouse's figures, `airflow backfill create` twice; CI runs it
# after `make test`. CLUSTER_ARGS passes options (e.g. CLUSTER_ARGS="--keep").
cluster-test: $(STAMP)
	$(BIN)/python -m tests.cluster.harness $(CLUSTER_ARGS)

# N = 10^5 and 10^6 by default; BENCH_ARGS passes options (e.g. BENCH_ARGS="--n 100000 --with-1e7").
# target-postgres runs from its own venv (.venv-bench, tests/benchmarks/bench-constraints.txt).
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench --doc docs/benchmarks.md $(BENCH_ARGS)

# mypy reads its file list from pyproject.toml ([tool.mypy] files): the same packages.
lint: $(STAMP)
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/mypy

clean:
	rm -rf var/airflow var/warehouse.db var/sim
