"""Every source of one province into one warehouse: the same dossiers and indicators as the portal alone."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import sqlalchemy as sa

from pipeline.cli import main
from tests.province import TEST_KEY, refresh, run_sync, run_sync_all_sources, split_sources, table_counts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sources(province, tmp_path_factory):
    return split_sources(province[0], tmp_path_factory.mktemp("sources"), seed=7)


def _indicators(url: str) -> dict[tuple, float]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT indicator, period, agency_code, group_code, dimension, value FROM mart_indicator"))
            return {tuple(row[:5]): float(row[5]) for row in rows}
    finally:
        engine.dispose()


def _events(url: str) -> dict[str, list[tuple]]:
    """Each dossier's processing steps (status, UTC instant) in order, whatever the database."""
    from warehouse.schema import fact_dossier_event as event

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            steps: dict[str, list[tuple]] = defaultdict(list)
            query = sa.select(event.c.dossier_code, event.c.status, event.c.occurred_at).order_by(
                event.c.dossier_code, event.c.seq)
            for code, status, at in conn.execute(query):
                steps[code].append((status, at.isoformat()))
            return dict(steps)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def portal_only(province_records, tmp_path_factory) -> tuple[dict[tuple, float], dict[str, list[tuple]]]:
    """The indicators and dossier steps of the same province served whole by the portal (SQLite)."""
    from simulators.portal import PortalSimulator

    procedures, dossiers = province_records
    url = f"sqlite:///{tmp_path_factory.mktemp('portal-only') / 'warehouse.db'}"
    with PortalSimulator(procedures=procedures, dossiers=dossiers) as portal:
        run_sync(url, portal)
    refresh(url)
    return _indicators(url), _events(url)


def test_all_sources_give_the_portal_only_warehouse(warehouse_url, sources, portal_only, tmp_path, capsys,
                                                     monkeypatch):
    import shutil

    sources_dir, truth = sources
    drop = tmp_path / "drop"  # the connector archives what it reads: work on a copy of the drop
    shutil.copytree(sources_dir / "drop", drop)
    outcomes = run_sync_all_sources(warehouse_url, sources_dir, drop)
    by_source = {f"{o.source}.{o.stream}": o for o in outcomes}
    assert set(by_source) == {"national_portal.procedures", "national_portal.dossiers",
                              "one_stop:000.00.03.H62.dossiers", "one_stop:000.00.04.H62.dossiers",
                              "lgsp.dossiers", "file_drop.justice_csv", "file_drop.service_stat"}
    # the planted defects are all on the portal, quarantined exactly as the portal-only run does
    assert by_source["national_portal.dossiers"].rule_counts == truth["rule_counts"]
    assert sum(o.rows_quarantined for o in outcomes) == truth["dossiers"]["expected_quarantined"]
    counts = table_counts(warehouse_url)
    assert counts["fact_dossier"] == truth["dossiers"]["expected_loaded_distinct"]
    assert counts["ops_quarantine"] == truth["dossiers"]["expected_quarantined"]

    # cross-source duplicates: one dossier each, listing all its source records; the agency's system wins
    planted = truth["sources"]["cross_source_duplicates"]
    engine = sa.create_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            lineage = defaultdict(set)
            for code, system in conn.execute(sa.text("SELECT dossier_code, source_system FROM fact_dossier_source")):
                lineage[code].add(system)
            winners = dict(conn.execute(sa.text("SELECT dossier_code, source_system FROM fact_dossier")).all())
    finally:
        engine.dispose()
    merged = {code: sorted(systems) for code, systems in lineage.items() if len(systems) > 1}
    assert merged == planted
    assert all(winners[code] != "national_portal" for code in planted)

    # every indicator over all sources equals the portal-only one: nothing counted twice or lost
    everything = _indicators(warehouse_url)
    gaps = {key: value for key, value in everything.items() if key[0] == "reconciliation_gap"}
    indicators, steps = portal_only
    assert {k: v for k, v in everything.items() if k[0] != "reconciliation_gap"} == indicators
    # and the same processing steps, except for the Justice Department's legacy export, which has none
    legacy = {code for code, system in winners.items() if system == "file_drop"}
    assert legacy and not set(_events(warehouse_url)) & legacy
    assert _events(warehouse_url) == {code: s for code, s in steps.items() if code not in legacy}

    # the planted report mismatches, and only those, are reconciliation gaps
    expected = {(g["month"], g["procedure_code"], f"{g['commune_code']}/{g['measure']}"): g["reported"] - g["counted"]
                for g in truth["sources"]["reconciliation"]["expected_gaps"]}
    assert {(k[1], k[3], k[4]): v for k, v in gaps.items()} == expected
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    assert main(["report", "--format", "json", "--indicator", "reconciliation_gap"]) == 0
    shown = json.loads(capsys.readouterr().out)
    fields = ("commune_code", "month", "procedure_code", "measure", "reported", "counted")
    assert (sorted(tuple(r[f] for f in fields) for r in shown)
            == sorted(tuple(g[f] for f in fields) for g in truth["sources"]["reconciliation"]["expected_gaps"]))
