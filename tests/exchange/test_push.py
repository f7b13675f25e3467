"""Push to the national portal: every changed dossier once, rejections reported and retried after correction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from exchange.push import dossier_to_portal, event_to_portal_step, push_national_portal
from tests.province import connection_for, run_sync, settings
from transforms.timefmt import parse_portal_time
from warehouse.db import create_engine, upgrade
from warehouse.schema import fact_dossier, fact_dossier_event, ops_push


@pytest.fixture
def empty_portal():
    """A portal that holds nothing yet: the province's first push."""
    from simulators.portal import PortalSimulator

    with PortalSimulator(procedures=[], dossiers=[]) as sim:
        yield sim


SAMPLE_EVERY = 15  # every 15th portal record of the test province: ~1,200 dossiers, a quick sync


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded(request, province_records, tmp_path_factory) -> tuple[str, str]:
    """The test province's procedures and a sample of its dossier records (planted defects and
    duplicates included), synced once per backend and module: (backend, url)."""
    from simulators.portal import PortalSimulator
    from tests.conftest import create_postgres_database

    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('push') / 'warehouse.db'}"
    else:
        url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"))
    procedures, dossiers = province_records
    with PortalSimulator(procedures=procedures, dossiers=dossiers[::SAMPLE_EVERY]) as sim:
        run_sync(url, sim)
    yield request.param, url
    if drop:
        drop()


@pytest.fixture
def warehouse(request, loaded, tmp_path) -> str:
    """A private copy of the loaded warehouse, for a test that pushes (and so changes ops_push)."""
    import shutil

    from tests.conftest import create_postgres_database

    backend, url = loaded
    if backend == "sqlite":
        target = tmp_path / "warehouse.db"
        shutil.copy(sa.engine.make_url(url).database, target)
        yield f"sqlite:///{target}"
        return
    copy, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"), template=url)
    yield copy
    drop()


@pytest.fixture
def engine(warehouse):
    upgrade(warehouse)
    engine = create_engine(warehouse)
    yield engine
    engine.dispose()


def push(engine, portal, **options):
    options.setdefault("chunk_size", 500)
    return push_national_portal(engine, connection_for(portal), settings=settings(), **options)


def dossier_calls(portal) -> list[dict]:
    return [c for c in portal.calls if c["service"] == "DongBoHoSoMC"]


def rows(engine, table) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["dossier_code"]: dict(r) for r in conn.execute(sa.select(table)).mappings()}


def plant(engine, code: str, **values) -> None:
    """Change one dossier in the warehouse as a newer version would (updated_at moves on)."""
    with engine.begin() as conn:
        updated = conn.execute(sa.select(fact_dossier.c.updated_at)
                               .where(fact_dossier.c.dossier_code == code)).scalar_one()
        conn.execute(sa.update(fact_dossier).where(fact_dossier.c.dossier_code == code)
                     .values(updated_at=updated + timedelta(seconds=1), **values))


def assert_portal_holds(record: dict, row: dict) -> None:
    """The portal's record says what the warehouse row says, field by field (those the warehouse has)."""
    def instant(name):
        moment = parse_portal_time(record[name])
        return moment.astimezone(UTC) if moment else None

    assert record["MaHoSo"] == row["dossier_code"]
    assert record["MaTTHC"] == row["procedure_code"]
    assert record["DonViXuLy"] == row["agency_code"]
    assert (record["NoiNopHoSo"] or None) == row["admin_unit_code"]
    assert (record["TenTTHC"] or None) == row["procedure_name"]
    assert (record["TrichYeuHoSo"] or None) == row["summary"]
    assert int(record["KenhThucHien"]) == row["channel"]
    assert int(record["LoaiDoiTuong"]) == row["applicant_type"]
    assert int(record["TrangThaiHoSo"]) == row["status"]
    assert (int(record["DuocThanhToanTrucTuyen"]) if record["DuocThanhToanTrucTuyen"] else None) == row["paid_online"]
    for name, column in (("NgayTiepNhan", "received_at"), ("NgayHenTra", "due_at"),
                         ("NgayKetThucXuLy", "finished_at"), ("NgayTra", "returned_at"),
                         ("NgayCapNhat", "updated_at")):
        expected = row[column].replace(microsecond=0) if row[column] else None
        assert instant(name) == expected, name
    fees = [Decimal(item["Gia"]) for item in record["DanhSachLePhi"]]
    assert fees == ([] if row["fee"] is None else [Decimal(row["fee"])])
    assert "DinhDanhCHS" not in record and "SoGiayToChuHoSo" not in record  # only a hash is held


