"""Page-number paging never loses a record: records that move, pages that come short, totals that grow."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
import sqlalchemy as sa

from connectors.base import Window
from connectors.errors import SourceIncomplete, SourceProtocolError
from pipeline.cli import describe_error
from simulators.portal import PortalSimulator
from tests.connectors.test_portal import ALL_TIME, DOSSIERS, PROCEDURES, api_calls, connect, read_all
from tests.province import query_rows, run_sync, table_counts
from transforms.timefmt import LOCAL_TZ, format_portal_time, parse_portal_time
from warehouse.schema import fact_dossier

# 45 dossiers, 10 a page: pages 1..5. DOSSIERS[20] opens page 3: the record a shift loses.
PAGE = 10
BOUNDARY = DOSSIERS[2 * PAGE]["MaHoSo"]


@pytest.fixture
def portal():
    with PortalSimulator(procedures=PROCEDURES, dossiers=DOSSIERS) as sim:
        yield sim


def after_page(sim: PortalSimulator, page: int, *faults: str, times: int = 1):
    """An `on_page` hook injecting `faults` once page `page` is in, on the first `times` passes."""
    left = [times]

    def hook(stream, number, total_pages, records):
        if number == page and left[0] > 0:
            left[0] -= 1
            sim.inject(*faults)

    return hook


def latest(chunks: list[list[dict]]) -> dict[str, str]:
    """Each code read, with its latest NgayCapNhat: what the batch keeps after deduplication."""
    kept: dict[str, str] = {}
    for record in (r for chunk in chunks for r in chunk):
        kept[record["MaHoSo"]] = max(kept.get(record["MaHoSo"], ""), record["NgayCapNhat"])
    return kept


def listed(sim: PortalSimulator, window: Window = ALL_TIME) -> dict[str, str]:
    """What the portal lists within `window` now, code → NgayCapNhat."""
    since, until = format_portal_time(window.start), format_portal_time(window.end)
    return {r["MaHoSo"]: r["NgayCapNhat"] for r in sim.listed() if since <= r["NgayCapNhat"] <= until}


def pages_asked(sim: PortalSimulator) -> list[int]:
    return [call["trang"] for call in api_calls(sim)]


# -- records that move while we page ------------------------------------------------------------


def test_a_record_updated_past_the_window_while_paging_loses_no_other(portal, caplog):
    # After page 2, DOSSIERS[0] is updated (NgayCapNhat = now): it leaves the window, the rest
    # shift one place earlier and DOSSIERS[20] slips onto page 2, already read.
    chunks = read_all(connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "move")))

    assert pages_asked(portal) == [1, 2, 3, 1, 2, 3, 4, 5]  # tongso fell to 44 on page 3: from page 1
    kept = latest(chunks)
    assert BOUNDARY in kept
    assert set(kept) == {d["MaHoSo"] for d in DOSSIERS}  # the moved one too, as it was in the window
    assert DOSSIERS[0]["MaHoSo"] not in listed(portal)
    assert "total changed from 45 to 44 at page 3; reading again from page 1 (re-read 1 of 3)" in caplog.text


def test_a_record_moved_to_the_window_end_is_caught_by_the_distinct_count(portal):
    # The total stays 45: only the count of distinct codes (44 in the first pass) tells the loss.
    chunks = read_all(connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "move_within")))

    assert pages_asked(portal) == [1, 2, 3, 4, 5] * 2
    assert latest(chunks) == listed(portal)  # every record, at its latest version
    assert listed(portal)[DOSSIERS[0]["MaHoSo"]] == format_portal_time(ALL_TIME.end)


def test_records_inserted_while_paging_are_all_read(portal):
    chunks = read_all(connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "insert")))

    assert pages_asked(portal) == [1, 2, 3, 1, 2, 3, 4, 5]
    assert latest(chunks) == listed(portal) and len(listed(portal)) == 46


def test_a_total_changing_on_every_pass_fails_after_three_re_reads(portal):
    connector = connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "insert", times=4))

    with pytest.raises(SourceIncomplete) as caught:
        read_all(connector)

    assert str(caught.value) == (
        "national_portal dossiers: the 48 records the source reports for the window (tongso) became 49 "
        "while paging, after 3 re-reads; nothing loaded")
    assert pages_asked(portal) == [1, 2, 3] * 4


# -- short pages --------------------------------------------------------------------------------


def test_a_short_page_is_asked_again_once(portal):
    chunks = read_all(connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "short")))

    assert pages_asked(portal) == [1, 2, 3, 3, 4, 5]
    assert Counter(r["MaHoSo"] for chunk in chunks for r in chunk) == Counter(d["MaHoSo"] for d in DOSSIERS)


def test_a_page_short_twice_is_read_again_from_page_one(portal):
    chunks = read_all(connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "short", "short")))

    assert pages_asked(portal) == [1, 2, 3, 3, 1, 2, 3, 4, 5]
    assert set(latest(chunks)) == {d["MaHoSo"] for d in DOSSIERS}


def test_a_page_always_short_fails_the_read_naming_the_counts(portal):
    connector = connect(portal, page_size=PAGE, on_page=after_page(portal, 2, "short", "short", times=4))

    with pytest.raises(SourceIncomplete) as caught:
        read_all(connector)

    message = ("national_portal dossiers: read 44 distinct records of the 45 the source reports for the window "
               "(tongso) after 3 re-reads; nothing loaded")
    assert str(caught.value) == message
    assert isinstance(caught.value, SourceProtocolError)
    assert describe_error(caught.value) == message  # the CLI's one line
    # three passes give up at the short page 3; the last reads on, to count what is missing
    assert pages_asked(portal) == [1, 2, 3, 3] * 3 + [1, 2, 3, 3, 4, 5]


def test_a_source_that_stops_answering_records_fails_without_paging_to_its_total():
    with PortalSimulator(procedures=[], dossiers=DOSSIERS[:5]) as sim:
        sim.inject(*["short"] * 8)  # one record a page, less one: page 1 is served empty, every time

        with pytest.raises(SourceIncomplete, match="read 0 distinct records of the 5 the source reports"):
            read_all(connect(sim, page_size=1))

        assert pages_asked(sim) == [1, 1] * 4


# -- what a whole pass is -------------------------------------------------------------------------


def test_the_portals_own_duplicate_rows_count_toward_its_total():
    # A record the portal serves twice in a row (its planted duplicates), here across pages 1 and 2.
    served = DOSSIERS[:PAGE] + [DOSSIERS[PAGE - 1]] + DOSSIERS[PAGE:]
    with PortalSimulator(procedures=[], dossiers=served) as sim:
        chunks = read_all(connect(sim, page_size=PAGE))

        assert pages_asked(sim) == [1, 2, 3, 4, 5]  # tongso 46, 45 distinct + 1 listed twice: whole
        assert sum(len(chunk) for chunk in chunks) == 46


def test_records_without_their_key_count_one_each():
    keyless = [dict(DOSSIERS[n], MaHoSo="") for n in range(3)]
    with PortalSimulator(procedures=[], dossiers=keyless + DOSSIERS[3:]) as sim:
        chunks = read_all(connect(sim, page_size=PAGE))

        assert pages_asked(sim) == [1, 2, 3, 4, 5]
        assert sum(len(chunk) for chunk in chunks) == 45


# -- through the pipeline into a warehouse ----------------------------------------------------------

# The province's last month (658 dossiers), 50 a page.
LATE_WINDOW = Window(start=datetime(2017, 8, 1, tzinfo=LOCAL_TZ), end=datetime(2017, 9, 1, tzinfo=LOCAL_TZ))
E2E_PAGE = 50


@pytest.fixture
def province_portal(province_records):
    """A portal simulator serving the test province (tests/province.py), with its faults."""
    procedures, dossiers = province_records
    with PortalSimulator(procedures=procedures, dossiers=dossiers) as sim:
        yield sim


@pytest.fixture
def catalogued(tmp_path, province_portal) -> str:
    """A SQLite warehouse holding the province's procedure catalogue (what dossiers are checked against)."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    run_sync(url, province_portal, streams=["procedures"])
    return url


