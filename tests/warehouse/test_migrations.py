"""Migrations: 0001 … 0004 build exactly `schema.metadata`; upgrades are idempotent; downgrade empties."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import standards
from warehouse.db import alembic_config, create_engine, upgrade
from warehouse.indicator_sql import indicator_views
from warehouse.schema import metadata
from warehouse.views import VIEWS


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(map(repr, row)) for row in conn.execute(sa.select(table)))
            for name, table in metadata.tables.items()
        }


def _revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migration_matches_the_metadata(warehouse_url):
    engine = create_engine(warehouse_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            names = set(sa.inspect(conn).get_view_names())
        # warehouse/views.py's views, and one per indicator formula of the standard (0005)
        assert names == {view.name for view in VIEWS} | {view.name for view in indicator_views()}
    finally:
        engine.dispose()


def test_upgrade_twice_changes_nothing(warehouse_url):
    engine = create_engine(warehouse_url)
    try:
        upgrade(engine)
        first = _snapshot(engine)
        upgrade(warehouse_url)  # a URL works as well as an engine
        assert _snapshot(engine) == first
        assert _revision(engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert len(first["dim_dossier_status"]) == len(standards.load_codelist("dossier_status"))
        assert len(first["dim_agency"]) == len(standards.load_codelist("agencies"))
        assert len(first["dim_admin_unit"]) == len(standards.load_codelist("admin_units"))
    finally:
        engine.dispose()


def test_seeding_corrects_a_changed_code_list_row(warehouse_url):
    engine = create_engine(warehouse_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE dim_channel SET name_en = 'edited' WHERE code = 2"))
        upgrade(engine)
        with engine.connect() as conn:
            assert (
                conn.execute(sa.text("SELECT name_en FROM dim_channel WHERE code = 2")).scalar()
                == "Online"
            )
            received = {
                row[0]
                for row in conn.execute(
                    sa.text("SELECT code FROM dim_dossier_status WHERE is_received")
                )
            }
        assert received == set(standards.status_groups()["received"]) == {2, 4, 5, 6, 7, 8, 9, 10}
    finally:
        engine.dispose()


def test_downgrade_drops_every_table_and_view(warehouse_url):
    engine = create_engine(warehouse_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) <= {"alembic_version"}
        assert inspector.get_view_names() == []
        upgrade(engine)
        assert _revision(engine) is not None
    finally:
        engine.dispose()


def test_upgrade_works_from_any_directory(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == "0008"
    upgrade(warehouse_url)
    engine = create_engine(warehouse_url)
    try:
        assert _revision(engine) == "0008"
    finally:
        engine.dispose()
