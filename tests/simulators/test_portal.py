"""The portal simulator over real loopback HTTP: login, paging, windows, errors and faults."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from simulators.generator import generate_province
from simulators.portal import FAULTS, PortalSimulator

PROVINCE = "000.00.00.H62"
ROOT = Path(__file__).resolve().parents[2]


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, path: str, body: Any, timeout: float = 10.0) -> Answer:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def login(portal: PortalSimulator) -> str:
    return post(portal.url, "/login", {"username": "demo", "password": "demo"}).json()["session"]


def ask(
    portal: PortalSimulator, session: str, service: str = "LayDanhSachHoSo", **params
) -> Answer:
    body = {"session": session, "madonvi": PROVINCE, "service": service, **params}
    return post(portal.url, "/api", body)


def dossier(code: str, updated: str, **extra) -> dict:
    return {"MaHoSo": code, "NgayCapNhat": updated, "DonViXuLy": code.split("-")[0], **extra}


@pytest.fixture(scope="module")
def province(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("portal-province")
    generate_province(out, seed=11, filler_dossiers=300)
    return out


@pytest.fixture(scope="module")
def portal(province):
    with PortalSimulator(data_dir=province) as server:
        yield server


@pytest.fixture
def small():
    records = [
        dossier("000.00.03.H62-160105-0002", "20160105100000", n=1),
        dossier("000.00.03.H62-160105-0001", "20160105100000", n=2),
        dossier("000.00.04.H62-160104-0001", "20160104080000", n=3),
        dossier("000.01.21.H62-160106-0001", "20160106170000", n=4),
        dossier("000.00.03.H62-160105-0001", "20160105100000", n=5),  # served again
        dossier("000.00.04.H62-160107-0001", "20160107000000", n=6),
    ]
    with PortalSimulator(dossiers=records, procedures=[]) as server:
        yield server


def test_login_gives_a_session_with_integer_error_code(portal):
    answer = post(portal.url, "/login", {"username": "demo", "password": "demo"})
    assert answer.status == 200
    body = answer.json()
    assert body["error_code"] == 0 and isinstance(body["session"], str) and body["session"]


@pytest.mark.parametrize(
    "credentials",
    [{"username": "demo", "password": "wrong"}, {"username": "x", "password": "demo"}, {}],
)
def test_login_refuses_bad_credentials(portal, credentials):
    body = post(portal.url, "/login", credentials).json()
    assert body == {"error_code": 1, "message": "Sai tên đăng nhập hoặc mật khẩu"}


def test_login_with_configured_credentials():
    with PortalSimulator(username="vp", password="s3cret") as server:
        assert (
            post(server.url, "/login", {"username": "demo", "password": "demo"}).json()[
                "error_code"
            ]
            == 1
        )
        assert (
            post(server.url, "/login", {"username": "vp", "password": "s3cret"}).json()[
                "error_code"
            ]
            == 0
        )


@pytest.mark.parametrize("session", ["", "not-a-session", None])
def test_unknown_session_is_told_expired(portal, session):
    answer = ask(portal, session)
    assert answer.status == 200
    assert answer.json() == {"error_code": "401", "message": "Phiên làm việc đã hết hạn"}


def test_unknown_service_is_99(portal):
    body = ask(portal, login(portal), service="LayDanhSachKhac").json()
    assert body["error_code"] == "99"


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"sodong": 1001}, "sodong"),
        ({"sodong": 0}, "sodong"),
        ({"sodong": "many"}, "sodong"),
        ({"trang": 0}, "trang"),
        ({"tungay": "2016-01-01"}, "tungay"),
        ({"denngay": "20160230000000"}, "denngay"),
        ({"tungay": "20160102000000", "denngay": "20160101000000"}, "tungay"),
        ({"madonvi": "000.00.98.H62"}, "madonvi"),
        ({"madonvi": ""}, "madonvi"),
    ],
)
def test_bad_parameters_are_02_naming_the_parameter(portal, params, word):
    body = ask(portal, login(portal), **params).json()
    assert body["error_code"] == "02"
    assert word in body["message"]


def test_paging_serves_every_served_record_exactly_once(portal, province):
    served = [
        json.loads(line) for line in (province / "dossiers.jsonl").read_text("utf-8").splitlines()
    ]
    session = login(portal)
    got, page = [], 1
    while True:
        body = ask(portal, session, trang=page, sodong=997).json()
        assert body["error_code"] == "00" and body["tongso"] == len(served)
        assert (body["trang"], body["sodong"]) == (page, 997)
        if not body["result"]:
            break
        got.extend(body["result"])
        page += 1
    assert got == served  # the file is in serving order, duplicates included
    assert len({d["MaHoSo"] for d in got}) < len(got)


def test_procedures_are_listed_and_paged(portal, province):
    catalogue = [
        json.loads(line) for line in (province / "procedures.jsonl").read_text("utf-8").splitlines()
    ]
    session = login(portal)
    first = ask(portal, session, "LayDanhSachTTHC", trang=1, sodong=1000).json()
    second = ask(portal, session, "LayDanhSachTTHC", trang=2, sodong=1000).json()
    third = ask(portal, session, "LayDanhSachTTHC", trang=3, sodong=1000).json()
    assert first["tongso"] == len(catalogue) == 2010
    assert first["result"] + second["result"] + third["result"] == catalogue
    since = ask(portal, session, "LayDanhSachTTHC", tungay="20170101000000", sodong=1000).json()
    assert since["tongso"] == sum(1 for p in catalogue if p["NgayCapNhat"] >= "20170101000000")


def test_window_is_inclusive_at_both_ends(small):
    session = login(small)
    body = ask(small, session, tungay="20160105100000", denngay="20160106170000").json()
    assert body["tongso"] == 4
    assert [d["n"] for d in body["result"]] == [2, 5, 1, 4]
    just_after = ask(small, session, tungay="20160105100001", denngay="20160107000000").json()
    assert [d["n"] for d in just_after["result"]] == [4, 6]


def test_order_is_update_time_then_code_then_served_order(small):
    body = ask(small, login(small), sodong=1000).json()
    assert [d["n"] for d in body["result"]] == [3, 2, 5, 1, 4, 6]


def test_pages_past_the_end_are_empty(small):
    body = ask(small, login(small), trang=3, sodong=3).json()
    assert body["error_code"] == "00" and body["tongso"] == 6 and body["result"] == []


def test_madonvi_of_an_agency_narrows_to_its_dossiers(small):
    session = login(small)
    justice = ask(small, session, madonvi="000.00.03.H62").json()
    assert {d["n"] for d in justice["result"]} == {1, 2, 5}
    vinh_yen = ask(small, session, madonvi="000.00.21.H62").json()  # a district and its communes
    assert [d["n"] for d in vinh_yen["result"]] == [4]


def test_calls_record_the_windows_asked(small):
    session = login(small)
    ask(small, session, tungay="20160101000000", denngay="20160131235959", trang=2, sodong=50)
    ask(small, session, "LayDanhSachTTHC", trang=1, sodong=10)
    assert small.calls == [
        {
            "service": "LayDanhSachHoSo",
            "tungay": "20160101000000",
            "denngay": "20160131235959",
            "trang": 2,
            "sodong": 50,
            "madonvi": PROVINCE,
        },
        {
            "service": "LayDanhSachTTHC",
            "tungay": None,
            "denngay": None,
            "trang": 1,
            "sodong": 10,
            "madonvi": PROVINCE,
        },
    ]


def test_login_is_not_an_api_call(small):
    login(small)
    assert small.calls == []


def test_malformed_json_fault(small):
    small.inject("malformed_json")
    answer = ask(small, login(small))
    assert answer.status == 200 and answer.body == b'{"error_code": "00", "result": ['
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def test_html_error_fault(small):
    small.inject("html_error")
    answer = ask(small, login(small))
    assert answer.status == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert b"<html>" in answer.body and b"nginx" in answer.body


def test_empty_body_fault(small):
    small.inject("empty_body")
    answer = ask(small, login(small))
    assert answer.status == 200 and answer.body == b""


def test_missing_fields_fault(small):
    small.inject("missing_fields")
    body = ask(small, login(small)).json()
    assert body["error_code"] == "00" and "result" not in body and "tongso" not in body


def test_http_500_fault(small):
    small.inject("http_500")
    answer = ask(small, login(small))
    assert answer.status == 500 and answer.json() == {"error_code": "500"}


def test_http_429_fault(small):
    small.inject("http_429")
    answer = ask(small, login(small))
    assert answer.status == 429 and answer.headers["Retry-After"] == "1"


def test_expired_session_fault_drops_every_session(small):
    first, second = login(small), login(small)
    small.inject("expired_session")
    assert ask(small, first).json()["error_code"] == "401"
    assert ask(small, second).json()["error_code"] == "401"  # not a fault any more: gone
    assert ask(small, login(small)).json()["error_code"] == "00"


def test_slow_fault_trips_a_client_timeout_then_serves(small):
    session = login(small)
    small.inject("slow")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        post(
            small.url,
            "/api",
            {"session": session, "madonvi": PROVINCE, "service": "LayDanhSachHoSo"},
            timeout=0.5,
        )
    assert time.monotonic() - started < 2
    assert ask(small, session).json()["error_code"] == "00"


def test_slow_fault_answers_normally_to_a_patient_client(small):
    session = login(small)
    small.inject("slow")
    started = time.monotonic()
    body = ask(small, session).json()
    assert time.monotonic() - started >= 2.9 and body["tongso"] == 6


def test_faults_apply_one_per_call_in_order(small):
    session = login(small)
    small.inject("http_500", "empty_body", "http_429")
    assert [ask(small, session).status for _ in range(4)] == [500, 200, 429, 200]
    assert len(small.calls) == 4


def test_every_fault_name_is_accepted_and_unknown_refused(small):
    small.inject(*FAULTS)
    with pytest.raises(ValueError, match="unknown fault"):
        small.inject("network_partition")


def test_expire_sessions_now():
    with PortalSimulator() as server:
        session = login(server)
        assert ask(server, session).json()["error_code"] == "00"
        server.expire_sessions()
        assert ask(server, session).json()["error_code"] == "401"


def test_session_time_to_live():
    with PortalSimulator(session_ttl=0.3) as server:
        session = login(server)
        assert ask(server, session).json()["error_code"] == "00"
        time.sleep(0.4)
        assert ask(server, session).json()["error_code"] == "401"


def test_concurrent_clients_page_consistently(portal):
    session = login(portal)
    results: dict[int, list] = {}

    def fetch(page: int) -> None:
        results[page] = ask(portal, session, trang=page, sodong=500).json()["result"]

    threads = [threading.Thread(target=fetch, args=(page,)) for page in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sequential = [ask(portal, session, trang=p, sodong=500).json()["result"] for p in range(1, 9)]
    assert [results[p] for p in range(1, 9)] == sequential


def test_stop_frees_the_port():
    server = PortalSimulator().start()
    port = server.port
    server.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_main_serves_a_data_dir_until_interrupted(province):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.portal",
            "--data-dir",
            str(province),
            "--port",
            "0",
            "--username",
            "u",
            "--password",
            "p",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        body = post(url, "/login", {"username": "u", "password": "p"}).json()
        assert body["error_code"] == 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # leave no server behind the failure
            out, err = process.communicate()
            raise AssertionError(f"the simulator did not stop within 10 s of SIGINT; stderr: {err[-2000:]}") from None
    assert process.returncode == 0, err
    assert err == ""  # no request logging


# -- push services (INTERFACES §14) -----------------------------------------------------------


def pushed_dossier(code: str = "000.00.03.H62-160105-0001", **changes) -> dict:
    record = {
        "MaHoSo": code,
        "MaTTHC": "2.000488",
        "TenTTHC": "Cấp Phiếu lý lịch tư pháp",
        "DonViXuLy": "000.00.03.H62",
        "NoiNopHoSo": "243",
        "KenhThucHien": "2",
        "LoaiDoiTuong": "1",
        "TrangThaiHoSo": "4",
        "NgayTiepNhan": "20160105100000",
        "NgayHenTra": "20160115100000",
        "NgayTra": "",
        "DuocThanhToanTrucTuyen": "1",
        "DanhSachLePhi": [],
    }
    record.update(changes)
    return record


def push(portal, session, records, updating="False", service="DongBoHoSoMC") -> dict:
    body = {"session": session, "madonvi": PROVINCE, "service": service, "data": records}
    if updating is not None:
        body["isUpdating"] = updating
    return post(portal.url, "/api", body).json()


def test_push_accepts_valid_dossiers_and_keeps_them():
    with PortalSimulator() as sim:
        session = login(sim)
        records = [pushed_dossier(), pushed_dossier("000.00.03.H62-160105-0002")]
        answer = push(sim, session, records)
        assert answer["error_code"] == "00" and (answer["tongso"], answer["thanhcong"]) == (2, 2)
        assert [r["error_code"] for r in answer["result"]] == ["00", "00"]
        assert sim.pushed == {r["MaHoSo"]: r for r in records}
        assert sim.calls[-1]["isUpdating"] == "False" and sim.calls[-1]["records"] == 2


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"MaTTHC": ""}, "10", "Thiếu trường bắt buộc: MaTTHC"),
        ({"NgayTiepNhan": "2016-01-05"}, "11", "NgayTiepNhan '2016-01-05'"),
        ({"NgayHenTra": "20160230000000"}, "11", "NgayHenTra"),
        ({"TrangThaiHoSo": "11"}, "12", "TrangThaiHoSo '11'"),
        ({"KenhThucHien": "4"}, "12", "KenhThucHien '4'"),
        ({"DonViXuLy": "000.00.99.H62"}, "12", "DonViXuLy '000.00.99.H62'"),
        ({"DonViXuLy": "H62"}, "13", "DonViXuLy 'H62'"),
        ({"MaHoSo": "HS-0001"}, "13", "MaHoSo 'HS-0001'"),
        ({"NgayHenTra": "20160101000000"}, "14", "Ngày hẹn trả trước ngày tiếp nhận"),
        ({"LoaiDoiTuong": 1}, "17", "LoaiDoiTuong = 1"),
    ],
)
def test_push_judges_each_record_and_names_the_field(changes, code, words):
    with PortalSimulator() as sim:
        session = login(sim)
        good = pushed_dossier("000.00.03.H62-160105-0009")
        bad = pushed_dossier(**changes)
        answer = push(sim, session, [good, bad])
        assert answer["error_code"] == "03" and answer["thanhcong"] == 1
        assert answer["result"][0]["error_code"] == "00"
        verdict = answer["result"][1]
        assert verdict["MaHoSo"] == bad["MaHoSo"] and verdict["error_code"] == code
        assert words in verdict["message"]
        assert list(sim.pushed) == [good["MaHoSo"]]


def test_push_inserts_only_new_dossiers_and_updates_only_known_ones():
    with PortalSimulator() as sim:
        session = login(sim)
        assert push(sim, session, [pushed_dossier()], "True")["result"][0]["error_code"] == "16"
        assert push(sim, session, [pushed_dossier()], "False")["error_code"] == "00"
        assert push(sim, session, [pushed_dossier()], "False")["result"][0]["error_code"] == "15"
        changed = pushed_dossier(TrangThaiHoSo="10", NgayTra="20160114090000")
        assert push(sim, session, [changed], "True")["error_code"] == "00"
        assert sim.pushed[changed["MaHoSo"]]["TrangThaiHoSo"] == "10"


@pytest.mark.parametrize(
    ("updating", "data", "word"),
    [("yes", [pushed_dossier()], "isUpdating"), (None, [pushed_dossier()], "isUpdating"),
     ("False", [], "data"), ("False", {"MaHoSo": "x"}, "data"),
     ("False", [pushed_dossier()] * 1001, "tối đa 1000")],
)
def test_push_refuses_a_bad_call_as_02(updating, data, word):
    with PortalSimulator() as sim:
        answer = push(sim, login(sim), data, updating)
        assert answer["error_code"] == "02" and word in answer["message"] and sim.pushed == {}


def test_progress_steps_need_a_pushed_dossier_and_replace_a_resent_step():
    with PortalSimulator() as sim:
        session = login(sim)
        step = {"MaHoSo": pushed_dossier()["MaHoSo"], "ThoiDiemXuLy": "20160106080000",
                "TrangThai": "4", "NoiDungXuLy": "Chuyển phòng chuyên môn", "NguoiXuLy": ""}
        early = push(sim, session, [step], None, "CapNhatTienDoHoSoMC")
        assert early["result"][0]["error_code"] == "16"
        push(sim, session, [pushed_dossier()])
        bad = {**step, "ThoiDiemXuLy": "2016"}
        answer = push(sim, session, [step, bad], None, "CapNhatTienDoHoSoMC")
        assert [r["error_code"] for r in answer["result"]] == ["00", "11"]
        push(sim, session, [{**step, "NoiDungXuLy": "Sửa"}], None, "CapNhatTienDoHoSoMC")
        assert [s["NoiDungXuLy"] for s in sim.progress[step["MaHoSo"]]] == ["Sửa"]


def test_push_needs_a_session_and_takes_faults(small):
    assert push(small, "not-a-session", [pushed_dossier()])["error_code"] == "401"
    small.inject("http_500")
    body = {"session": login(small), "madonvi": PROVINCE, "service": "DongBoHoSoMC",
            "isUpdating": "False", "data": [pushed_dossier()]}
    assert post(small.url, "/api", body).status == 500 and small.pushed == {}
    assert post(small.url, "/api", body).json()["error_code"] == "00"


def test_a_scaled_listing_serves_fresh_copies_in_update_order():
    from simulators.portal import ScaledListing, copy_code

    base = [{"MaHoSo": f"000.00.04.H62-160101-{i:04d}", "NgayCapNhat": f"2016010{1 + i // 2}080000",
             "DonViXuLy": "000.00.04.H62", "SoBienNhan": f"000.00.04.H62-160101-{i:04d}"} for i in range(4)]
    base.insert(2, dict(base[1]))  # a duplicate row, served twice in a row
    base.append({"MaHoSo": "bad code", "NgayCapNhat": "20160109080000", "DonViXuLy": "000.00.04.H62"})
    listing = ScaledListing(base, 15)
    served = [listing.record(p) for p in range(len(listing))]
    assert len(served) == 15 and listing.copies == 3
    assert [r["NgayCapNhat"] for r in served] == sorted(r["NgayCapNhat"] for r in served)
    assert all(r["SoBienNhan"] == r["MaHoSo"] for r in served if "SoBienNhan" in r)
    codes = [r["MaHoSo"] for r in served]
    repeated = [a for a, b in zip(codes, codes[1:], strict=False) if a == b]
    assert repeated == ["000.00.04.H62-160101-0001", "000.00.04.H62-160101-010001", "000.00.04.H62-160101-020001"]
    assert len(set(codes)) == 12  # 4 codes x 3 copies; the duplicate rows repeat
    assert copy_code("000.00.04.H62-160101-0001", 2) == "000.00.04.H62-160101-020001"
    assert copy_code("bad code", 1) is None
    window = listing.select("20160102000000", "20160102235959", None)
    assert {served[p]["NgayCapNhat"] for p in window} == {"20160102080000"} and len(window) == 6
    # Position 5 is the first of a duplicate row's two rows: both change, and stay in a row.
    assert codes[5] == codes[6]
    assert listing.touch(5, "20170901000000") == 4
    assert len(listing) == 19
    moved = listing.select("20170901000000", None, None)
    assert [listing.record(p)["MaHoSo"] for p in moved] == [codes[0], codes[5], codes[6], codes[10]]
    assert listing.record(moved[1]) == listing.record(moved[2])
    assert len(listing.select(None, None, None)) == 15


@pytest.mark.parametrize("every", [1, 2, 3, 4, 5, 7])
def test_a_scaled_listing_after_changes_still_makes_up_its_total(every):
    """What the portal connector counts of a window (distinct codes, plus rows listed twice in a
    row: `connectors.base.HttpJsonConnector._numbered_pass`) is the window's total after records
    changed: a changed duplicate row moves whole."""
    from simulators.portal import ScaledListing

    base = [{"MaHoSo": f"000.00.04.H62-160101-{i:04d}", "NgayCapNhat": f"2016010{1 + i // 2}080000",
             "DonViXuLy": "000.00.04.H62"} for i in range(4)]
    base.insert(2, dict(base[1]))
    listing = ScaledListing(base, 15)
    listing.touch(every, "20170901000000", {"GhiChu": "changed"})
    for since in (None, "20160102000000", "20170901000000"):
        window = listing.select(since, None, None)
        served = [listing.record(p) for p in window]
        in_a_row = sum(1 for a, b in zip(served, served[1:], strict=False) if a == b)
        assert len({r["MaHoSo"] for r in served}) + in_a_row == len(window), since
