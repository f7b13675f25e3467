"""BatchWriter: one transaction a batch; re-runs are idempotent; newest wins; failures are clean."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.warehouse.frames import (
    bad_frame,
    code,
    dossier,
    dossier_frame,
    events_frame,
    local,
)
from warehouse.load import BatchWriter
from warehouse.schema import metadata
from warehouse.state import get_watermark, list_batches

SOURCE, STREAM = "national_portal", "dossiers"
WINDOW = (local(2017, 1, 1), local(2017, 2, 1))
WATERMARK = local(2017, 1, 7, 8)
TABLES = [
    "fact_dossier",
    "fact_dossier_event",
    "ops_batch",
    "ops_quarantine",
    "ops_sync_state",
    "dim_procedure",
    "dim_procedure_level",
]


def writer(engine, batch_id="batch-1", window=WINDOW) -> BatchWriter:
    return BatchWriter(engine, SOURCE, STREAM, "dossier", window[0], window[1], batch_id)


def small_batch():
    """Good rows with a duplicate key (D1 twice: the later version wins), one bad row, events."""
    good = dossier_frame(
        [
            dossier(1, 0, updated=local(2017, 1, 6, 10), status=2),
            dossier(
                2,
                1,
                updated=local(2017, 1, 6, 9),
                status=9,
                due=local(2017, 1, 10, 17),
                finished=local(2017, 1, 9, 16),
            ),
            dossier(
                1,
                3,
                updated=local(2017, 1, 6, 11),
                status=9,
                due=local(2017, 1, 10, 17),
                finished=local(2017, 1, 12, 8),
            ),
            dossier(3, 4, updated=local(2017, 1, 7, 8), status=1, fee=None),
        ]
    )
    bad = bad_frame(
        [dossier(4, 2, updated=local(2017, 1, 6, 12), agency="999.99.99.Z99")],
        [["agency_code.in_codelist", "procedure_code.in_catalogue"]],
    )
    events = events_frame(
        [
            (code(1), 1, 2, local(2017, 1, 5, 8, 30), "Tiếp nhận"),
            (code(1), 2, 4, local(2017, 1, 6, 10), "Xử lý"),
            (code(2), 1, 2, local(2017, 1, 5, 8, 30), None),
            # D1 sent again, with one more step: the later version of its steps is kept
            (code(1), 1, 2, local(2017, 1, 5, 8, 30), "Tiếp nhận"),
            (code(1), 2, 4, local(2017, 1, 6, 10), "Xử lý (2)"),
            (code(1), 3, 9, local(2017, 1, 6, 11), "Xong"),
        ]
    )
    return good, bad, events


def load(engine, batch_id="batch-1", chunks=None, watermark=WATERMARK):
    with writer(engine, batch_id) as w:
        for good, bad, events in chunks or [small_batch()]:
            w.add(good, bad, events)
        return w.commit(watermark)


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.select(sa.func.count()).select_from(metadata.tables[t])).scalar_one()
            for t in TABLES
        }


def rows(engine, table: str, order_by: str) -> list[dict]:
    t = metadata.tables[table]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c[order_by])).mappings()]


def test_a_batch_loads_facts_events_quarantine_manifest_and_state(engine):
    result = load(engine)

    assert (
        result.rows_read,
        result.rows_loaded,
        result.rows_quarantined,
        result.rows_deduplicated,
    ) == (5, 4, 1, 1)
    assert result.rows_read == result.rows_loaded + result.rows_quarantined

    facts = {r["dossier_code"]: r for r in rows(engine, "fact_dossier", "dossier_code")}
    assert sorted(facts) == [code(1), code(2), code(3)]
    d1 = facts[code(1)]
    assert d1["status"] == 9 and d1["updated_at"] == local(2017, 1, 6, 11)  # the later version
    assert d1["received_at"] == local(2017, 1, 5, 8, 30)  # the same instant back...
    assert (
        d1["received_at"].tzinfo is not None and d1["received_at"].utcoffset().total_seconds() == 0
    )
    assert d1["finished_date"] == date(2017, 1, 12) and d1["finished_month"] == "2017-01"
    assert d1["received_month"] == "2017-01" and d1["due_date"] == date(2017, 1, 10)
    assert Decimal(d1["fee"]) == Decimal("50000.00") and facts[code(3)]["fee"] is None
    assert d1["batch_id"] == "batch-1" and d1["loaded_at"].tzinfo is not None

    events = [
        (e["dossier_code"], e["seq"], e["status"], e["note"])
        for e in rows(engine, "fact_dossier_event", "occurred_at")
    ]
    assert sorted(events) == [
        (code(1), 1, 2, "Tiếp nhận"),
        (code(1), 2, 4, "Xử lý (2)"),
        (code(1), 3, 9, "Xong"),
        (code(2), 1, 2, None),
    ]

    [quarantined] = rows(engine, "ops_quarantine", "id")
    assert quarantined["batch_id"] == "batch-1" and quarantined["row_number"] == 2
    assert quarantined["record_key"] == code(4) and (
        quarantined["source"],
        quarantined["stream"],
    ) == (SOURCE, STREAM)
    assert json.loads(quarantined["failed_rules"]) == [
        "agency_code.in_codelist",
        "procedure_code.in_catalogue",
    ]
    assert json.loads(quarantined["payload"])["MaHoSo"] == code(4)

    [batch] = list_batches(engine)
    assert batch["status"] == "loaded" and batch["error"] is None
    assert (
        batch["rows_read"],
        batch["rows_loaded"],
        batch["rows_quarantined"],
        batch["rows_deduplicated"],
    ) == (5, 4, 1, 1)
    assert (batch["window_start"], batch["window_end"]) == WINDOW
    assert batch["watermark"] == local(2017, 1, 7, 8) == result.watermark
    good, bad, _ = small_batch()
    digests = sorted(
        hashlib.sha256(p.encode()).digest() for p in [*good["_payload"], *bad["_payload"]]
    )
    assert batch["checksum"] == result.checksum == hashlib.sha256(b"".join(digests)).hexdigest()

    watermark = get_watermark(engine, SOURCE, STREAM)
    assert watermark == local(2017, 1, 7, 8) and watermark.tzinfo == UTC
    assert get_watermark(engine, SOURCE, "procedures") is None


def test_rerunning_a_batch_id_changes_no_row_count(engine):
    load(engine)
    first = counts(engine)
    result = load(engine)
    assert counts(engine) == first
    assert first["ops_batch"] == 1 and first["ops_quarantine"] == 1 and first["fact_dossier"] == 3
    assert result.rows_read == 5


def test_the_checksum_ignores_chunking_and_order(engine):
    good, bad, events = small_batch()
    whole = load(engine, "whole")
    split = load(
        engine, "split", chunks=[(good.iloc[2:], None, None), (good.iloc[:2], bad, events)]
    )
    assert split.checksum == whole.checksum
    assert (split.rows_read, split.rows_deduplicated) == (5, 1)


def test_an_older_version_never_overwrites_a_newer_one(engine):
    load(engine, "new")
    old = dossier_frame([dossier(1, 0, updated=local(2017, 1, 6, 9), status=2)])
    old_events = events_frame([(code(1), 1, 2, local(2017, 1, 5, 8, 30), "cũ")])
    with writer(engine, "old", window=(local(2016, 12, 1), local(2017, 1, 1))) as w:
        w.add(old, None, old_events)
        result = w.commit(local(2017, 1, 6, 9))

    assert result.rows_loaded == 1
    [d1] = [r for r in rows(engine, "fact_dossier", "dossier_code") if r["dossier_code"] == code(1)]
    assert (d1["status"], d1["batch_id"], d1["updated_at"]) == (9, "new", local(2017, 1, 6, 11))
    notes = [
        e["note"] for e in rows(engine, "fact_dossier_event", "seq") if e["dossier_code"] == code(1)
    ]
    assert notes == [
        "Tiếp nhận",
        "Xử lý (2)",
        "Xong",
    ]  # the older batch's steps did not replace them
    assert get_watermark(engine, SOURCE, STREAM) == local(2017, 1, 7, 8)  # never moves back

    # The same version again (equal updated_at) is taken: a re-delivery may correct a field.
    same = dossier_frame([dossier(1, 0, updated=local(2017, 1, 6, 11), status=10)])
    with writer(engine, "same") as w:
        w.add(same, None, None)
        w.commit(None)
    [d1] = [r for r in rows(engine, "fact_dossier", "dossier_code") if r["dossier_code"] == code(1)]
    assert (d1["status"], d1["batch_id"]) == (10, "same")
    assert (
        len([e for e in rows(engine, "fact_dossier_event", "seq") if e["dossier_code"] == code(1)])
        == 3
    )


def _state(engine) -> dict[str, list[dict]]:
    keep = {
        "fact_dossier": "dossier_code",
        "fact_dossier_event": "occurred_at",
        "ops_quarantine": "id",
        "ops_sync_state": "source",
        "dim_procedure": "procedure_code",
    }
    return {t: rows(engine, t, key) for t, key in keep.items()}


def test_an_exception_inside_the_batch_rolls_everything_back(engine):
    load(engine)
    before = _state(engine)
    newer = dossier_frame(
        [
            dossier(1, 0, updated=local(2017, 2, 1), status=10),
            dossier(9, 1, updated=local(2017, 2, 1)),
        ]
    )
    with pytest.raises(RuntimeError, match="boom"), writer(engine) as w:
        w.add(
            newer, bad_frame([dossier(8, 2, updated=local(2017, 2, 1))], [["status.in_codelist"]])
        )
        raise RuntimeError("boom")

    assert _state(engine) == before  # facts, events, the first run's quarantine, sync state
    [batch] = list_batches(engine)
    assert batch["status"] == "failed" and "RuntimeError: boom" in batch["error"]
    assert "after staging 2 good and 1 bad rows" in batch["error"]
    assert batch["finished_at"] is not None and batch["rows_loaded"] == 0


def test_a_database_error_at_commit_fails_the_batch(engine):
    broken = dossier(5, 0, updated=local(2017, 1, 6), agency=None)  # NOT NULL in fact_dossier
    with pytest.raises(sa.exc.IntegrityError), writer(engine, "broken") as w:
        w.add(dossier_frame([dossier(6, 1, updated=local(2017, 1, 6)), broken]))
        w.commit(local(2017, 1, 6))
    assert counts(engine)["fact_dossier"] == 0
    assert get_watermark(engine, SOURCE, STREAM) is None
    [batch] = list_batches(engine)
    assert batch["status"] == "failed" and "IntegrityError" in batch["error"]


def test_a_batch_left_without_commit_is_failed(engine):
    with writer(engine) as w:
        w.add(dossier_frame([dossier(1, 0, updated=local(2017, 1, 6))]))
        # the manifest shows the batch running while it runs (readers are not blocked)
        assert [b["status"] for b in list_batches(engine)] == ["running"]
    assert counts(engine)["fact_dossier"] == 0
    assert list_batches(engine)[0]["error"].startswith("the batch was closed without commit()")
    with pytest.raises(RuntimeError, match="aborted"):
        w.add(dossier_frame([dossier(1, 0, updated=local(2017, 1, 6))]))


def test_naive_datetimes_are_refused(engine):
    frame = dossier_frame([dossier(1, 0, updated=local(2017, 1, 6))])
    frame["updated_at"] = frame["updated_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="naive"), writer(engine) as w:
        w.add(frame)
    assert list_batches(engine)[0]["status"] == "failed"
    with pytest.raises(ValueError, match="naive"), writer(engine) as w:
        w.add(dossier_frame([dossier(1, 0, updated=local(2017, 1, 6))]))
        w.commit(datetime(2017, 1, 6))
    assert counts(engine)["fact_dossier"] == 0 and get_watermark(engine, SOURCE, STREAM) is None


def test_a_chunked_batch_of_three_chunks_of_2000_rows(engine):
    chunk_size, total = 2000, 6000
    chunks = []
    for start in range(0, total, chunk_size):
        good, bad = [], []
        for row in range(start, start + chunk_size):
            # every 100th row is quarantined; every 50th repeats the dossier of the row before it
            n = row - 1 if row % 50 == 0 and row % 100 else row
            item = dossier(
                n,
                row,
                updated=local(2017, 1, 6, 8, 0, row % 60),
                received=local(2017, 1 + row % 12, 1 + row % 28, 8),
            )
            (bad if row % 100 == 0 else good).append(item)
        events = events_frame([(code(r["_row"]), 1, 2, r["received_at"], None) for r in good[:10]])
        chunks.append(
            (dossier_frame(good), bad_frame(bad, [["status.in_codelist"]] * len(bad)), events)
        )
    result = load(engine, "big", chunks=chunks, watermark=local(2017, 12, 31))

    assert (result.rows_read, result.rows_quarantined) == (6000, 60)
    assert result.rows_loaded == 5940 and result.rows_deduplicated == 60
    c = counts(engine)
    assert c["fact_dossier"] == 5880 and c["ops_quarantine"] == 60 and c["fact_dossier_event"] == 30
    with engine.connect() as conn:
        months = dict(
            conn.execute(
                sa.text("SELECT received_month, count(*) FROM fact_dossier GROUP BY received_month")
            ).all()
        )
    assert len(months) == 12 and sum(months.values()) == 5880


def test_frames_keep_only_known_columns(engine):
    frame = dossier_frame([dossier(1, 0, updated=local(2017, 1, 6), extra_column="x", _internal=1)])
    with writer(engine) as w:
        w.add(frame.drop(columns=["summary"]))
        result = w.commit(pd.Timestamp(local(2017, 1, 6)))
    [d1] = rows(engine, "fact_dossier", "dossier_code")
    assert d1["summary"] is None and result.rows_loaded == 1
