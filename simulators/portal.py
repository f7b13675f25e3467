"""The national portal's (DVCQG-like) sync API on loopback, with fault injection (INTERFACES §1, §14)."""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

import standards
from simulators.generator import load_records
from simulators.loopback import LoopbackHandler, LoopbackServer, serve_until_interrupted
from transforms.timefmt import LOCAL_TZ, format_portal_time

__all__ = ["FAULTS", "PortalSimulator", "ScaledListing", "copy_code", "main"]

PROVINCE_AGENCY = "000.00.00.H62"  # madonvi asking for the whole province
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
SLOW_SECONDS = 3.0
FAULTS = (
    "malformed_json",
    "html_error",
    "empty_body",
    "missing_fields",
    "http_500",
    "http_429",
    "expired_session",
    "slow",
    "move",
    "move_within",
    "insert",
    "short",
    "drip",
)
# "drip": the answer's headers, then one byte of its body every DRIP_SECONDS, for as long as the
# client listens (a server that never finishes: only a total deadline ends the call).
DRIP_SECONDS = 0.2
# Faults that change what a listing call serves, not how it is sent (the answer is a normal one):
# before answering, "move" updates the first record of the window asked (its NgayCapNhat becomes
# now: it sorts last, or leaves a window that ends earlier), "move_within" moves it to the window's
# end (`denngay`, so it stays in the window), "insert" adds a record at the window's start (the
# total grows); "short" serves the page without its last record, `tongso` unchanged.
# A record moved or inserted early in the order shifts every later one, as on the real portal.
ANSWER_FAULTS = ("slow", "move", "move_within", "insert", "short")
EXPIRED = {"error_code": "401", "message": "Phiên làm việc đã hết hạn"}
BAD_LOGIN = {"error_code": 1, "message": "Sai tên đăng nhập hoặc mật khẩu"}
# Push services (INTERFACES §14): the province sends dossiers and their processing steps.
PUSH_DOSSIERS = "DongBoHoSoMC"
PUSH_PROGRESS = "CapNhatTienDoHoSoMC"
MAX_PUSH_RECORDS = 1000
PUSH_OK = "00"
PUSH_SOME_REJECTED = "03"
# Per-record error codes of a push (the simulator's; the real portal's codes are not published).
RECORD_MISSING = "10"
RECORD_BAD_TIME = "11"
RECORD_NOT_IN_CODELIST = "12"
RECORD_BAD_CODE = "13"
RECORD_DUE_BEFORE_RECEIPT = "14"
RECORD_EXISTS = "15"
RECORD_UNKNOWN = "16"
RECORD_NOT_TEXT = "17"
RECORD_MESSAGES = {
    RECORD_MISSING: "Thiếu trường bắt buộc",
    RECORD_BAD_TIME: "Thời gian không đúng định dạng yyyyMMddHHmmss",
    RECORD_NOT_IN_CODELIST: "Mã không thuộc danh mục",
    RECORD_BAD_CODE: "Mã không đúng định dạng",
    RECORD_DUE_BEFORE_RECEIPT: "Ngày hẹn trả trước ngày tiếp nhận",
    RECORD_EXISTS: "Hồ sơ đã tồn tại trên Cổng, không thể thêm mới (isUpdating phải là \"True\")",
    RECORD_UNKNOWN: "Hồ sơ chưa có trên Cổng",
    RECORD_NOT_TEXT: "Giá trị phải là chuỗi ký tự",
}
DOSSIER_REQUIRED = ("MaHoSo", "MaTTHC", "DonViXuLy", "NgayTiepNhan", "TrangThaiHoSo",
                    "KenhThucHien", "LoaiDoiTuong")
DOSSIER_TIMES = ("NgayTiepNhan", "NgayHenTra", "NgayTra", "NgayKetThucXuLy", "NgayTuChoi",
                 "NgayNopHoSo", "NgayCapNhat")