def on_dossier_page(sim: PortalSimulator, page: int, *faults: str, times: int = 1):
    """The pipeline's progress hook injecting `faults` once dossier page `page` is in (`after_page`)."""
    hook = after_page(sim, page, *faults, times=times)

    def progress(stage, done, total):
        if stage.endswith("dossiers pages"):
            hook("dossiers", done, total, None)

    return progress


def loaded_codes(url: str) -> set[str]:
    return {code for (code,) in query_rows(url, "SELECT dossier_code FROM fact_dossier")}


def test_a_record_moved_during_a_sync_is_loaded_by_the_next_one(catalogued, province_portal, province):
    _, truth = province
    quarantined = set(truth["expected_rules"])
    in_window = listed(province_portal, LATE_WINDOW)
    moved = min(in_window.items(), key=lambda item: (item[1], item[0]))[0]  # page 1's first record
    assert moved not in quarantined

    (first,) = run_sync(catalogued, province_portal, window=LATE_WINDOW, streams=["dossiers"], page_size=E2E_PAGE,
                        progress=on_dossier_page(province_portal, 2, "move"))

    assert moved not in listed(province_portal, LATE_WINDOW)  # updated past the window while paging
    assert loaded_codes(catalogued) == set(in_window) - quarantined  # the moved one as it was, and every other
    assert first.rows_read > len(in_window)  # pages 1–2 read twice: duplicates, merged by the load

    # The next incremental window (from the watermark to now) brings the moved record's new version.
    run_sync(catalogued, province_portal, window=None, streams=["dossiers"], page_size=E2E_PAGE)

    assert loaded_codes(catalogued) == set(in_window) - quarantined
    engine = sa.create_engine(catalogued)
    try:
        with engine.connect() as conn:
            updated = conn.execute(sa.select(fact_dossier.c.updated_at)
                                   .where(fact_dossier.c.dossier_code == moved)).scalar_one()
    finally:
        engine.dispose()
    now_listed = {r["MaHoSo"]: r["NgayCapNhat"] for r in province_portal.listed()}
    assert updated == parse_portal_time(now_listed[moved]) > LATE_WINDOW.end
    statuses = query_rows(catalogued, "SELECT status FROM ops_batch WHERE stream = 'dossiers'")
    assert [s for (s,) in statuses] == ["loaded", "loaded"]


