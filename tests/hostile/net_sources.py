"""Hostile network sources for tests: a portal serving crafted bytes, one-stop files, sample records;
what a command did (`Outcome`) and what a block cost (`measured`), for the file corpus too."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from simulators.loopback import LoopbackHandler, LoopbackServer

SENDER = "000.00.04.H62"  # Department of Planning and Investment: the agency of every sample
RECEIVER = "000.00.00.H62"
PROCEDURE_CODE = "1.005190"


def dossier(n: int, **overrides: Any) -> dict[str, Any]:
    """A clean portal dossier of the catalogue's one procedure: it loads with no rule failing."""
    record: dict[str, Any] = {
        "MaHoSo": f"{SENDER}-160101-{n:05d}",
        "MaTTHC": PROCEDURE_CODE,
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


def procedure() -> dict[str, Any]:
    """The catalogue's one procedure, as the portal's LayDanhSachTTHC serves it."""
    return {
        "MaTTHC": PROCEDURE_CODE, "TenTTHC": "Đăng ký thành lập doanh nghiệp tư nhân",
        "MaLinhVuc": "G01", "TenLinhVuc": "Thành lập và hoạt động doanh nghiệp",
        "MaCoQuanThucHien": SENDER, "CapThucHien": "1", "MucDo": "4",
        "LichSuMucDo": [{"MucDo": "4", "TuNgay": "20150101000000"}], "PhiLePhi": "50000",
        "ThoiHanGiaiQuyet": "3", "NgayCongBo": "20150101000000", "NgayBaiBo": "",
        "NgayCapNhat": "20150101000000",
    }  # fmt: skip


def sync_answer(records: list[Any], total: Any = None) -> bytes:
    """A portal sync answer (INTERFACES §1) carrying `records`, as UTF-8 JSON bytes."""
    answer = {"error_code": "00", "tongso": len(records) if total is None else total, "trang": 1,
              "sodong": 500, "result": records}
    return json.dumps(answer, ensure_ascii=False).encode()


def with_raw_field(record: dict[str, Any], name: str, raw_json: bytes) -> bytes:
    """`record` as JSON text ending with the field `name` = `raw_json` as written (b"NaN", b"1e999").

    A field the record already has is then written twice.
    """
    text = json.dumps(record, ensure_ascii=False).encode()
    return text[:-1] + b', "' + name.encode() + b'": ' + raw_json + b"}"


def raw_answer(*records: bytes, total: bytes = b"1") -> bytes:
    """A sync answer whose records are JSON texts as written."""
    return b'{"error_code": "00", "tongso": ' + total + b', "result": [' + b", ".join(records) + b"]}"


class CraftedPortal(LoopbackServer):
    """The portal's login and sync API, answering each service with bytes a test crafted.

    `answers[service]` is the body of every `/api` call for that service (a callable is given the
    page asked for); login always succeeds. `.calls` counts the `/api` calls per service.
    """

    def __init__(self, answers: dict[str, bytes | Callable[[int], bytes]]) -> None:
        super().__init__("127.0.0.1", 0)
        self.handler = _CraftedHandler
        self.answers = answers
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def answer(self, body: Any) -> bytes:
        service = str(body.get("service")) if isinstance(body, dict) else ""
        with self._lock:
            self.calls[service] = self.calls.get(service, 0) + 1
        crafted = self.answers.get(service, b'{"error_code": "99", "message": "no such service"}')
        return crafted(int(body.get("trang") or 1)) if callable(crafted) else crafted

    @property
    def uri(self) -> str:
        """The connection URI of this portal, with the credentials the sync logs in with."""
        return self.url.replace("http://", "http://demo:demo@")


class _CraftedHandler(LoopbackHandler):
    def do_POST(self) -> None:  # noqa: N802 — http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        if self.path == "/login":
            self.send_payload(200, b'{"session": "s", "error_code": 0}')
        else:
            self.send_payload(200, self.server.simulator.answer(body))


@dataclass
class Outcome:
    """What one command did: exit code, its output, its error lines, seconds taken."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def error(self) -> str:
        """The one `lienthong: error:` line (asserting there is exactly one, and no traceback)."""
        lines = [line for line in self.err.splitlines() if line.startswith("lienthong: error:")]
        assert "Traceback" not in self.err, self.err
        assert len(lines) == 1, self.err
        return lines[0]


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Seconds and traced peak memory (bytes) of the block, in the yielded dict once it ends."""
    cost: dict[str, float] = {}
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield cost
    finally:
        cost["seconds"] = time.perf_counter() - started
        cost["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


ONESTOP_TABLES = {
    # variant: (dossier table, its key, received, last update, fee, summary, status, applicant)
    "a": ("tbl_hoso", "so_ho_so", "ngay_nhan", "ngay_cap_nhat", "le_phi", "trich_yeu", "trang_thai",
          "ten_chu_ho_so"),
    "b": ("dossier", "dossier_no", "received_at", "modified_at", "fee_total", "summary", "status", "applicant"),
}


def build_onestop(path: Path, variant: str, rows: dict[str, dict[str, Any]]) -> str:
    """A one-stop SQLite file of `variant` with a clean dossier (sequence 1) and hostile ones.

    `rows` maps a name to the dossier table's columns to override in a copy of the clean row
    (its key is `<agency>-160101-<n>` unless overridden). The dossier table is rebuilt without
    constraints, as an agency's own database may be (NULL keys, text in a DATETIME column).
    Returns the connection URI with the variant's mapping.
    """
    from simulators.onestop import create_onestop_database

    url = f"sqlite:///{path}"
    create_onestop_database(url, variant, [dossier(1)])
    table, key = ONESTOP_TABLES[variant][:2]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO strict_{table}"))
            conn.execute(sa.text(f"CREATE TABLE {table} AS SELECT * FROM strict_{table}"))
            clean = dict(conn.execute(sa.text(f"SELECT * FROM {table}")).mappings().one())
            clean.pop("id", None)
            for n, overrides in enumerate(rows.values(), start=2):
                row = {**clean, key: f"{SENDER}-160101-{n:05d}", **overrides}
                columns = ", ".join(row)
                values = ", ".join(f":{name}" for name in row)
                conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)
    finally:
        engine.dispose()
    return f"{url}?mapping=onestop_variant_{variant}"