STEP_REQUIRED = ("MaHoSo", "ThoiDiemXuLy", "TrangThai")
STEP_TIMES = ("ThoiDiemXuLy", "NgayBatDau", "NgayKetThucTheoQuyDinh")
DOSSIER_CODE_RE = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}-[0-9]{6}-[0-9]{4,6}$")
AGENCY_CODE_RE = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$")
PROCEDURE_CODE_RE = re.compile(
    r"^[0-9]\.[0-9]{6}(\.[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2})?(\.[0-9]{2})?$")
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class _Listing:
    """Records in serving order — (NgayCapNhat, key, served position) — pre-encoded as JSON."""

    def __init__(self, records: Iterable[dict[str, Any]], key: str, agency_field: str) -> None:
        rows = list(records)
        self.key = key
        self.agency_field = agency_field
        self.order = sorted(
            (str(row.get("NgayCapNhat", "")), str(row.get(key, "")), i) for i, row in enumerate(rows)
        )
        self.updated = [updated for updated, _, _ in self.order]
        self.agencies = [str(rows[i].get(agency_field, "")) for _, _, i in self.order]
        self.encoded = [json.dumps(rows[i], ensure_ascii=False) for _, _, i in self.order]
        self._served = len(rows)

    def __len__(self) -> int:
        return len(self.encoded)

    def text(self, position: int) -> str:
        """The record served at `position`, as JSON text."""
        return self.encoded[position]

    def record(self, position: int) -> dict[str, Any]:
        return json.loads(self.text(position))

    def put(self, record: dict[str, Any], replacing: int | None = None) -> None:
        """Place `record` in serving order (served last among equals); take out `replacing` first."""
        if replacing is not None:
            for column in (self.order, self.updated, self.agencies, self.encoded):
                del column[replacing]
        place = (str(record.get("NgayCapNhat", "")), str(record.get(self.key, "")), self._served)
        self._served += 1
        at = bisect.bisect_right(self.order, place)
        self.order.insert(at, place)
        self.updated.insert(at, place[0])
        self.agencies.insert(at, str(record.get(self.agency_field, "")))
        self.encoded.insert(at, json.dumps(record, ensure_ascii=False))

    def fresh_key(self, like: str) -> str:
        """A key no record has, shaped as `like` (a dossier code: its sequence replaced)."""
        taken = {key for _, key, _ in self.order}
        prefix, _, sequence = like.rpartition("-")
        for n in range(1, len(taken) + 2):
            key = f"{prefix}-9{n:05d}" if prefix and sequence.isdigit() else f"{like}-{n}"
            if key not in taken:
                return key
        raise AssertionError("unreachable: more candidates than keys")

    def select(
        self, since: str | None, until: str | None, agencies: frozenset[str] | None
    ) -> Sequence[int]:
        """Positions whose NgayCapNhat is within [since, until] (both inclusive, either open)."""
        lo = bisect.bisect_left(self.updated, since) if since else 0
        hi = bisect.bisect_right(self.updated, until) if until else len(self.updated)
        if agencies is None:
            return list(range(lo, hi))
        return [i for i in range(lo, hi) if self.agencies[i] in agencies]


# A dossier code ends in its 4-digit sequence of the agency's day: a replica's sequence is prefixed
# with its copy number (two digits), which the portal's code pattern (4 to 6 digits) still accepts.
_SEQUENCE = re.compile(r"^(.*-)([0-9]{4})$")
MAX_COPIES = 100


def copy_code(code: str, copy: int) -> str | None:
    """The dossier code of the `copy`-th replica of a dossier (copy 0: the code itself).

    None when the code has no 4-digit sequence to number (a planted bad code): such a record's
    replicas all keep its code, and the pipeline merges them as duplicates.
    """
    if not 0 <= copy < MAX_COPIES:
        raise ValueError(f"copy must be 0..{MAX_COPIES - 1}, got {copy}")
    if copy == 0:
        return code
    match = _SEQUENCE.match(code)
    return f"{match[1]}{copy:02d}{match[2]}" if match else None


