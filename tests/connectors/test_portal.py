"""PortalConnector against the national-portal simulator over real loopback HTTP."""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import LOCAL_TZ, Window
from connectors.errors import SourceAuthError, SourceProtocolError, SourceUnavailable
from connectors.portal import PortalConnector, format_portal_time, parse_portal_time
from connectors.settings import connection_from_uri
from simulators.portal import PortalSimulator

AGENCY = "000.00.00.H62"


def make_procedure(n: int) -> dict:
    code = f"1.{n:06d}.{AGENCY}"
    return {
        "MaTTHC": code,
        "TenTTHC": f"Thủ tục số {n}",
        "MaLinhVuc": "G09-TP01",
        "TenLinhVuc": "Hộ tịch",
        "MaCoQuanThucHien": AGENCY,
        "CapThucHien": "1",
        "MucDo": "2",
        "LichSuMucDo": [{"MucDo": "2", "TuNgay": "20080801000000"}],
        "PhiLePhi": "0",
        "ThoiHanGiaiQuyet": "5",
        "NgayCongBo": "20080801000000",
        "NgayBaiBo": "",
        "NgayCapNhat": f"201702{1 + n % 28:02d}090000",
    }


def make_dossier(n: int, updated: datetime) -> dict:
    received = updated - timedelta(days=3)
    stamp = format_portal_time(updated)
    return {
        "MaHoSo": f"000.21.43.H62-{received:%y%m%d}-{n:04d}",
        "MaTTHC": f"1.{n % 5:06d}.{AGENCY}",
        "TenTTHC": f"Thủ tục số {n % 5}",
        "MaLinhVuc": "G09-TP01",
        "TenLinhVuc": "Hộ tịch",
        "SoBienNhan": f"BN{n:05d}",
        "ChuHoSo": "Nguyễn Văn An",
        "LoaiDoiTuong": "1",
        "MaDoiTuong": "",
        "ThongTinKhac": "",
        "Email": "",
        "Fax": "",
        "SoDienThoai": "0912345678",
        "TrichYeuHoSo": "Đăng ký khai sinh",
        "NgayTiepNhan": format_portal_time(received),
        "NgayHenTra": format_portal_time(received + timedelta(days=5)),
        "TrangThaiHoSo": "4",
        "NgayTra": "",
        "ThongTinTra": "",
        "HinhThuc": "0",
        "NgayKetThucXuLy": "",
        "DonViXuLy": "000.21.43.H62",
        "GhiChu": "",
        "TaiLieuNop": [],
        "DanhSachLePhi": [
            {
                "TenPhiLePhi": "Lệ phí",
                "MaPhiLePhi": "LP01",
                "HinhThucThu": "1",
                "Gia": "8000",
                "LoaiPhiLePhi": "2",
            }
        ],
        "DanhSachHoSoBoSung": [],
        "DanhSachGiayToKetQua": [],
        "KenhThucHien": "2",
        "SoGiayToChuHoSo": "",
        "NoiNopHoSo": "08911",
        "HoSoCoThanhPhanSoHoa": "0",
        "TaiKhoanDuocXacThucVoiVNeID": "0",
        "DuocThanhToanTrucTuyen": "0",
        "NgayTuChoi": "",
        "NgayNopHoSo": format_portal_time(received),
        "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": f"0260{n:08d}"}],
        "QuaTrinhXuLy": [
            {
                "ThoiDiemXuLy": stamp,
                "TrangThai": "4",
                "NoiDungXuLy": "Chuyển xử lý",
                "NguoiXuLy": "Trần Thị Bình",
                "ChucDanh": "Chuyên viên",
                "PhongBanXuLy": "Tư pháp",
            }
        ],
        "NgayCapNhat": stamp,
    }


START = datetime(2017, 3, 1, 8, 0, tzinfo=LOCAL_TZ)
DOSSIERS = [make_dossier(n, START + timedelta(hours=n)) for n in range(1, 46)]  # 45 dossiers
PROCEDURES = [make_procedure(n) for n in range(1, 13)]
ALL_TIME = Window(datetime(2017, 1, 1, tzinfo=LOCAL_TZ), datetime(2018, 1, 1, tzinfo=LOCAL_TZ))


@pytest.fixture
def portal():
    with PortalSimulator(procedures=PROCEDURES, dossiers=DOSSIERS) as sim:
        yield sim


class CountingPortalConnector(PortalConnector):
    """The real connector, counting its logins (the simulator's `.calls` lists /api calls only)."""

    logins = 0

    def open_session(self) -> str:
        self.logins += 1
        return super().open_session()


def connect(sim, *, login="demo", password="demo", **options) -> CountingPortalConnector:
    settings = connection_from_uri(f"http://{login}:{password}@127.0.0.1:{sim.port}")
    options = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0, **options}
    return CountingPortalConnector(settings, **options)


def api_calls(sim, service="LayDanhSachHoSo") -> list[dict]:
    return [call for call in sim.calls if call.get("service") == service]


