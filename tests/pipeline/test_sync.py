"""The portal → standard → quality → warehouse path, on SQLite and PostgreSQL, against ground truth."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from connectors.base import Window
from connectors.errors import SourceError
from tests.province import quarantine_rules, query_rows, run_sync, settings, table_counts
from transforms.timefmt import LOCAL_TZ, format_portal_time

# A narrower backfill for the tests that need a second sync: the last months of the data.
LATE_WINDOW = Window(start=datetime(2017, 6, 1, tzinfo=LOCAL_TZ), end=datetime(2017, 9, 1, tzinfo=LOCAL_TZ))


def test_full_sync_matches_the_ground_truth(synced, province):
    _, truth = province
    procedures, dossiers = synced.outcomes

    assert procedures.rows_read == truth["procedures"]["records"]
    assert procedures.rows_quarantined == 0
    d = truth["dossiers"]
    assert dossiers.rows_read == d["records_served"]
    assert dossiers.rows_read == dossiers.rows_loaded + dossiers.rows_quarantined
    assert dossiers.rows_quarantined == d["expected_quarantined"] > 200  # past GX's 200-row lists
    assert dossiers.rows_deduplicated == truth["defects"]["duplicate_record"]["count"]
    assert dossiers.rule_counts == truth["rule_counts"]

    counts = table_counts(synced.url)
    assert counts["fact_dossier"] == d["expected_loaded_distinct"]
    assert counts["dim_procedure"] == truth["procedures"]["records"]
    assert counts["ops_quarantine"] == d["expected_quarantined"]
    # every quarantined record carries every rule it broke
    assert quarantine_rules(synced.url) == truth["expected_rules"]
    batches = query_rows(synced.url, "SELECT rows_read, rows_loaded, rows_quarantined, status FROM ops_batch")
    assert all(b.rows_read == b.rows_loaded + b.rows_quarantined and b.status == "loaded" for b in batches)


def test_repaired_defects_load_clean(synced, province):
    _, truth = province
    nfd = truth["defects"]["nfd_text"]["keys"]
    rows = query_rows(synced.url, "SELECT procedure_name, summary FROM fact_dossier WHERE dossier_code IN :c", c=nfd)
    assert len(rows) == len(set(nfd)) > 0
    for name, summary in rows:
        for text in (name, summary):
            assert text is None or (unicodedata.is_normalized("NFC", text) and "  " not in text)
    mislabelled = truth["defects"]["cmnd_mislabelled"]["keys"]
    types = query_rows(synced.url, "SELECT applicant_id_type FROM fact_dossier WHERE dossier_code IN :c", c=mislabelled)
    assert types and {t for (t,) in types} == {2}
    duplicates = truth["defects"]["duplicate_record"]["keys"]
    assert len(query_rows(synced.url, "SELECT dossier_code FROM fact_dossier WHERE dossier_code IN :c", c=duplicates)) \
        == len(set(duplicates))


def test_raw_id_numbers_are_never_stored(synced, province):
    data_dir, _ = province
    raw = set()
    with (data_dir / "dossiers.jsonl").open(encoding="utf-8") as f:
        for _, line in zip(range(400), f, strict=False):
            record = json.loads(line)
            if record.get("SoGiayToChuHoSo"):
                raw.add(record["SoGiayToChuHoSo"].replace(" ", "").replace(".", ""))
    stored = " ".join(str(v) for row in query_rows(synced.url, "SELECT * FROM fact_dossier") for v in row)
    stored += " ".join(p for (p,) in query_rows(synced.url, "SELECT payload FROM ops_quarantine"))
    assert raw and not [n for n in raw if n in stored]


def test_rerunning_the_same_window_changes_no_row_count(synced, synced_copy, portal):
    before = table_counts(synced_copy)
    run_sync(synced_copy, portal)
    assert table_counts(synced_copy) == before


def test_incremental_sync_asks_only_since_the_watermark(synced_copy, portal):
    from warehouse.state import get_watermark

    engine = sa.create_engine(synced_copy)
    watermark = get_watermark(engine, "national_portal", "dossiers")
    engine.dispose()
    assert watermark is not None
    before = table_counts(synced_copy)
    run_sync(synced_copy, portal, window=None)
    dossier_calls = [c for c in portal.calls if c["service"] == "LayDanhSachHoSo"]
    expected_start = format_portal_time(watermark.astimezone(LOCAL_TZ) - timedelta(minutes=settings().lookback_minutes))
    assert dossier_calls and {c["tungay"] for c in dossier_calls} == {expected_start}
    after = table_counts(synced_copy)
    assert after["fact_dossier"] == before["fact_dossier"]  # the look-back overlap is upserted, not duplicated


@pytest.mark.parametrize("fault", ["malformed_json", "empty_body", "missing_fields"])
def test_a_fault_mid_stream_leaves_no_partial_batch(synced_copy, portal, fault):
    before = table_counts(synced_copy)

    def inject_on_page_two(stage, done, total):
        if "dossiers pages" in stage and done == 2:
            portal.inject(fault, fault, fault)

    with pytest.raises(SourceError):
        run_sync(synced_copy, portal, window=LATE_WINDOW, progress=inject_on_page_two, streams=["dossiers"])
    after = table_counts(synced_copy)
    assert after["ops_batch"] == before["ops_batch"] + 1  # the failed batch is recorded…
    assert {k: v for k, v in after.items() if k != "ops_batch"} == {
        k: v for k, v in before.items() if k != "ops_batch"}  # …and nothing else changed
    failed = query_rows(synced_copy, "SELECT status, error FROM ops_batch WHERE status = 'failed'")
    assert len(failed) == 1 and failed[0].error


@pytest.mark.parametrize("fault", ["http_500", "http_429", "expired_session"])
def test_transient_faults_are_retried_to_success(sqlite_url, portal, province, fault):
    _, truth = province
    portal.inject(fault)
    (procedures,) = run_sync(sqlite_url, portal, streams=["procedures"])
    assert procedures.rows_read == truth["procedures"]["records"]


def test_quarantine_threshold_fails_the_batch_and_loads_nothing(synced_copy, portal):
    before = table_counts(synced_copy)
    with pytest.raises(Exception, match=r"over the 0\.5% threshold"):
        run_sync(synced_copy, portal, window=LATE_WINDOW, streams=["dossiers"], max_quarantine_rate=0.005)
    after = table_counts(synced_copy)
    assert after["ops_quarantine"] == before["ops_quarantine"] and after["fact_dossier"] == before["fact_dossier"]
