"""Shared fixtures: real warehouses (SQLite file, and a throw-away PostgreSQL database)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

# Airflow reads its home at import: give the test session a throw-away one, removed at exit.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="lienthong-test-airflow-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Tests write their drop files a moment before syncing them: no wait for a file to settle (a
# test of the wait sets it itself).
os.environ.setdefault("LIENTHONG_FILE_STABLE_SECONDS", "0")

# The province fixtures (a generated province behind a portal simulator) for every test folder.
pytest_plugins = ["tests.province"]

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip with a visible reason — except under CI=true, where a missing database fails the run."""
    if _in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _answering_server(variable: str, default: str, name: str) -> str:
    """The server URL in `variable` (else `default`), checked to answer a query."""
    url = os.environ.get(variable, default)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 — any failure to connect means "not available"
        unavailable(f"{name} at {make_url(url).render_as_string(hide_password=True)} "
                     f"does not answer ({type(exc).__name__})")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the PostgreSQL server for tests (TEST_POSTGRES_URL), checked to answer."""
    return _answering_server("TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL, "PostgreSQL")


def create_postgres_database(admin_url: str, template: str | None = None) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database (a copy of `template` when given); returns its URL and a dropper."""
    name = f"lienthong_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    url, drop = create_postgres_database(postgres_admin_url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite warehouse file for one test."""
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request) -> str:
    """An empty warehouse URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


DEFAULT_TEST_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def mysql_admin_url() -> str:
    """URL of the MariaDB/MySQL server for tests (TEST_MYSQL_URL), checked to answer."""
    return _answering_server("TEST_MYSQL_URL", DEFAULT_TEST_MYSQL_URL, "MariaDB")


@pytest.fixture
def mysql_url(mysql_admin_url: str) -> Iterator[str]:
    """A fresh, empty MariaDB database for one test, dropped afterwards."""
    name = f"lienthong_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mysql_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        yield make_url(mysql_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


# ── the hostile-input corpus (issue 10 §5): its figure at the end of a run that includes it ──────
# Here, not in tests/hostile/conftest.py: under pytest-xdist only this conftest is loaded by the
# controller, which is where the workers' reports are gathered and the summary is written.
_HOSTILE = "tests/hostile/"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line `hostile input: N cases tried, M handled`: the corpus's test items that ran (each
    parameter a case), and of them those that passed. Nothing when no item of the corpus ran."""
    outcomes: dict[str, str] = {}
    for outcome in ("passed", "failed", "error", "skipped", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(_HOSTILE):
                # a failed teardown after a passed call still fails the case
                if outcomes.get(nodeid) in (None, "passed"):
                    outcomes[nodeid] = outcome
    if outcomes:
        handled = sum(outcome == "passed" for outcome in outcomes.values())
        terminalreporter.write_line(f"hostile input: {len(outcomes)} cases tried, {handled} handled")
