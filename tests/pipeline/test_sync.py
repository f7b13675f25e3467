"""The portal → standard → quality → warehouse path, on SQLite and PostgreSQL, against ground truth."""

from __future__ import annotations

import json
import unicodedata
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.errors import SourceError
from tests.pipeline.conftest import (
    FULL_WINDOW,
    quarantine_rules,
    run_sync,
    settings,
    table_counts,
)
from transforms.timefmt import LOCAL_TZ, format_portal_time


def test_full_sync_matches_the_ground_truth(warehouse_url, portal, province):
    _, truth = province
    procedures, dossiers = run_sync(warehouse_url, portal)

    assert procedures.rows_read == truth["procedures"]["records"]
    assert procedures.rows_quarantined == 0
    d = truth["dossiers"]
    assert dossiers.rows_read == d["records_served"]
    assert dossiers.rows_read == dossiers.rows_loaded + dossiers.rows_quarantined
    assert dossiers.rows_quarantined == d["expected_quarantined"] > 200  # past GX's 200-row lists
    assert dossiers.rows_deduplicated == truth["defects"]["duplicate_record"]["count"]
    assert dossiers.rule_counts == truth["rule_counts"]

    counts = table_counts(warehouse_url)
    assert counts["fact_dossier"] == d["expected_loaded_distinct"]
    assert counts["dim_procedure"] == truth["procedures"]["records"]
    assert counts["ops_quarantine"] == d["expected_quarantined"]
    # every quarantined record carries every rule it broke
    assert quarantine_rules(warehouse_url) == truth["expected_rules"]


def test_repaired_defects_load_clean(warehouse_url, portal, province):
    _, truth = province
    run_sync(warehouse_url, portal)
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        nfd = truth["defects"]["nfd_text"]["keys"]
        rows = conn.execute(sa.text("SELECT procedure_name, summary FROM fact_dossier WHERE dossier_code IN :c")
                            .bindparams(sa.bindparam("c", expanding=True)), {"c": nfd}).all()
        mislabelled = truth["defects"]["cmnd_mislabelled"]["keys"]
        types = conn.execute(sa.text("SELECT applicant_id_type FROM fact_dossier WHERE dossier_code IN :c")
                             .bindparams(sa.bindparam("c", expanding=True)), {"c": mislabelled}).scalars().all()
        batch = conn.execute(sa.text("SELECT rows_read, rows_loaded, rows_quarantined FROM ops_batch "
                                     "WHERE stream = 'dossiers'")).one()
    engine.dispose()
    assert len(rows) == len(set(nfd)) > 0
    for name, summary in rows:
        for text in (name, summary):
            assert text is None or (unicodedata.is_normalized("NFC", text) and "  " not in text)
    assert types and set(types) == {2}
    assert batch.rows_read == batch.rows_loaded + batch.rows_quarantined


def test_raw_id_numbers_are_never_stored(warehouse_url, portal, province):
    data_dir, _ = province
    raw = set()
    with (data_dir / "dossiers.jsonl").open(encoding="utf-8") as f:
        for i, line in zip(range(400), f):
            record = json.loads(line)
            if record.get("SoGiayToChuHoSo"):
                raw.add(record["SoGiayToChuHoSo"].replace(" ", "").replace(".", ""))
    run_sync(warehouse_url, portal)
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM fact_dossier")) for v in row)
        stored += " ".join(p for (p,) in conn.execute(sa.text("SELECT payload FROM ops_quarantine")))
    engine.dispose()
    assert raw and not [n for n in raw if n in stored]


def test_rerunning_the_same_window_changes_no_row_count(warehouse_url, portal):
    run_sync(warehouse_url, portal)
    first = table_counts(warehouse_url)
    run_sync(warehouse_url, portal)
    assert table_counts(warehouse_url) == first


def test_incremental_sync_asks_only_since_the_watermark(warehouse_url, portal):
    run_sync(warehouse_url, portal)
    engine = sa.create_engine(warehouse_url)
    from warehouse.state import get_watermark
    watermark = get_watermark(engine, "national_portal", "dossiers")
    engine.dispose()
    assert watermark is not None
    portal.calls.clear()
    lookback = settings().lookback_minutes
    before = table_counts(warehouse_url)
    run_sync(warehouse_url, portal, window=None)
    dossier_calls = [c for c in portal.calls if c["service"] == "LayDanhSachHoSo"]
    assert dossier_calls
    expected_start = format_portal_time(watermark.astimezone(LOCAL_TZ) - timedelta(minutes=lookback))
    assert {c["tungay"] for c in dossier_calls} == {expected_start}
    after = table_counts(warehouse_url)
    assert after["fact_dossier"] == before["fact_dossier"]  # the look-back overlap is upserted, not duplicated


@pytest.mark.parametrize("fault", ["malformed_json", "empty_body", "missing_fields"])
def test_a_fault_mid_stream_leaves_no_partial_batch(warehouse_url, portal, fault):
    run_sync(warehouse_url, portal)
    before = table_counts(warehouse_url)

    def inject_on_page_two(stage, done, total):
        if "dossiers pages" in stage and done == 2:
            portal.inject(fault, fault, fault)

    other = FULL_WINDOW.__class__(start=FULL_WINDOW.start + timedelta(days=1), end=FULL_WINDOW.end)
    with pytest.raises(SourceError):
        run_sync(warehouse_url, portal, window=other, progress=inject_on_page_two, streams=["dossiers"])
    after = table_counts(warehouse_url)
    assert after["ops_batch"] == before["ops_batch"] + 1  # the failed batch is recorded…
    assert {k: v for k, v in after.items() if k != "ops_batch"} == {
        k: v for k, v in before.items() if k != "ops_batch"}  # …and nothing else changed
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status, error FROM ops_batch WHERE status = 'failed'")).all()
    engine.dispose()
    assert len(statuses) == 1 and statuses[0].error


@pytest.mark.parametrize("fault", ["http_500", "http_429", "expired_session"])
def test_transient_faults_are_retried_to_success(sqlite_url, portal, province, fault):
    _, truth = province
    portal.inject(fault)
    _, dossiers = run_sync(sqlite_url, portal)
    assert dossiers.rows_read == truth["dossiers"]["records_served"]


def test_quarantine_threshold_fails_the_batch_and_loads_nothing(sqlite_url, portal):
    with pytest.raises(Exception, match="over the 1% threshold"):
        run_sync(sqlite_url, portal, max_quarantine_rate=0.01)
    counts = table_counts(sqlite_url)
    assert counts["fact_dossier"] == 0 and counts["ops_quarantine"] == 0
    assert counts["dim_procedure"] > 0  # the procedure batch before it stands