def test_a_page_short_on_every_re_read_fails_the_batch_and_loads_nothing(catalogued, province_portal):
    before = table_counts(catalogued)
    since, until = format_portal_time(LATE_WINDOW.start), format_portal_time(LATE_WINDOW.end)
    rows = [r for r in province_portal.listed() if since <= r["NgayCapNhat"] <= until]

    with pytest.raises(SourceIncomplete) as caught:
        run_sync(catalogued, province_portal, window=LATE_WINDOW, streams=["dossiers"], page_size=E2E_PAGE,
                 progress=on_dossier_page(province_portal, 2, "short", "short", times=4))

    # Page 3 comes without its last row: one distinct record fewer, or one repeat fewer.
    distinct = len({r["MaHoSo"] for r in rows})
    twice = len(rows) - distinct
    dropped = 3 * E2E_PAGE - 1
    if rows[dropped] == rows[dropped - 1]:
        twice -= 1
    else:
        distinct -= 1
    read = f"{distinct + twice:,} records ({distinct:,} distinct, {twice:,} listed twice)" if twice \
        else f"{distinct:,} distinct records"
    message = (f"national_portal dossiers: read {read} of the {len(rows):,} the source reports for the window "
               "(tongso) after 3 re-reads; nothing loaded")
    assert describe_error(caught.value) == message
    after = table_counts(catalogued)
    assert after["ops_batch"] == before["ops_batch"] + 1
    assert {k: v for k, v in after.items() if k != "ops_batch"} == {k: v for k, v in before.items() if k != "ops_batch"}
    ((status, error),) = query_rows(catalogued, "SELECT status, error FROM ops_batch WHERE stream = 'dossiers'")
    assert status == "failed" and error.startswith(f"SourceIncomplete: {message}")
