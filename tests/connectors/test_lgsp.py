"""LgspConnector against the LGSP feed simulator over real loopback HTTP: safe, streaming, all-or-nothing."""

from __future__ import annotations

import gc
import io
import time
import tracemalloc

import pytest

from connectors.errors import SourceUnavailable
from connectors.lgsp import DOSSIER_FIELDS, LgspConnector, MessageRefused, check_message
from connectors.settings import connection_from_uri
from simulators.lgsp import (
    LgspSimulator,
    RecordingServer,
    build_billion_laughs_message,
    build_message,
    build_parameter_entity_message,
    build_schema_violating_message,
    build_xxe_message,
)
from transforms.portal import dossiers_to_frames

SENDER = "000.00.04.H62"  # Department of Planning and Investment (business registration)
RECEIVER = "000.00.00.H62"


def dossier(n: int, **overrides: str) -> dict[str, str]:
    record = {
        "MaHoSo": f"000.00.04.H62-160101-{n:05d}",
        "MaTTHC": "1.005190",
        "TenTTHC": "Đăng ký thành lập doanh nghiệp tư nhân",
        "DonViXuLy": SENDER,
        "NoiNopHoSo": "243",
        "KenhThucHien": "2",
        "LoaiDoiTuong": "2",
        "TrangThaiHoSo": "10",
        "NgayTiepNhan": "20160101080000",
        "NgayHenTra": "20160105170000",
        "NgayKetThucXuLy": "20160104100000",
        "NgayTra": "20160105090000",
        "NgayCapNhat": "20160105090000",
        "TrichYeuHoSo": "Đăng ký mới",
        "ChuHoSo": "Nguyễn Văn An",
        "SoGiayToChuHoSo": "001099012345",
    }
    record.update(overrides)
    return record


def message(first: int, count: int, message_id: str) -> bytes:
    return build_message([dossier(n) for n in range(first, first + count)], SENDER, RECEIVER, message_id)


def connector(feed: LgspSimulator, refused: list | None = None, **options) -> LgspConnector:
    on_refused = (lambda *args: refused.append(args)) if refused is not None else None
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_max", 0.05)
    return LgspConnector(connection_from_uri(feed.url), on_refused=on_refused, **options)


def read_all(conn: LgspConnector) -> list[dict]:
    return [record for chunk in conn.read("dossiers") for record in chunk]


def test_feed_yields_valid_messages_and_refuses_xxe_without_reading_the_file():
    refused: list = []
    with LgspSimulator([message(1, 3, "m-1"), build_xxe_message("file:///etc/passwd"),
                        message(4, 2, "m-3")]) as feed, connector(feed, refused) as conn:
        records = read_all(conn)
    assert [r["MaHoSo"][-5:] for r in records] == ["00001", "00002", "00003", "00004", "00005"]
    assert {r["_lgsp_message_id"] for r in records} == {"m-1", "m-3"}
    assert {r["_lgsp_sender"] for r in records} == {SENDER}
    assert len(refused) == 1
    message_id, cursor, reason = refused[0]
    assert cursor == 2 and message_id.startswith("hostile-")
    assert reason == "external entity declared"
    assert not any("root:" in str(value) for r in records for value in r.values())
    assert conn.last_cursor == 3


@pytest.mark.parametrize("build", [build_xxe_message, build_parameter_entity_message],
                         ids=["general-entity", "parameter-entity"])
def test_xxe_over_http_is_never_fetched(build):
    refused: list = []
    with RecordingServer() as target:
        hostile = build(f"{target.url}/leak.dtd")
        with LgspSimulator([message(1, 1, "m-1"), hostile, message(2, 1, "m-3")]) as feed, \
                connector(feed, refused) as conn:
            records = read_all(conn)
        time.sleep(0.05)  # a fetch, if any, would have arrived by now
        assert target.requests == []
    assert [r["_lgsp_message_id"] for r in records] == ["m-1", "m-3"]
    assert [(cursor, reason) for _, cursor, reason in refused] == [(2, "external entity declared")]


def test_billion_laughs_refused_quickly_without_expansion():
    bomb = build_billion_laughs_message(depth=10, width=10)  # 10**10 "lol"s if expanded
    refused: list = []
    with LgspSimulator([bomb, message(1, 1, "m-2")]) as feed, connector(feed, refused) as conn:
        started = time.perf_counter()
        records = read_all(conn)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert [reason for _, _, reason in refused] == ["entity expansion refused"]
    assert [r["_lgsp_message_id"] for r in records] == ["m-2"]


def test_bare_doctype_refused():
    plain = message(1, 1, "m-1")
    with_doctype = plain.replace(b"?>\n", b"?>\n<!DOCTYPE Message>\n", 1)
    assert with_doctype != plain
    with pytest.raises(MessageRefused, match="^DOCTYPE refused$"):
        check_message(io.BytesIO(with_doctype))


