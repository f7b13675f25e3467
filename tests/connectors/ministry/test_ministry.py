"""A source added as a declaration: the ministry's registrations synced end to end by the unchanged runner."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from connectors.settings import connection_from_uri
from pipeline.sync import sync_stream
from tests.connectors.ministry.simulator import MinistrySimulator, cursor_of
from tests.connectors.ministry.source import PLAN, MinistryRegistrationConnector
from tests.province import settings
from transforms.timefmt import LOCAL_TZ

DPI = "000.00.04.H62"  # Department of Planning and Investment: the province's registration office
PROCEDURES = {"1.005190": "Đăng ký thành lập doanh nghiệp tư nhân", "2.001610": "Đăng ký thay đổi nội dung"}
FIRST_UNTIL = datetime(2017, 7, 1, tzinfo=LOCAL_TZ)
SECOND_UNTIL = datetime(2017, 8, 1, tzinfo=LOCAL_TZ)


def registration(n: int, updated: datetime, **overrides) -> dict:
    submitted = updated - timedelta(days=3)
    record = {
        "registration_id": f"{DPI}-{submitted:%y%m%d}-{n:04d}",
        "procedure_code": "1.005190" if n % 2 else "2.001610",
        "procedure_name": PROCEDURES["1.005190" if n % 2 else "2.001610"],
        "office_code": DPI,
        "district_code": "243",
        "enterprise_name": f"Công ty TNHH Số {n}",
        "summary": "Đăng ký doanh nghiệp",
        "channel": "online",
        "status": "granted",
        "submitted_at": submitted.isoformat(),
        "due_at": (submitted + timedelta(days=3)).isoformat(),
        "decided_at": (updated - timedelta(hours=1)).isoformat(),
        "updated_at": updated.isoformat(),
        "fee": 50000,
    }
    record.update(overrides)
    return record


# twelve registrations in June 2017, changed two by two in the same second (the id breaks the tie)
REGISTRATIONS = [registration(n, datetime(2017, 6, 1 + 2 * ((n - 1) // 2), 9, 0, tzinfo=LOCAL_TZ))
                 for n in range(1, 13)]


def load_catalogue(engine: sa.Engine) -> None:
    """The procedures the registrations name, as the national portal's catalogue stream loads them."""
    from transforms.portal import procedures_to_frame
    from warehouse.load import BatchWriter

    records = [{"MaTTHC": code, "TenTTHC": name, "MaLinhVuc": "G01", "MaCoQuanThucHien": DPI, "CapThucHien": "1",
                "MucDo": "3", "NgayCongBo": "20100101000000", "NgayCapNhat": "20170101000000"}
               for code, name in PROCEDURES.items()]
    with BatchWriter(engine, "national_portal", "procedures", "procedure", None, None, "catalogue") as writer:
        writer.add(procedures_to_frame(records), None)
        writer.commit(None)


@pytest.fixture
def warehouse(sqlite_url):
    from warehouse.db import create_engine, upgrade

    upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    load_catalogue(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ministry():
    with MinistrySimulator(REGISTRATIONS) as sim:
        yield sim


def sync(engine, sim, **options):
    return sync_stream(PLAN, "registrations", engine=engine, connection=connection_from_uri(sim.url),
                       settings=settings(page_size=5), **options)


def test_pages_follow_the_cursor_the_base_is_given(ministry):
    connector = MinistryRegistrationConnector(connection_from_uri(ministry.url), page_size=5, chunk_size=4)
    with connector:
        chunks = list(connector.read("registrations"))
    ordered = sorted(REGISTRATIONS, key=lambda r: (r["updated_at"], r["registration_id"]))
    assert [len(chunk) for chunk in chunks] == [4, 4, 4]
    assert [r["registration_id"] for chunk in chunks for r in chunk] == [r["registration_id"] for r in ordered]
    # each page asks after the last (updated time, id) of the page before; the last answer has no `next`
    assert [call.get("after") for call in ministry.calls] == [None, cursor_of(ordered[4]), cursor_of(ordered[9])]


def test_sync_loads_every_registration_once_and_then_only_what_changed(warehouse, ministry):
    from warehouse.state import get_watermark

    first = sync(warehouse, ministry, until=FIRST_UNTIL)
    assert (first.rows_read, first.rows_loaded, first.rows_quarantined) == (12, 12, 0)
    assert len(ministry.calls) == 3  # twelve records, five a page
    rows = select(warehouse, "SELECT dossier_code, procedure_code, status, channel, source_system FROM fact_dossier")
    assert sorted(code for code, *_ in rows) == sorted(r["registration_id"] for r in REGISTRATIONS)
    assert {(status, channel, system) for _, _, status, channel, system in rows} == {(10, 2, "ministry_registry")}
    watermark = get_watermark(warehouse, "ministry_registry", "registrations")
    assert watermark == datetime(2017, 6, 11, 9, 0, tzinfo=LOCAL_TZ)

    # the same window again: the same batch replaced, nothing loaded twice
    again = sync(warehouse, ministry, window=first.window)
    assert again.batch_id == first.batch_id and again.rows_read == 12
    assert count(warehouse) == 12

    # one registration changes, one is new: the next run asks only from the watermark (less the look-back)
    changed = registration(3, datetime(2017, 7, 10, 9, 0, tzinfo=LOCAL_TZ), status="refused")
    ministry.upsert({**changed, "registration_id": REGISTRATIONS[2]["registration_id"]})
    ministry.upsert(registration(13, datetime(2017, 7, 12, 9, 0, tzinfo=LOCAL_TZ)))
    ministry.calls.clear()
    incremental = sync(warehouse, ministry, until=SECOND_UNTIL)
    since = watermark - timedelta(minutes=settings().lookback_minutes)
    assert {datetime.fromisoformat(call["updated_from"]) for call in ministry.calls} == {since}
    # the look-back re-reads the two registrations of the watermark's second; they are upserted, not doubled
    assert (incremental.rows_read, incremental.rows_loaded, incremental.rows_quarantined) == (4, 4, 0)
    assert count(warehouse) == 13
    status = select(warehouse, "SELECT status FROM fact_dossier WHERE dossier_code = :c",
                    c=REGISTRATIONS[2]["registration_id"])
    assert status == [(3,)]
    newest = datetime(2017, 7, 12, 9, 0, tzinfo=LOCAL_TZ)
    assert get_watermark(warehouse, "ministry_registry", "registrations") == newest


def test_a_registration_the_catalogue_does_not_know_is_quarantined_with_its_rules(warehouse, ministry):
    ministry.upsert(registration(20, datetime(2017, 6, 20, 9, 0, tzinfo=LOCAL_TZ), procedure_code="1.999999",
                                 channel="fax"))
    outcome = sync(warehouse, ministry, until=FIRST_UNTIL)
    assert (outcome.rows_read, outcome.rows_loaded, outcome.rows_quarantined) == (13, 12, 1)
    assert outcome.rule_counts == {"channel.in_codelist": 1, "procedure_code.in_catalogue": 1}


def select(engine: sa.Engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def count(engine: sa.Engine) -> int:
    (rows,) = select(engine, "SELECT count(*) FROM fact_dossier")
    return rows[0]