def read_all(connector, stream="dossiers", window=ALL_TIME) -> list[list[dict]]:
    with connector:
        return list(connector.read(stream, window))


def assert_one_line(error: Exception, prefix: str) -> None:
    text = str(error)
    assert "\n" not in text
    assert text.startswith(prefix), text


# -- paging and chunking ----------------------------------------------------------------------


def test_paging_returns_every_record_once_across_pages_and_chunks(portal):
    progress = []
    connector = connect(portal, page_size=10, chunk_size=7, on_page=lambda *a: progress.append(a))

    chunks = read_all(connector)

    assert [len(chunk) for chunk in chunks] == [7, 7, 7, 7, 7, 7, 3]
    codes = Counter(record["MaHoSo"] for chunk in chunks for record in chunk)
    assert codes == Counter(d["MaHoSo"] for d in DOSSIERS)
    assert [call["trang"] for call in api_calls(portal)] == [1, 2, 3, 4, 5]
    assert {call["sodong"] for call in api_calls(portal)} == {10}
    assert progress == [("dossiers", p, 5, min(10 * p, 45)) for p in range(1, 6)]


def test_pages_are_fetched_only_as_chunks_are_consumed(portal):
    with connect(portal, page_size=10, chunk_size=7) as connector:
        chunks = connector.read("dossiers", ALL_TIME)
        assert api_calls(portal) == []

        next(chunks)
        assert len(api_calls(portal)) == 1
        next(chunks)
        assert len(api_calls(portal)) == 2


def test_chunk_larger_than_the_source_gives_one_chunk(portal):
    chunks = read_all(connect(portal, page_size=20, chunk_size=2000))

    assert [len(chunk) for chunk in chunks] == [45]
    assert len(api_calls(portal)) == 3


def test_records_are_yielded_as_received_even_without_required_fields():
    incomplete = [
        dict(DOSSIERS[0], MaTTHC=""),
        {k: v for k, v in DOSSIERS[1].items() if k != "NgayTiepNhan"},
    ]
    with PortalSimulator(procedures=[], dossiers=incomplete) as sim:
        chunks = read_all(connect(sim))

    assert [r["MaHoSo"] for chunk in chunks for r in chunk] == [d["MaHoSo"] for d in incomplete]


def test_empty_window_asks_one_page_and_yields_nothing(portal):
    empty = Window(datetime(2016, 1, 1, tzinfo=LOCAL_TZ), datetime(2016, 1, 2, tzinfo=LOCAL_TZ))

    assert read_all(connect(portal), window=empty) == []
    assert len(api_calls(portal)) == 1


def test_procedures_stream(portal):
    chunks = read_all(connect(portal, page_size=5), stream="procedures", window=None)

    assert sorted(r["MaTTHC"] for chunk in chunks for r in chunk) == sorted(
        p["MaTTHC"] for p in PROCEDURES
    )
    calls = api_calls(portal, "LayDanhSachTTHC")
    assert [call["trang"] for call in calls] == [1, 2, 3]
    assert {call["madonvi"] for call in calls} == {AGENCY}


# -- window -----------------------------------------------------------------------------------


def test_window_is_sent_formatted_in_local_time_on_every_page(portal):
    # 2017-03-01 03:00 UTC is 10:00 in Vietnam; the window covers dossiers 2..11 inclusive.
    window = Window(datetime(2017, 3, 1, 2, 0, tzinfo=UTC), datetime(2017, 3, 1, 11, 0, tzinfo=UTC))

    chunks = read_all(connect(portal, page_size=4), window=window)

    calls = api_calls(portal)
    assert len(calls) == 3
    assert {(c["tungay"], c["denngay"]) for c in calls} == {("20170301090000", "20170301180000")}
    got = sorted(r["MaHoSo"] for chunk in chunks for r in chunk)
    assert got == sorted(d["MaHoSo"] for d in DOSSIERS[:10])


def test_portal_time_helpers_round_trip():
    moment = datetime(2017, 8, 31, 23, 30, 5, tzinfo=UTC)

    text = format_portal_time(moment)

    assert text == "20170901063005"
    assert parse_portal_time(text) == moment
    assert parse_portal_time("") is None
    with pytest.raises(ValueError):
        parse_portal_time("2017-09-01")
    with pytest.raises(ValueError):
        format_portal_time(datetime(2017, 9, 1))


def test_window_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2017, 1, 1), datetime(2017, 1, 2, tzinfo=LOCAL_TZ))


# -- sessions ---------------------------------------------------------------------------------


def test_logs_in_once_and_reuses_the_session(portal):
    with connect(portal, page_size=10) as connector:
        list(connector.read("dossiers", ALL_TIME))
        list(connector.read("procedures", None))

    assert connector.logins == 1
    assert len(portal.calls) == 5 + 2  # 45 dossiers and 12 procedures, 10 a page