@pytest.mark.parametrize("hostile, reason", [
    (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><foo>&e;</foo>', "external entity declared"),
    (b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><Message xmlns="urn:lienthong:lgsp:v1"/>',
     "external DTD declared"),
], ids=["entity-under-a-foreign-root", "external-dtd"])
def test_doctype_refused_whatever_the_root(hostile, reason):
    with pytest.raises(MessageRefused, match=f"^{reason}$"):
        check_message(io.BytesIO(hostile))


def test_schema_violations_refused_with_a_clear_reason():
    bad_agency = build_schema_violating_message([dossier(1)], sender="000.00.XX.H62")
    no_id = build_schema_violating_message([dossier(2)], sender=SENDER, drop_message_id=True)
    bad_date = build_message([dossier(3, NgayTiepNhan="2016-01-01")], SENDER, RECEIVER, "m-date")
    refused: list = []
    with LgspSimulator([bad_agency, no_id, bad_date, message(4, 1, "m-4")]) as feed, \
            connector(feed, refused) as conn:
        records = read_all(conn)
    assert [r["_lgsp_message_id"] for r in records] == ["m-4"]
    reasons = {cursor: reason for _, cursor, reason in refused}
    assert reasons[1].startswith("schema: element 'OrganId': '000.00.XX.H62' is not a valid value")
    assert reasons[2].startswith("schema: element 'From': This element is not expected. Expected is ( MessageId )")
    assert reasons[3].startswith("schema: element 'NgayTiepNhan': '2016-01-01' is not a valid value")
    assert all("\n" not in reason and "{urn:" not in reason for reason in reasons.values())
    assert conn.last_cursor == 4


def test_violation_in_the_last_dossier_lets_none_of_the_message_through():
    dossiers = [dossier(n) for n in range(1, 50)] + [dossier(50, NgayCapNhat="yesterday")]
    refused: list = []
    with LgspSimulator([build_message(dossiers, SENDER, RECEIVER, "m-1")]) as feed, \
            connector(feed, refused, chunk_size=10) as conn:
        assert read_all(conn) == []
    assert [cursor for _, cursor, _ in refused] == [1]


def test_malformed_message_refused():
    refused: list = []
    with LgspSimulator([b"<Message xmlns='urn:lienthong:lgsp:v1'><Header>", message(1, 1, "m-2")]) as feed, \
            connector(feed, refused) as conn:
        records = read_all(conn)
    assert [r["_lgsp_message_id"] for r in records] == ["m-2"]
    assert len(refused) == 1 and refused[0][1] == 1
    assert refused[0][2].startswith(("malformed XML:", "schema:"))


def test_dossiers_have_the_portal_shape_and_go_through_the_portal_transform():
    sparse = {k: v for k, v in dossier(3).items() if k not in {"NgayTra", "NgayKetThucXuLy", "TenTTHC"}}
    msg = build_message([dossier(1), dossier(2, TrangThaiHoSo="4"), sparse], SENDER, RECEIVER, "m-1")
    with LgspSimulator([msg]) as feed, connector(feed) as conn:
        records = read_all(conn)
    assert all(set(DOSSIER_FIELDS) <= set(r) for r in records)
    assert records[2]["NgayTra"] == "" and records[0]["TenTTHC"] == "Đăng ký thành lập doanh nghiệp tư nhân"
    frame, events = dossiers_to_frames(records, key=b"k")
    assert len(frame) == 3 and events.empty
    assert frame["dossier_code"].tolist() == [r["MaHoSo"] for r in records]
    assert frame["status"].tolist() == [10, 4, 10]
    assert frame["received_at"].iloc[0].isoformat() == "2016-01-01T08:00:00+07:00"
    assert all(errors == [] for errors in frame["_errors"])
    assert "001099012345" not in "".join(frame["_payload"])  # the ID number is masked


def test_cursor_paging_and_ack():
    with LgspSimulator([message(n, 2, f"m-{n}") for n in range(1, 6)]) as feed:
        with connector(feed, page_size=2, chunk_size=3) as conn:
            chunks = list(conn.read("dossiers"))
            assert [len(c) for c in chunks] == [3, 3, 3, 1]
            assert conn.last_cursor == 5
            index_calls = [r for r in feed.requests if r.startswith("GET /messages?")]
            assert index_calls == ["GET /messages?limit=2", "GET /messages?limit=2&after=2",
                                   "GET /messages?limit=2&after=4", "GET /messages?limit=2&after=5"]
            assert feed.acked == 0
            conn.ack(3)
            assert feed.acked == 3
        # a new consumer starts after the acknowledged cursor: messages 4 and 5 come again
        with connector(feed) as conn:
            again = read_all(conn)
            assert [r["_lgsp_message_id"] for r in again] == ["m-4", "m-4", "m-5", "m-5"]
            conn.ack(conn.last_cursor)
        assert feed.acked == 5
        with connector(feed) as conn:
            assert read_all(conn) == [] and conn.last_cursor is None
        with connector(feed, start_after=4) as conn:
            assert [r["_lgsp_message_id"] for r in read_all(conn)] == ["m-5", "m-5"]


def test_last_cursor_only_covers_messages_wholly_yielded():
    with LgspSimulator([message(1, 3, "m-1"), message(4, 3, "m-2")]) as feed, \
            connector(feed, chunk_size=2) as conn:
        seen = [(len(chunk), conn.last_cursor) for chunk in conn.read("dossiers")]
    # chunk 2 ends inside message 2: acking after it must not skip the rest of message 2
    assert seen == [(2, None), (2, 1), (2, 2)]


def test_transient_failures_are_retried_by_the_base():
    with LgspSimulator([message(1, 1, "m-1")]) as feed, connector(feed) as conn:
        feed.inject("http_500", "http_429", "http_500")  # index, then the message download
        records = read_all(conn)
    assert [r["_lgsp_message_id"] for r in records] == ["m-1"]


def test_message_above_the_size_limit_is_refused_without_retry_and_the_feed_goes_on():
    big = message(1, 40, "m-big")
    refused: list = []
    with LgspSimulator([big, message(41, 1, "m-2")]) as feed, \
            connector(feed, refused, max_message_bytes=len(big) - 1, max_retries=3) as conn:
        records = read_all(conn)
        downloads = [r for r in feed.requests if r == "GET /messages/1"]
    assert [r["_lgsp_message_id"] for r in records] == ["m-2"]
    assert refused == [("m-big", 1, f"message larger than {len(big) - 1} bytes")]
    assert downloads == ["GET /messages/1"]  # refused at once: a retry would get the same bytes
    assert conn.last_cursor == 2


def test_feed_down_raises_source_unavailable():
    with LgspSimulator() as feed:
        url = feed.url
    conn = LgspConnector(connection_from_uri(url), max_retries=1, backoff_base=0.01, backoff_max=0.01)
    with conn, pytest.raises(SourceUnavailable, match="lgsp messages page 1: gave up after 2 attempts"):
        read_all(conn)


def _peak_bytes(count: int) -> tuple[int, int]:
    required = ("MaHoSo", "MaTTHC", "DonViXuLy", "KenhThucHien", "LoaiDoiTuong", "TrangThaiHoSo",
                "NgayTiepNhan", "NgayCapNhat", "TrichYeuHoSo")  # fewer elements: the test stays fast
    records = ({k: v for k, v in dossier(n).items() if k in required} for n in range(count))
    msg = build_message(records, SENDER, RECEIVER, f"m-{count}")
    with LgspSimulator([msg]) as feed, connector(feed, chunk_size=500) as conn:
        gc.collect()
        tracemalloc.start()
        try:
            seen = 0
            for chunk in conn.read("dossiers"):
                seen += len(chunk)
                del chunk
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert seen == count
    return peak, len(msg)


def test_large_message_is_read_with_flat_memory():
    small_peak, small_size = _peak_bytes(2_000)
    large_peak, large_size = _peak_bytes(20_000)
    assert large_size > 9 * small_size > 5_000_000  # ~7 MB of XML vs ~0.7 MB
    # memory follows the chunk, not the message: ten times the dossiers, about the same peak
    assert large_peak < 4_000_000
    assert large_peak < 1.5 * small_peak + 500_000


def test_processing_steps_travel_with_the_dossier_and_become_its_events():
    steps = [
        {"ThoiDiemXuLy": "20160101080000", "TrangThai": "2", "NoiDungXuLy": "Tiếp nhận hồ sơ",
         "NguoiXuLy": "Nguyễn Thu Trang", "ChucDanh": "Cán bộ một cửa", "PhongBanXuLy": ""},
        {"ThoiDiemXuLy": "20160104100000", "TrangThai": "10", "NoiDungXuLy": "Trả kết quả",
         "NguoiXuLy": "", "ChucDanh": "", "PhongBanXuLy": "Bộ phận một cửa"},
    ]
    msg = build_message([dossier(1, QuaTrinhXuLy=steps), dossier(2)], SENDER, RECEIVER, "m-steps")
    with LgspSimulator([msg]) as feed, connector(feed) as conn:
        records = read_all(conn)
    assert records[0]["QuaTrinhXuLy"] == [{k: v for k, v in step.items() if v} for step in steps]
    assert records[1]["QuaTrinhXuLy"] == []
    _, events = dossiers_to_frames(records, key=b"k")
    assert events["status"].tolist() == [2, 10]
    assert events["dossier_code"].nunique() == 1