def test_a_warehouse_row_in_portal_shape():
    received = datetime(2016, 1, 5, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam
    row = {"dossier_code": "000.00.03.H62-160105-0001", "procedure_code": "2.000488",
           "procedure_name": "Cấp Phiếu lý lịch tư pháp", "summary": None, "agency_code": "000.00.03.H62",
           "admin_unit_code": "243", "channel": 2, "applicant_type": 1, "status": 10,
           "received_at": received, "due_at": received + timedelta(days=10), "finished_at": None,
           "returned_at": None, "paid_online": 1, "fee": Decimal("200000.00"),
           "updated_at": received + timedelta(days=12), "field_code": "G01", "field_name": "Lý lịch tư pháp"}
    record = dossier_to_portal(row)
    assert record["NgayTiepNhan"] == "20160105100000" and record["NgayHenTra"] == "20160115100000"
    assert record["NgayKetThucXuLy"] == "" and record["TrichYeuHoSo"] == ""
    assert (record["KenhThucHien"], record["TrangThaiHoSo"], record["DuocThanhToanTrucTuyen"]) == ("2", "10", "1")
    assert record["DanhSachLePhi"][0]["Gia"] == "200000"
    assert (record["MaLinhVuc"], record["NoiNopHoSo"]) == ("G01", "243")
    step = event_to_portal_step({"dossier_code": row["dossier_code"], "seq": 1, "status": 2,
                                 "occurred_at": received, "note": None})
    assert (step["ThoiDiemXuLy"], step["TrangThai"], step["NoiDungXuLy"]) == ("20160105100000", "2", "")


def test_every_dossier_is_accepted_once_then_nothing_is_resent(engine, empty_portal):
    outcome = push(engine, empty_portal)
    dossiers = rows(engine, fact_dossier)
    assert outcome.rejected == [] and outcome.accepted == outcome.inserts == len(dossiers) > 500
    assert outcome.updates == 0
    assert set(empty_portal.pushed) == set(dossiers)
    for code, row in dossiers.items():
        assert_portal_holds(empty_portal.pushed[code], row)
    with engine.connect() as conn:
        events = conn.execute(sa.select(fact_dossier_event.c.dossier_code, fact_dossier_event.c.status)
                              .order_by(fact_dossier_event.c.dossier_code, fact_dossier_event.c.seq)).all()
    progress = empty_portal.progress
    assert outcome.steps == len(events) == sum(len(steps) for steps in progress.values())
    assert [(c, int(s["TrangThai"])) for c in sorted(progress) for s in progress[c]] == [tuple(e) for e in events]
    state = rows(engine, ops_push)
    assert {r["status"] for r in state.values()} == {"accepted"} and set(state) == set(dossiers)
    assert all(r["pushed_updated_at"] == dossiers[c]["updated_at"] and r["attempts"] == 1 for c, r in state.items())
    assert all(call["records"] <= 500 for call in dossier_calls(empty_portal))

    calls_before = len(empty_portal.calls)
    again = push(engine, empty_portal)
    assert (again.sent, again.steps, again.accepted, again.rejected) == (0, 0, 0, [])
    assert len(empty_portal.calls) == calls_before  # no DongBoHoSoMC call at all, let alone with data


def test_a_rejected_dossier_is_reported_kept_unpushed_and_sent_again_once_corrected(engine, empty_portal):
    dossiers = rows(engine, fact_dossier)
    bad_due, bad_status, changed = sorted(dossiers)[:3]
    received = dossiers[bad_due]["received_at"]
    plant(engine, bad_due, due_at=received - timedelta(days=2))
    plant(engine, bad_status, status=11)

    first = push(engine, empty_portal, chunk_size=100)
    by_code = {r.dossier_code: r for r in first.rejected}
    assert set(by_code) == {bad_due, bad_status}
    assert by_code[bad_due].error_code == "14" and "Ngày hẹn trả trước ngày tiếp nhận" in by_code[bad_due].message
    assert by_code[bad_status].error_code == "12" and "TrangThaiHoSo '11'" in by_code[bad_status].message
    assert first.accepted == len(dossiers) - 2
    assert bad_due not in empty_portal.pushed and bad_status not in empty_portal.pushed
    state = rows(engine, ops_push)
    assert state[bad_due]["status"] == "rejected" and state[bad_due]["pushed_updated_at"] is None
    assert state[bad_due]["error_code"] == "14" and not state[bad_due]["on_portal"]

    unchanged = push(engine, empty_portal)  # the same invalid data is not sent again
    assert (unchanged.sent, unchanged.rejected) == (0, [])

    plant(engine, bad_due, due_at=received + timedelta(days=5))  # corrected in the warehouse
    plant(engine, bad_status, status=4)
    plant(engine, changed, status=9)  # an accepted dossier changes: an update
    calls_before = len(dossier_calls(empty_portal))
    corrected = push(engine, empty_portal)
    assert corrected.rejected == [] and corrected.accepted == 3
    assert (corrected.inserts, corrected.updates) == (2, 1)
    sent = dossier_calls(empty_portal)[calls_before:]
    assert [(c["isUpdating"], c["records"]) for c in sent] == [("False", 2), ("True", 1)]
    now = rows(engine, fact_dossier)
    for code in (bad_due, bad_status, changed):
        assert_portal_holds(empty_portal.pushed[code], now[code])
    state = rows(engine, ops_push)
    assert state[bad_due]["attempts"] == 2 and state[bad_due]["status"] == "accepted"
    assert state[changed]["pushed_updated_at"] == now[changed]["updated_at"]
    assert push(engine, empty_portal).sent == 0


def test_a_dossier_the_portal_already_has_is_sent_again_as_an_update(engine, empty_portal):
    # e.g. the portal stored a push whose answer was lost: the insert is refused as "15"
    first = push(engine, empty_portal, limit=3)
    code = sorted(empty_portal.pushed)[0]
    with engine.begin() as conn:
        conn.execute(sa.delete(ops_push).where(ops_push.c.dossier_code == code))
    plant(engine, code, status=9)
    again = push(engine, empty_portal)
    refused = [r for r in again.rejected if r.dossier_code == code]
    assert first.accepted == 3 and [r.error_code for r in refused] == ["15"]
    assert rows(engine, ops_push)[code]["on_portal"]
    healed = push(engine, empty_portal)
    assert (healed.updates, healed.accepted, healed.rejected) == (1, 1, [])
    assert empty_portal.pushed[code]["TrangThaiHoSo"] == "9"


def test_transient_failures_and_an_expired_session_are_retried(engine, empty_portal):
    empty_portal.inject("http_500", "expired_session", "http_429")
    outcome = push(engine, empty_portal, limit=20, chunk_size=10)
    assert outcome.rejected == [] and outcome.accepted == 20 and len(empty_portal.pushed) == 20
    state = rows(engine, ops_push)
    assert len(state) == 20 and all(r["attempts"] == 1 for r in state.values())


def test_dry_run_sends_and_writes_nothing(engine, empty_portal):
    outcome = push(engine, empty_portal, dry_run=True, limit=50)
    assert outcome.dry_run and outcome.inserts == 50 and outcome.steps > 0
    assert empty_portal.calls == [] and rows(engine, ops_push) == {}


def test_cli_prints_counts_and_each_rejection(warehouse, empty_portal, monkeypatch, capsys):
    from pipeline.cli import main

    engine = create_engine(warehouse)
    try:
        upgrade(engine)
        dossiers = rows(engine, fact_dossier)
        code = min(dossiers, key=lambda c: (dossiers[c]["updated_at"], c))  # among the first 30 sent
        plant(engine, code, channel=7)
    finally:
        engine.dispose()
    monkeypatch.setenv("WAREHOUSE_URL", warehouse)
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", empty_portal.url.replace("http://", "http://demo:demo@"))
    assert main(["push", "national-portal", "--limit", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "30 dossiers sent (30 new, 0 updates)" in lines[0] and "accepted 29, rejected 1" in lines[0]
    assert lines[1].startswith(f"rejected {code}: DongBoHoSoMC error_code 12: ")
    assert "KenhThucHien '7'" in lines[1] and len(lines) == 2
