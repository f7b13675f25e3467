"""Who may see what, through real PostgreSQL connections as each role: loader, reporter, agencies."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg.errors
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pipeline.cli import main
from reporting.report import render_report
from tests.conftest import create_postgres_database
from tests.warehouse.frames import AGENCY, bad_frame, dossier, dossier_frame, local
from warehouse.db import create_engine, upgrade
from warehouse.load import BatchResult, BatchWriter
from warehouse.roles import RoleNames, apply_roles

AGENCY_A = AGENCY            # 000.00.04.H62: three dossiers
AGENCY_B = "000.00.03.H62"   # two dossiers

postgres = pytest.mark.postgres


@dataclass
class Warehouse:
    """A PostgreSQL warehouse with roles of a random prefix and one login user per role."""

    url: str
    names: RoleNames
    engines: dict[str, sa.Engine] = field(default_factory=dict)
    load_result: BatchResult | None = None

    def connect_as(self, user: str) -> sa.Engine:
        """An engine logged in as `user` (trust authentication, no password)."""
        if user not in self.engines:
            self.engines[user] = create_engine(make_url(self.url).set(username=user, password=None))
        return self.engines[user]

    def scalar(self, user: str, sql: str):
        with self.connect_as(user).connect() as conn:
            return conn.execute(sa.text(sql)).scalar()

    def rows(self, user: str, sql: str) -> list[tuple]:
        with self.connect_as(user).connect() as conn:
            return sorted(tuple(row) for row in conn.execute(sa.text(sql)))

    def user(self, name: str) -> str:
        return f"{self.names.prefix}user_{name}"


def _refused(wh: Warehouse, user: str, sql: str) -> None:
    with pytest.raises(sa.exc.ProgrammingError) as info:
        wh.scalar(user, sql)
    assert isinstance(info.value.orig, psycopg.errors.InsufficientPrivilege), info.value.orig


def _drop_roles(admin_url: str, prefix: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            roles = conn.execute(sa.text(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, :p) ORDER BY rolname"
            ), {"p": prefix}).scalars().all()
            for role in roles:
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
    finally:
        admin.dispose()


@pytest.fixture(scope="module")
def warehouse(postgres_admin_url: str) -> Iterator[Warehouse]:
    """Upgraded as the owner, roles applied for agencies A and B, dossiers loaded by the loader."""
    prefix = f"lt_{uuid.uuid4().hex[:8]}_"
    url, drop_database = create_postgres_database(postgres_admin_url)
    wh = Warehouse(url, RoleNames(prefix))
    try:
        upgrade(url)
        result = apply_roles(url, [AGENCY_A, AGENCY_B], prefix=prefix)
        assert result.applied
        owner = create_engine(url)
        try:
            with owner.begin() as conn:
                for user, role in [
                    ("loader", wh.names.loader),
                    ("reporter", wh.names.reporter),
                    ("a", wh.names.agency(AGENCY_A)),
                    ("b", wh.names.agency(AGENCY_B)),
                ]:
                    conn.exec_driver_sql(f'CREATE ROLE "{wh.user(user)}" LOGIN IN ROLE "{role}"')
        finally:
            owner.dispose()
        loader = wh.connect_as(wh.user("loader"))
        upgrade(loader)  # what the pipeline does before a sync: at head, it re-seeds the code lists
        good = [dossier(1, 0, updated=local(2017, 1, 6)),
                dossier(2, 1, updated=local(2017, 1, 6)),
                dossier(3, 2, updated=local(2017, 1, 6), status=10, channel=2),
                dossier(4, 3, updated=local(2017, 1, 6), agency=AGENCY_B),
                dossier(5, 4, updated=local(2017, 1, 6), agency=AGENCY_B)]
        bad = [dossier(6, 5, updated=local(2017, 1, 6), status=99)]
        with BatchWriter(loader, "national_portal", "dossiers", "dossier", None, None, "b1") as w:
            w.add(dossier_frame(good), bad_frame(bad, [["status.in_codelist"]]))
            wh.load_result = w.commit(None)
        yield wh
    finally:
        for engine in wh.engines.values():
            engine.dispose()
        try:
            drop_database()
        finally:
            _drop_roles(postgres_admin_url, prefix)


@postgres
def test_the_loader_loads_through_the_batch_writer(warehouse):
    assert (warehouse.load_result.rows_loaded, warehouse.load_result.rows_quarantined) == (5, 1)
    loader = warehouse.user("loader")
    assert warehouse.scalar(loader, "SELECT count(*) FROM fact_dossier") == 5
    assert warehouse.scalar(loader, "SELECT status FROM ops_batch WHERE batch_id = 'b1'") == "loaded"
    assert warehouse.scalar(loader, "SELECT count(payload) FROM ops_quarantine") == 1


@postgres
def test_an_agency_counts_only_its_own_dossiers(warehouse):
    assert warehouse.scalar(warehouse.user("a"), "SELECT count(*) FROM mart_dossier") == 3
    assert warehouse.scalar(warehouse.user("b"), "SELECT count(*) FROM mart_dossier") == 2
    assert warehouse.rows(warehouse.user("b"), "SELECT DISTINCT agency_code FROM mart_dossier") == [
        (AGENCY_B,)
    ]


@postgres
def test_an_agency_cannot_see_another_agency_even_in_fact_dossier(warehouse):
    a = warehouse.user("a")
    assert warehouse.rows(a, "SELECT DISTINCT agency_code FROM fact_dossier") == [(AGENCY_A,)]
    assert warehouse.scalar(a, f"SELECT count(*) FROM fact_dossier WHERE agency_code = '{AGENCY_B}'") == 0
    # The owner-rights views are not row-level secured: an agency may not read them.
    _refused(warehouse, a, "SELECT count(*) FROM mart_dossier_received")
    _refused(warehouse, a, "SELECT count(*) FROM ops_quarantine")
    _refused(warehouse, a, "SELECT applicant_id_hash FROM fact_dossier")


@postgres
def test_a_user_in_two_agency_roles_sees_both(warehouse):
    both = warehouse.user("ab")
    owner = create_engine(warehouse.url)
    try:
        with owner.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE ROLE "{both}" LOGIN IN ROLE "{warehouse.names.agency(AGENCY_A)}", '
                f'"{warehouse.names.agency(AGENCY_B)}"'
            )
    finally:
        owner.dispose()
    assert warehouse.scalar(both, "SELECT count(*) FROM mart_dossier") == 5


@postgres
def test_the_reporter_reads_the_marts_but_not_the_quarantine_payloads(warehouse):
    reporter = warehouse.user("reporter")
    _refused(warehouse, reporter, "SELECT payload FROM ops_quarantine")
    _refused(warehouse, reporter, "SELECT * FROM ops_quarantine")
    _refused(warehouse, reporter, "SELECT applicant_id_hash FROM fact_dossier")
    assert warehouse.scalar(reporter, "SELECT count(*) FROM mart_dossier") == 5
    assert warehouse.scalar(reporter, "SELECT count(*) FROM fact_dossier") == 5
    assert warehouse.rows(
        reporter, "SELECT agency_code, sum(dossiers) FROM mart_dossier_received GROUP BY agency_code"
    ) == [(AGENCY_B, 2), (AGENCY_A, 3)]
    assert warehouse.rows(reporter, 'SELECT batch_id, "rows" FROM mart_quarantine_summary') == [
        ("b1", 1)
    ]
    assert warehouse.scalar(reporter, "SELECT count(*) FROM mart_indicator") == 0
    # the indicator standard's generated views (migration 0005) too: the province's received dossiers
    assert warehouse.scalar(
        reporter, "SELECT sum(value) FROM mart_dossiers_received WHERE scope = 'province' AND period_kind = 'month'"
    ) == 5


@postgres
def test_the_reporter_runs_the_report(warehouse):
    report = render_report(engine=warehouse.connect_as(warehouse.user("reporter")))
    assert "Quarantined rows by rule: status.in_codelist 1" in report
    assert "5 dossiers" in report


@postgres
def test_the_reporter_reads_no_staging_table_nor_sync_state(warehouse):
    reporter = warehouse.names.reporter
    readable = set(warehouse.rows(
        warehouse.user("loader"),
        "SELECT c.relname FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v') "
        f"AND has_table_privilege('{reporter}', c.oid, 'SELECT')",
    ))
    names = {name for (name,) in readable}
    assert names and not {n for n in names if n.startswith(("_stg_", "alembic"))}
    assert not {"ops_quarantine", "ops_sync_state", "fact_dossier"} & names  # at most some columns
    assert {"mart_dossier", "mart_quarantine_summary", "mart_indicator", "dim_agency"} <= names
    # A staging table of a running load: a temporary table of the loader's session.
    with warehouse.connect_as(warehouse.user("loader")).connect() as loader:
        loader.exec_driver_sql("CREATE TEMPORARY TABLE _stg_fact_dossier (LIKE fact_dossier)")
        loader.exec_driver_sql("INSERT INTO _stg_fact_dossier SELECT * FROM fact_dossier")
        schema = loader.exec_driver_sql("SELECT pg_my_temp_schema()::regnamespace::text").scalar()
        _refused(warehouse, warehouse.user("reporter"), f"SELECT count(*) FROM {schema}._stg_fact_dossier")
    # And a left-over permanent one.
    owner = create_engine(warehouse.url)
    try:
        with owner.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE _stg_left_over AS SELECT * FROM fact_dossier")
    finally:
        owner.dispose()
    _refused(warehouse, warehouse.user("reporter"), "SELECT count(*) FROM _stg_left_over")


@postgres
def test_applying_the_roles_again_changes_nothing_but_adds_missing_agencies(warehouse):
    for _ in range(2):
        result = apply_roles(warehouse.url, prefix=warehouse.names.prefix)  # every dim_agency row
        assert result.applied and len(result.agency_roles) > 2
    assert warehouse.scalar(warehouse.user("a"), "SELECT count(*) FROM mart_dossier") == 3
    assert warehouse.scalar(warehouse.user("b"), "SELECT count(*) FROM fact_dossier") == 2
    assert warehouse.scalar(warehouse.user("reporter"), "SELECT count(*) FROM mart_dossier") == 5
    _refused(warehouse, warehouse.user("reporter"), "SELECT payload FROM ops_quarantine")


@postgres
def test_db_upgrade_applies_the_roles_or_says_in_one_line_why_not(warehouse, monkeypatch, capsys):
    monkeypatch.setenv("LIENTHONG_DB_ROLE_PREFIX", warehouse.names.prefix)
    monkeypatch.setenv("WAREHOUSE_URL", warehouse.url)
    assert main(["db", "upgrade"]) == 0
    assert "roles applied" in capsys.readouterr().out
    monkeypatch.setenv("LIENTHONG_DB_ROLES", "0")
    assert main(["db", "upgrade"]) == 0
    assert "roles not applied (LIENTHONG_DB_ROLES=0)" in capsys.readouterr().out
    monkeypatch.delenv("LIENTHONG_DB_ROLES")
    # The loader may migrate to head but not create roles: a note, not a failure …
    loader_url = make_url(warehouse.url).set(username=warehouse.user("loader"))
    monkeypatch.setenv("WAREHOUSE_URL", loader_url.render_as_string(hide_password=False))
    assert main(["db", "upgrade"]) == 0
    assert "roles not applied: " in capsys.readouterr().out
    # … unless roles are what was asked for.
    assert main(["db", "roles"]) == 1
    assert "may not create roles" in capsys.readouterr().err


def test_sqlite_has_no_roles_and_says_so(sqlite_url, caplog):
    upgrade(sqlite_url)
    with caplog.at_level(logging.INFO, logger="warehouse.roles"):
        result = apply_roles(sqlite_url)
    assert not result.applied and result.agency_roles == {}
    assert "sqlite has no roles: nothing applied" in result.note
    assert result.note in caplog.text

