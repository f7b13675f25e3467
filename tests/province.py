"""A generated province behind a live portal simulator, and a runner for the pipeline."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.base import Window
from connectors.settings import connection_from_uri
from pipeline.settings import PipelineSettings
from transforms.timefmt import LOCAL_TZ

TEST_KEY = "pipeline-test-key"
FULL_WINDOW = Window(start=datetime(2000, 1, 1, tzinfo=LOCAL_TZ), end=datetime(2017, 9, 1, tzinfo=LOCAL_TZ))
WAREHOUSE_TABLES = ["dim_procedure", "dim_procedure_level", "fact_dossier", "fact_dossier_event",
                    "ops_batch", "ops_quarantine", "ops_sync_state", "dim_agency", "dim_admin_unit"]


@pytest.fixture(scope="session")
def province(tmp_path_factory) -> tuple[Path, dict]:
    """A small province (4,000 filler dossiers: well over 200 quarantined rows in one batch)."""
    from simulators.generator import generate_province

    out = tmp_path_factory.mktemp("province")
    truth = generate_province(out, seed=7, filler_dossiers=4000)
    return out, truth


@pytest.fixture(scope="session")
def province_records(province) -> tuple[list[dict], list[dict]]:
    """The province's portal records, read once for every simulator of the session."""
    from simulators.generator import load_records

    data_dir, _ = province
    return list(load_records(data_dir / "procedures.jsonl")), list(load_records(data_dir / "dossiers.jsonl"))


@pytest.fixture
def portal(province_records):
    """A fresh portal simulator (its own sessions, call log and fault queue) serving the province."""
    from simulators.portal import PortalSimulator

    procedures, dossiers = province_records
    with PortalSimulator(procedures=procedures, dossiers=dossiers, username="demo", password="demo") as sim:
        yield sim


def settings(**overrides) -> PipelineSettings:
    values = {"pseudonym_key": TEST_KEY, "chunk_size": 5000, "page_size": 500, "max_retries": 2,
              "http_timeout": 5.0}
    values.update(overrides)
    return PipelineSettings(**values)


def connection_for(portal):
    return connection_from_uri(portal.url.replace("http://", "http://demo:demo@"))


def run_sync(url: str, portal, *, window: Window | None = FULL_WINDOW, until=None, progress=None,
             streams: list[str] | None = None, **overrides):
    from pipeline.sync import sync_source
    from warehouse.db import create_engine, upgrade

    upgrade(url)
    engine = create_engine(url)
    try:
        return sync_source("national_portal", engine=engine, connection=connection_for(portal),
                           settings=settings(**overrides), window=window, until=until, progress=progress,
                           streams=streams)
    finally:
        engine.dispose()


def split_sources(data_dir: Path, out_dir: Path, seed: int) -> tuple[Path, dict]:
    """The province of `data_dir` split over every source (simulators/province.py), and its truth."""
    from simulators.province import build_sources

    build_sources(data_dir, out_dir, seed=seed)
    return out_dir, json.loads((out_dir / "ground_truth.json").read_text(encoding="utf-8"))


def run_sync_all_sources(url: str, sources_dir: Path, drop_dir: Path | None = None):
    """Every source of `sources_dir` into `url` as the demo runs them, then the marts; the outcomes.

    The file-drop connector archives what it reads: pass a copy of the drop folder as `drop_dir`
    to keep `sources_dir` reusable.
    """
    from simulators.demo import source_uris, sync_all_sources
    from simulators.lgsp import LgspSimulator
    from simulators.portal import PortalSimulator
    from simulators.province import lgsp_messages
    from warehouse.db import create_engine, upgrade

    upgrade(url)
    engine = create_engine(url)
    try:
        with (PortalSimulator(data_dir=sources_dir / "portal") as portal,
              LgspSimulator(lgsp_messages(sources_dir)) as lgsp):
            uris = source_uris(sources_dir, portal.url, lgsp.url)
            if drop_dir is not None:
                uris["file_drop"] = f"file://{drop_dir}"
            outcomes = sync_all_sources(uris, engine, settings(), FULL_WINDOW)
    finally:
        engine.dispose()
    refresh(url)
    return outcomes


def refresh(url: str) -> None:
    """Recompute the indicator mart of the warehouse at `url` (what refresh_marts does)."""
    from reporting.indicators import refresh_marts
    from warehouse.db import create_engine

    engine = create_engine(url)
    try:
        refresh_marts(engine)
    finally:
        engine.dispose()


def query_rows(url: str, sql: str, **params) -> list:
    """The rows of one SQL query on `url`; a list parameter binds as an IN list."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            statement = sa.text(sql)
            for name, value in params.items():
                if isinstance(value, list):
                    statement = statement.bindparams(sa.bindparam(name, expanding=True))
            return conn.execute(statement, params).all()
    finally:
        engine.dispose()


def table_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in WAREHOUSE_TABLES}
    finally:
        engine.dispose()


def quarantine_rules(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT record_key, failed_rules FROM ops_quarantine")).all()
    finally:
        engine.dispose()
    return {key: sorted(json.loads(rules)) for key, rules in rows}


class SyncedWarehouse:
    """A warehouse after one full sync of the test province, and what that sync reported."""

    def __init__(self, url: str, backend: str, outcomes) -> None:
        self.url, self.backend, self.outcomes = url, backend, outcomes


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def synced(request, province_records, tmp_path_factory) -> SyncedWarehouse:
    """One full sync per backend and module; tests read it, or work on a copy (`synced_copy`)."""
    from simulators.portal import PortalSimulator
    from tests.conftest import create_postgres_database

    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('synced') / 'warehouse.db'}"
    else:
        url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"))
    procedures, dossiers = province_records
    with PortalSimulator(procedures=procedures, dossiers=dossiers, username="demo", password="demo") as sim:
        outcomes = run_sync(url, sim)
    yield SyncedWarehouse(url, request.param, outcomes)
    if drop:
        drop()


@pytest.fixture
def synced_copy(request, synced, tmp_path) -> str:
    """A private copy of the synced warehouse for a test that changes it."""
    import shutil

    from tests.conftest import create_postgres_database

    if synced.backend == "sqlite":
        target = tmp_path / "warehouse.db"
        shutil.copy(sa.engine.make_url(synced.url).database, target)
        yield f"sqlite:///{target}"
        return
    url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"), template=synced.url)
    yield url
    drop()