def test_expired_session_logs_in_again_and_repeats_the_same_page(portal):
    def expire_after_page_2(stream, page, total_pages, records):
        if page == 2:
            portal.expire_sessions()

    connector = connect(portal, page_size=10, on_page=expire_after_page_2)

    chunks = read_all(connector)

    assert sorted(r["MaHoSo"] for chunk in chunks for r in chunk) == sorted(
        d["MaHoSo"] for d in DOSSIERS
    )
    assert [call["trang"] for call in api_calls(portal)] == [1, 2, 3, 3, 4, 5]
    assert connector.logins == 2


def test_injected_expired_session_is_recovered(portal):
    portal.inject("expired_session")
    connector = connect(portal, page_size=10)

    chunks = read_all(connector)

    assert sum(len(chunk) for chunk in chunks) == 45
    assert [call["trang"] for call in api_calls(portal)] == [1, 1, 2, 3, 4, 5]
    assert connector.logins == 2


def test_session_rejected_right_after_relogin_is_an_auth_error(portal):
    portal.inject("expired_session", "expired_session")

    with pytest.raises(SourceAuthError) as caught:
        read_all(connect(portal, page_size=10))

    assert_one_line(caught.value, "national_portal LayDanhSachHoSo page 1: session rejected again")


def test_bad_credentials_name_the_user_never_the_password(portal, caplog):
    caplog.set_level(logging.DEBUG, logger="lienthong.connectors")

    with pytest.raises(SourceAuthError) as caught:
        read_all(connect(portal, login="canbo", password="wrong-s3cret"))

    assert_one_line(caught.value, "national_portal login: credentials rejected for user 'canbo'")
    assert "wrong-s3cret" not in str(caught.value)
    assert "wrong-s3cret" not in caplog.text
    assert api_calls(portal) == []


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["http_500", "http_429", "slow"])
def test_transient_fault_is_retried_then_succeeds(portal, fault, caplog):
    portal.inject(fault)

    chunks = read_all(connect(portal, page_size=10, timeout=1.0))

    assert sorted(r["MaHoSo"] for chunk in chunks for r in chunk) == sorted(
        d["MaHoSo"] for d in DOSSIERS
    )
    assert "retry 1 of 5" in caplog.text


def test_retry_after_is_honoured_but_capped_at_backoff_max(portal):
    portal.inject("http_429", "http_429")  # the simulator asks for Retry-After: 1
    started = time.monotonic()

    read_all(connect(portal, page_size=50, backoff_max=0.2))

    assert 0.4 <= time.monotonic() - started < 1.5


def test_retries_exhausted_is_source_unavailable_with_the_last_cause(portal):
    portal.inject(*["http_500"] * 3)

    with pytest.raises(SourceUnavailable) as caught:
        read_all(connect(portal, max_retries=2))

    assert_one_line(caught.value, "national_portal")
    assert "gave up after 3 attempts" in str(caught.value)
    assert "HTTP 500" in str(caught.value)


def test_unreachable_portal_is_source_unavailable():
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = connection_from_uri(f"http://demo:demo@127.0.0.1:{port}")
    connector = PortalConnector(settings, max_retries=1, backoff_base=0.01, backoff_max=0.01)

    with pytest.raises(SourceUnavailable) as caught:
        read_all(connector)

    assert_one_line(caught.value, "national_portal login: gave up after 2 attempts")
    assert "ConnectError" in str(caught.value)


# -- protocol errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "error", "message"),
    [
        (
            ["malformed_json"] * 2,
            SourceProtocolError,
            "national_portal LayDanhSachHoSo page 1: response is not JSON (malformed JSON",
        ),
        (
            ["empty_body"] * 2,
            SourceProtocolError,
            "national_portal LayDanhSachHoSo page 1: empty response body (HTTP 200)",
        ),
        (
            ["missing_fields"],
            SourceProtocolError,
            "national_portal LayDanhSachHoSo page 1: answer lacks",
        ),
        (
            ["html_error"] * 6,
            SourceUnavailable,
            "national_portal LayDanhSachHoSo page 1: gave up after 6 attempts: "
            "response is not JSON (HTML error page, HTTP 5",
        ),
    ],
    ids=["malformed_json", "empty_body", "missing_fields", "html_error"],
)
def test_protocol_fault_raises_a_one_line_error(portal, faults, error, message):
    connector = connect(portal)
    portal.inject(*faults)  # the simulator's faults hit /api calls, not /login

    with pytest.raises(error) as caught:
        read_all(connector)

    assert_one_line(caught.value, message)
    assert len(api_calls(portal)) == len(faults)  # garbled 200s once more, 5xx up to max_retries


def test_garbled_answer_is_retried_once_only(portal):
    portal.inject("malformed_json")

    chunks = read_all(connect(portal, page_size=50))

    assert sum(len(chunk) for chunk in chunks) == 45


def test_unknown_stream_and_oversized_page_are_refused(portal):
    with pytest.raises(ValueError, match="no stream 'hoso'"):
        connect(portal).read("hoso", ALL_TIME)
    with pytest.raises(ValueError, match="page_size"):
        connect(portal, page_size=1001)