class ScaledListing(_Listing):
    """A generated province's dossiers served `n` times over, each record copied under fresh codes.

    For benchmarks at 10^6–10^7 dossiers: only the base listing is held in memory. Position p
    serves copy p % copies of base record p // copies (`copy_code`; a run of identical base
    records, a planted duplicate row, is served copy by copy so that it stays a repeated row), so
    the copies of a record share its NgayCapNhat and the serving order stays sorted by it. `touch` changes records the
    way a source does: they get a new NgayCapNhat and move to the end of the serving order.
    Listing faults ("move", "insert") are not served by a scaled listing.
    """

    def __init__(self, records: Iterable[dict[str, Any]], n: int) -> None:
        super().__init__(records, "MaHoSo", "DonViXuLy")
        base = len(self.encoded)
        if base == 0 or n < 1:
            raise ValueError("a scaled listing needs a base record and n >= 1")
        self.copies = -(-n // base)
        if self.copies > MAX_COPIES:
            raise ValueError(f"{n} dossiers from {base} base records needs {self.copies} copies "
                             f"each (at most {MAX_COPIES}): generate a larger base")
        self.n = n
        self._codes = [key for _, key, _ in self.order]
        # A record the base lists twice in a row (a planted duplicate row) stays listed twice in a
        # row in every copy: its run of identical records is served copy by copy.
        self._run_start = list(range(base))
        self._run_size = [1] * base
        for i in range(1, base):
            if self.encoded[i] == self.encoded[i - 1]:
                start = self._run_start[i] = self._run_start[i - 1]
                self._run_size[start] += 1
        self._removed: set[int] = set()  # positions whose record was touched (served at the end)
        self._touched: list[str] = []
        self._touched_updated: list[str] = []
        self._selected: tuple[tuple[Any, ...], Sequence[int]] | None = None

    def __len__(self) -> int:
        return self.n + len(self._touched)

    def text(self, position: int) -> str:
        if position >= self.n:
            return self._touched[position - self.n]
        start = self._run_start[position // self.copies]
        copy, offset = divmod(position - start * self.copies, self._run_size[start])
        text, code = self.encoded[start + offset], self._codes[start + offset]
        new = copy_code(code, copy) if code else None
        return text if new is None or new == code else text.replace(code, new)

    def put(self, record: dict[str, Any], replacing: int | None = None) -> None:
        raise NotImplementedError("a scaled listing serves no listing faults")

    def touch(self, every: int, updated: str, change: dict[str, Any] | None = None) -> int:
        """Change every `every`-th dossier at the source: NgayCapNhat `updated` (and `change`d
        fields); the changed records are served after the others. Returns how many rows changed.

        A dossier the source lists twice in a row (a duplicate row) is one dossier: both rows
        change together and stay listed in a row, as the portal would list them.
        """
        changed = 0
        for position in range(0, self.n, every):
            if position in self._removed:  # touched before, or with a duplicate row of its run
                continue
            for row in self._run_of(position):
                record = self.record(row)
                record.update(change or {}, NgayCapNhat=updated)
                self._removed.add(row)
                self._touched.append(json.dumps(record, ensure_ascii=False))
                self._touched_updated.append(updated)
                changed += 1
        order = sorted(range(len(self._touched)), key=self._touched_updated.__getitem__)
        self._touched = [self._touched[i] for i in order]
        self._touched_updated = [self._touched_updated[i] for i in order]
        self._selected = None
        return changed

    def _run_of(self, position: int) -> range:
        """The served positions of the duplicate rows `position` is one of (itself alone if none)."""
        start = self._run_start[position // self.copies]
        size = self._run_size[start]
        first = start * self.copies + (position - start * self.copies) // size * size
        return range(first, min(first + size, self.n))

    def select(
        self, since: str | None, until: str | None, agencies: frozenset[str] | None
    ) -> Sequence[int]:
        # A client pages through one window: every page asks the same selection again.
        asked = (since, until, agencies)
        if self._selected is None or self._selected[0] != asked:
            self._selected = (asked, self._select(since, until, agencies))
        return self._selected[1]

    def _select(
        self, since: str | None, until: str | None, agencies: frozenset[str] | None
    ) -> Sequence[int]:
        lo = bisect.bisect_left(self.updated, since) * self.copies if since else 0
        hi = bisect.bisect_right(self.updated, until) * self.copies if until else self.n
        served = range(min(lo, self.n), min(hi, self.n))
        t_lo = bisect.bisect_left(self._touched_updated, since) if since else 0
        t_hi = bisect.bisect_right(self._touched_updated, until) if until else len(self._touched)
        touched = range(self.n + t_lo, self.n + t_hi)
        if agencies is None and not self._removed and not touched:
            return served
        return [
            p for p in itertools.chain(served, touched)
            if p not in self._removed
            and (agencies is None or self._agency(p) in agencies)
        ]

    def _agency(self, position: int) -> str:
        if position >= self.n:
            return str(json.loads(self._touched[position - self.n]).get(self.agency_field, ""))
        return self.agencies[position // self.copies]


class _ParameterError(ValueError):
    """A request parameter the portal refuses (error_code "02")."""


class PortalSimulator(LoopbackServer):
    """The portal's sync API on a background thread: `with PortalSimulator(...) as portal: ...`."""

    def __init__(
        self,
        procedures: list[dict[str, Any]] | None = None,
        dossiers: list[dict[str, Any]] | _Listing | None = None,
        data_dir: Path | None = None,
        username: str = "demo",
        password: str = "demo",
        host: str = "127.0.0.1",
        port: int = 0,
        session_ttl: float | None = None,
    ) -> None:
        if data_dir is not None:
            data_dir = Path(data_dir)
            if procedures is None:
                procedures = list(load_records(data_dir / "procedures.jsonl"))
            if dossiers is None:
                dossiers = list(load_records(data_dir / "dossiers.jsonl"))
        self._listings = {
            "LayDanhSachTTHC": _Listing(procedures or [], "MaTTHC", "MaCoQuanThucHien"),
            "LayDanhSachHoSo": dossiers if isinstance(dossiers, _Listing)
            else _Listing(dossiers or [], "MaHoSo", "DonViXuLy"),
        }
        self._username = username
        self._password = password
        super().__init__(host, port)
        self.handler = _Handler
        self._session_ttl = session_ttl
        self._subtrees = _agency_subtrees()
        self._lock = threading.Lock()
        self._sessions: dict[str, float | None] = {}  # token -> monotonic expiry (None = never)
        self._faults: deque[str] = deque()
        self.calls: list[dict[str, Any]] = []
        self._codelists = {
            "TrangThaiHoSo": standards.codes("dossier_status"),
            "KenhThucHien": standards.codes("channel"),
            "LoaiDoiTuong": standards.codes("applicant_type"),
            "DuocThanhToanTrucTuyen": standards.codes("paid_online"),
            "NoiNopHoSo": standards.codes("admin_units"),
            "DonViXuLy": frozenset(self._subtrees),
        }
        # What the province pushed and the portal accepted: dossier records by MaHoSo, and each
        # dossier's processing steps by (ThoiDiemXuLy, TrangThai), in time order when read.
        self.pushed: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}

    # -- test controls ----------------------------------------------------------------------
    def inject(self, *faults: str) -> None:
        """Queue faults for the next /api calls, one per call, in order."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend(faults)

    def expire_sessions(self) -> None:
        """Drop every session now: the next /api call answers "401"."""
        with self._lock:
            self._sessions.clear()

    @property
    def progress(self) -> dict[str, list[dict[str, Any]]]:
        """Accepted processing steps by MaHoSo, each dossier's in (ThoiDiemXuLy, TrangThai) order."""
        with self._lock:
            return {code: [steps[k] for k in sorted(steps)] for code, steps in self._steps.items()}

    # -- the API ----------------------------------------------------------------------------
    def login(self, body: Any) -> dict[str, Any]:
        if not (
            isinstance(body, dict)
            and body.get("username") == self._username
            and body.get("password") == self._password
        ):
            return BAD_LOGIN
        token = secrets.token_urlsafe(24)
        expiry = None if self._session_ttl is None else time.monotonic() + self._session_ttl
        with self._lock:
            self._sessions[token] = expiry
        return {"session": token, "error_code": 0}

    def record_call(self, body: Any) -> str | None:
        """Note the call in `.calls` and take the next queued fault, if any."""
        fields = ("service", "tungay", "denngay", "trang", "sodong", "madonvi")
        call = {name: body.get(name) if isinstance(body, dict) else None for name in fields}
        if call["service"] in (PUSH_DOSSIERS, PUSH_PROGRESS):
            data = body.get("data")
            call["isUpdating"] = body.get("isUpdating")
            call["records"] = len(data) if isinstance(data, list) else None
        with self._lock:
            self.calls.append(call)
            return self._faults.popleft() if self._faults else None

    def session_valid(self, token: Any) -> bool:
        with self._lock:
            if not isinstance(token, str) or token not in self._sessions:
                return False
            expiry = self._sessions[token]
            if expiry is not None and time.monotonic() >= expiry:
                del self._sessions[token]
                return False
            return True

    def answer(self, body: Any, fault: str | None = None) -> str:
        """The JSON text answering one /api call; `fault` one of ANSWER_FAULTS, or None."""
        if not isinstance(body, dict):
            return _json({"error_code": "02", "message": "Yêu cầu không phải đối tượng JSON"})
        if not self.session_valid(body.get("session")):
            return _json(EXPIRED)
        service = body.get("service")
        if service in (PUSH_DOSSIERS, PUSH_PROGRESS):
            return _json(self._push(service, body))
        listing = self._listings.get(service) if isinstance(service, str) else None
        if listing is None:
            return _json({"error_code": "99", "message": f"Dịch vụ không tồn tại: {service!r}"})
        try:
            agencies = self._agencies(body.get("madonvi"))
            page = _integer(body, "trang", 1, 1, None)
            size = _integer(body, "sodong", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            since = _portal_time(body, "tungay")
            until = _portal_time(body, "denngay")
            if since and until and since > until:
                raise _ParameterError("tungay sau denngay")
        except _ParameterError as exc:
            return _json({"error_code": "02", "message": f"Tham số không hợp lệ: {exc}"})
        with self._lock:  # a fault may change the listing: select and encode one state of it
            if fault in ("move", "move_within", "insert"):
                self._change(listing, fault, listing.select(since, until, agencies), until)
            positions = listing.select(since, until, agencies)
            chunk = positions[(page - 1) * size : page * size]
            if fault == "short":
                chunk = chunk[:-1]
            result = ",".join(listing.text(i) for i in chunk)
        head = _json({"error_code": "00", "tongso": len(positions), "trang": page, "sodong": size})
        return f'{head[:-1]}, "result": [{result}]}}'

    def listed(self, service: str = "LayDanhSachHoSo") -> list[dict[str, Any]]:
        """The records `service` now lists, in serving order (after any move or insert fault)."""
        listing = self._listings[service]
        with self._lock:
            return [listing.record(i) for i in range(len(listing))]

    @staticmethod
    def _change(listing: _Listing, fault: str, window: Sequence[int], until: str | None) -> None:
        """What a record of the window's first page undergoes while a client pages (ANSWER_FAULTS)."""
        if not window:
            return
        first = window[0]
        record = listing.record(first)
        if fault == "insert":  # a new record, updated when the window's first one was: it sorts early
            listing.put(dict(record, **{listing.key: listing.fresh_key(str(record.get(listing.key, "")))}))
            return
        now = format_portal_time(datetime.now(LOCAL_TZ))
        record["NgayCapNhat"] = until if fault == "move_within" and until else now
        listing.put(record, replacing=first)

    def _push(self, service: str, body: dict[str, Any]) -> dict[str, Any]:
        """Judge every record of a push on its own; keep the accepted ones (INTERFACES §14)."""
        try:
            self._agencies(body.get("madonvi"))
            data = body.get("data")
            if not isinstance(data, list) or not data:
                raise _ParameterError("data phải là danh sách bản ghi không rỗng")
            if len(data) > MAX_PUSH_RECORDS:
                raise _ParameterError(f"data có {len(data)} bản ghi, tối đa {MAX_PUSH_RECORDS}")
            updating = body.get("isUpdating")
            if service == PUSH_DOSSIERS and updating not in ("True", "False"):
                raise _ParameterError(f'isUpdating phải là "True" hoặc "False": {updating!r}')
        except _ParameterError as exc:
            return {"error_code": "02", "message": f"Tham số không hợp lệ: {exc}"}
        results = []
        with self._lock:
            for record in data:
                if service == PUSH_DOSSIERS:
                    problems = self._dossier_problems(record, updating == "True")
                else:
                    problems = self._step_problems(record)
                code = record.get("MaHoSo") if isinstance(record, dict) else None
                if problems:
                    results.append({"MaHoSo": code, "error_code": problems[0][0],
                                    "message": "; ".join(text for _, text in problems)})
                    continue
                assert isinstance(code, str)  # MaHoSo is required: a record without problems has it
                if service == PUSH_DOSSIERS:
                    self.pushed[code] = dict(record)
                else:
                    key = (record["ThoiDiemXuLy"], record["TrangThai"])
                    self._steps.setdefault(code, {})[key] = dict(record)
                results.append({"MaHoSo": code, "error_code": PUSH_OK, "message": "Thành công"})
        accepted = sum(1 for r in results if r["error_code"] == PUSH_OK)
        rejected = len(results) - accepted
        return {
            "error_code": PUSH_OK if not rejected else PUSH_SOME_REJECTED,
            "message": "Thành công" if not rejected else f"Có {rejected} bản ghi không hợp lệ",
            "tongso": len(results),
            "thanhcong": accepted,
            "result": results,
        }

    def _dossier_problems(self, record: Any, updating: bool) -> list[tuple[str, str]]:
        """What the portal refuses in one DongBoHoSoMC record: (error_code, message), first first."""
        problems = _record_problems(record, DOSSIER_REQUIRED, DOSSIER_TIMES)
        if not isinstance(record, dict):
            return problems
        code = record.get("MaHoSo")
        if isinstance(code, str) and code and not DOSSIER_CODE_RE.match(code):
            problems.append(_problem(RECORD_BAD_CODE, f"MaHoSo {code!r}"))
        agency = record.get("DonViXuLy")
        if isinstance(agency, str) and agency and not AGENCY_CODE_RE.match(agency):
            problems.append(_problem(RECORD_BAD_CODE, f"DonViXuLy {agency!r}"))
        procedure = record.get("MaTTHC")
        if isinstance(procedure, str) and procedure and not PROCEDURE_CODE_RE.match(procedure):
            problems.append(_problem(RECORD_BAD_CODE, f"MaTTHC {procedure!r}"))
        for name, allowed in self._codelists.items():
            value = record.get(name)
            if isinstance(value, str) and value and value not in allowed:
                if name != "DonViXuLy" or AGENCY_CODE_RE.match(value):
                    problems.append(_problem(RECORD_NOT_IN_CODELIST, f"{name} {value!r}"))
        received, due = record.get("NgayTiepNhan"), record.get("NgayHenTra")
        if _is_time(received) and _is_time(due) and due < received:
            problems.append(_problem(RECORD_DUE_BEFORE_RECEIPT,
                                     f"NgayHenTra {due} < NgayTiepNhan {received}"))
        if isinstance(code, str) and code and not problems:
            if updating and code not in self.pushed:
                problems.append(_problem(RECORD_UNKNOWN, f"MaHoSo {code!r} (isUpdating \"True\")"))
            elif not updating and code in self.pushed:
                problems.append(_problem(RECORD_EXISTS, f"MaHoSo {code!r}"))
        return problems

    def _step_problems(self, record: Any) -> list[tuple[str, str]]:
        """What the portal refuses in one CapNhatTienDoHoSoMC step."""
        problems = _record_problems(record, STEP_REQUIRED, STEP_TIMES)
        if not isinstance(record, dict):
            return problems
        status = record.get("TrangThai")
        if isinstance(status, str) and status and status not in self._codelists["TrangThaiHoSo"]:
            problems.append(_problem(RECORD_NOT_IN_CODELIST, f"TrangThai {status!r}"))
        code = record.get("MaHoSo")
        if isinstance(code, str) and code and not problems and code not in self.pushed:
            problems.append(_problem(RECORD_UNKNOWN, f"MaHoSo {code!r}"))
        return problems

    def _agencies(self, madonvi: Any) -> frozenset[str] | None:
        """None for the whole province, else the agency and its subordinate agencies."""
        if not isinstance(madonvi, str) or not madonvi:
            raise _ParameterError("thiếu madonvi")
        if madonvi == PROVINCE_AGENCY:
            return None
        if madonvi not in self._subtrees:
            raise _ParameterError(f"madonvi {madonvi!r} không tồn tại")
        return self._subtrees[madonvi]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    value = body.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _ParameterError(f"{name} phải là số nguyên")
    try:
        number = int(value)
    except ValueError:
        raise _ParameterError(f"{name} phải là số nguyên: {value!r}") from None
    if number < low or (high is not None and number > high):
        limit = f"{low}..{high}" if high is not None else f">= {low}"
        raise _ParameterError(f"{name} ngoài khoảng {limit}: {number}")
    return number


def _portal_time(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) != 14 or not value.isdigit():
        raise _ParameterError(f"{name} phải có dạng yyyyMMddHHmmss: {value!r}")
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        raise _ParameterError(f"{name} không phải thời điểm hợp lệ: {value!r}") from None
    return value


def _problem(code: str, detail: str) -> tuple[str, str]:
    return code, f"{RECORD_MESSAGES[code]}: {detail}"


def _is_time(value: Any) -> TypeGuard[str]:
    """A `yyyyMMddHHmmss` text naming a real time."""
    if not isinstance(value, str) or len(value) != 14 or not value.isdigit():
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def _record_problems(
    record: Any, required: tuple[str, ...], times: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Shape checks shared by both push services: an object, text values, required, time formats."""
    if not isinstance(record, dict):
        return [_problem(RECORD_MISSING, "bản ghi không phải đối tượng JSON")]
    problems = []
    for name, value in record.items():
        if not isinstance(value, str | list):
            problems.append(_problem(RECORD_NOT_TEXT, f"{name} = {value!r}"))
    missing = [name for name in required if not record.get(name)]
    if missing:
        problems.append(_problem(RECORD_MISSING, ", ".join(missing)))
    for name in times:
        value = record.get(name)
        if isinstance(value, str) and value and not _is_time(value):
            problems.append(_problem(RECORD_BAD_TIME, f"{name} {value!r}"))
    return problems


def _agency_subtrees() -> dict[str, frozenset[str]]:
    """Each agency of agencies.csv with every agency under it (itself included)."""
    parent = {row["agency_code"]: row["parent_code"] for row in standards.load_codelist("agencies")}
    subtrees: dict[str, set[str]] = {code: set() for code in parent}
    for code in parent:
        node: str | None = code
        while node:
            subtrees[node].add(code)
            node = parent.get(node) or None
    return {code: frozenset(members) for code, members in subtrees.items()}


class _Handler(LoopbackHandler):
    server_version = "nginx"

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        self._send(405, _json({"error_code": "405", "message": "Chỉ hỗ trợ POST"}))

    def do_POST(self) -> None:  # noqa: N802 — http.server's naming
        simulator = self.server.simulator
        body = self._read_json()
        if self.path == "/login":
            self._send(200, _json(simulator.login(body)))
        elif self.path == "/api":
            fault = simulator.record_call(body)
            if fault is None or fault in ANSWER_FAULTS:
                if fault == "slow":
                    time.sleep(SLOW_SECONDS)
                self._send(200, simulator.answer(body, fault))
            else:
                self._send_fault(fault)
        else:
            self._send(404, _json({"error_code": "404", "message": f"Không có {self.path}"}))

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def _send_fault(self, fault: str) -> None:
        if fault == "drip":
            self._drip()
        elif fault == "malformed_json":
            self._send(200, '{"error_code": "00", "result": [')
        elif fault == "html_error":
            self._send(502, NGINX_502, "text/html")
        elif fault == "empty_body":
            self._send(200, "")
        elif fault == "missing_fields":
            self._send(200, _json({"error_code": "00", "trang": 1, "sodong": DEFAULT_PAGE_SIZE}))
        elif fault == "http_500":
            self._send(500, _json({"error_code": "500"}))
        elif fault == "http_429":
            self._send(
                429,
                _json({"error_code": "429", "message": "Too Many Requests"}),
                headers={"Retry-After": "1"},
            )
        elif fault == "expired_session":
            self.server.simulator.expire_sessions()
            self._send(200, _json(EXPIRED))

    def _drip(self) -> None:
        """Headers of a 1 MB JSON answer, then a byte now and then, until the client goes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for byte in itertools.cycle(b' {"error_code": "00", "result": [] '):
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(DRIP_SECONDS)
        except OSError:  # the client cut the call: what a deadline does
            self.close_connection = True

    def _send(
        self,
        status: int,
        text: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_payload(status, text.encode("utf-8"), content_type, headers)


def main(argv: list[str] | None = None) -> int:
    """`python -m simulators.portal --data-dir DIR --port N`: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="directory with procedures.jsonl and dossiers.jsonl",
    )
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", default="demo")
    args = parser.parse_args(argv)
    missing = [
        n for n in ("procedures.jsonl", "dossiers.jsonl") if not (args.data_dir / n).is_file()
    ]
    if missing:
        parser.error(f"{args.data_dir} lacks {', '.join(missing)} (generate them first)")
    portal = PortalSimulator(
        data_dir=args.data_dir,
        username=args.username,
        password=args.password,
        host=args.host,
        port=args.port,
    )
    return serve_until_interrupted(portal)


if __name__ == "__main__":
    raise SystemExit(main())
