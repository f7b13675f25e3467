"""The provincial integration platform's (LGSP) message feed on loopback, with hostile-message builders."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from simulators.generator import fee_total
from simulators.loopback import LoopbackHandler, LoopbackServer
from transforms.timefmt import LOCAL_TZ

__all__ = [
    "DOSSIER_FIELDS",
    "FAULTS",
    "LGSP_NS",
    "LgspSimulator",
    "RecordingServer",
    "build_billion_laughs_message",
    "build_message",
    "build_parameter_entity_message",
    "build_schema_violating_message",
    "build_xxe_message",
]

LGSP_NS = "urn:lienthong:lgsp:v1"
# The Dossier children of standards/xsd/lgsp_message.xsd, in the schema's order.
DOSSIER_FIELDS = (
    "MaHoSo", "MaTTHC", "TenTTHC", "DonViXuLy", "NoiNopHoSo", "KenhThucHien", "LoaiDoiTuong",
    "TrangThaiHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra", "NgayCapNhat",
    "TrichYeuHoSo", "ChuHoSo", "SoGiayToChuHoSo", "DuocThanhToanTrucTuyen", "LePhi",
)
# Fields the schema requires: written even when empty (so the schema, not the builder, judges).
REQUIRED_FIELDS = frozenset(
    {"MaHoSo", "MaTTHC", "DonViXuLy", "KenhThucHien", "LoaiDoiTuong", "TrangThaiHoSo", "NgayTiepNhan",
     "NgayCapNhat"}
)
# The Step children of the schema (a QuaTrinhXuLy item), in the schema's order.
STEP_FIELDS = ("ThoiDiemXuLy", "TrangThai", "NoiDungXuLy", "NguoiXuLy", "ChucDanh", "PhongBanXuLy")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
FAULTS = ("http_500", "http_429")
_MESSAGE_ID = re.compile(rb"<(?:[\w.-]+:)?MessageId>\s*([^<\s]{1,100})\s*</")


def _q(name: str) -> str:
    return f"{{{LGSP_NS}}}{name}"


def build_message(
    dossiers: Iterable[Mapping[str, Any]],
    sender: str,
    receiver: str,
    message_id: str | None = None,
    created_at: datetime | None = None,
) -> bytes:
    """A valid LGSP message (UTF-8 bytes) carrying `dossiers` (portal dossier records).

    Only the schema's Dossier fields are written, in the schema's order; an optional field that is
    missing or "" is left out, a required one is written as given.
    """
    created = (created_at or datetime.now(LOCAL_TZ)).isoformat(timespec="seconds")
    root = etree.Element(_q("Message"), nsmap={None: LGSP_NS})
    header = etree.SubElement(root, _q("Header"))
    etree.SubElement(header, _q("MessageId")).text = message_id or str(uuid.uuid4())
    etree.SubElement(etree.SubElement(header, _q("From")), _q("OrganId")).text = sender
    etree.SubElement(etree.SubElement(header, _q("To")), _q("OrganId")).text = receiver
    etree.SubElement(header, _q("CreatedAt")).text = created
    trace = etree.SubElement(etree.SubElement(header, _q("TraceList")), _q("Trace"))
    etree.SubElement(trace, _q("OrganId")).text = sender
    etree.SubElement(trace, _q("Timestamp")).text = created
    etree.SubElement(trace, _q("Action")).text = "send"
    body = etree.SubElement(root, _q("Body"))
    for record in dossiers:
        dossier = etree.SubElement(body, _q("Dossier"))
        # LePhi: the portal's fee list (DanhSachLePhi) in total, unless the record gives it
        values = {"LePhi": fee_total(record.get("DanhSachLePhi")), **record}
        for field in DOSSIER_FIELDS:
            value = values.get(field)
            text = "" if value is None else str(value)
            if text or field in REQUIRED_FIELDS:
                etree.SubElement(dossier, _q(field)).text = text
        steps = record.get("QuaTrinhXuLy") or []
        if steps:
            history = etree.SubElement(dossier, _q("QuaTrinhXuLy"))
            for step in steps:
                element = etree.SubElement(history, _q("Buoc"))
                for field in STEP_FIELDS:
                    text = str(step.get(field) or "")
                    if text or field in ("ThoiDiemXuLy", "TrangThai"):
                        etree.SubElement(element, _q(field)).text = text
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _with_doctype(internal_subset: str, body_text: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!DOCTYPE Message [\n{internal_subset}\n]>\n"
        f'<Message xmlns="{LGSP_NS}"><Header><MessageId>hostile-{uuid.uuid4().hex[:8]}</MessageId>'
        "<From><OrganId>000.00.04.H62</OrganId></From><To><OrganId>000.00.00.H62</OrganId></To>"
        "<CreatedAt>2017-01-01T08:00:00+07:00</CreatedAt></Header>"
        f"<Body><Dossier><MaHoSo>{body_text}</MaHoSo></Dossier></Body></Message>"
    ).encode()


def build_xxe_message(target: str = "file:///etc/passwd") -> bytes:
    """A message declaring an external entity on `target` (a file or an http URL) and using it."""
    return _with_doctype(f'<!ENTITY e SYSTEM "{target}">', "&e;")


def build_parameter_entity_message(url: str) -> bytes:
    """A message whose DTD pulls an external parameter entity from `url` (out-of-band XXE)."""
    return _with_doctype(f'<!ENTITY % p SYSTEM "{url}">\n%p;', "x")


def build_billion_laughs_message(depth: int = 10, width: int = 10) -> bytes:
    """The billion-laughs bomb: `width ** depth` copies of "lol" if the entities were expanded."""
    lines = ['<!ENTITY lol0 "lol">']
    for level in range(1, depth + 1):
        lines.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * width}">')
    return _with_doctype("\n".join(lines), f"&lol{depth};")


def build_schema_violating_message(
    dossiers: Iterable[Mapping[str, Any]],
    *,
    sender: str = "000.00.XX.H62",
    receiver: str = "000.00.00.H62",
    drop_message_id: bool = False,
) -> bytes:
    """A well-formed message the schema refuses: a bad agency code and/or no MessageId."""
    message = build_message(dossiers, sender, receiver)
    if drop_message_id:
        root = etree.fromstring(message)
        header = root.find(_q("Header"))
        message_id = header.find(_q("MessageId")) if header is not None else None
        assert header is not None and message_id is not None  # build_message writes both
        header.remove(message_id)
        message = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return message


def _message_id(message: bytes, cursor: int) -> str:
    """The MessageId as the platform indexes it (found without parsing), else a made-up one."""
    found = _MESSAGE_ID.search(message[:4096])
    return found.group(1).decode("utf-8", "replace") if found else f"lgsp-{cursor}"


class LgspSimulator(LoopbackServer):
    """The LGSP feed: `with LgspSimulator([msg, ...]) as lgsp: ...` (cursors 1, 2, ... in order).

    - `GET /messages?after=C&limit=N` → `{"messages": [{"cursor", "id", "url"}], "next": C'}`:
      the messages after cursor C (default: the acknowledged cursor), at most N (≤ 1000);
      `next` is the last listed cursor (C when none).
    - `GET /messages/<cursor>` → the message's XML bytes (application/xml).
    - `POST /ack {"cursor": C}` → `{"acked": C}`; `.acked` holds the consumer's cursor.
    """

    def __init__(self, messages: list[bytes] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.handler = _LgspHandler
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes]] = []
        self._faults: deque[str] = deque()
        self.acked = 0
        self.requests: list[str] = []  # "GET /messages?after=0&limit=2", ... in arrival order
        for message in messages or []:
            self.publish(message)

    def publish(self, message: bytes, message_id: str | None = None) -> int:
        """Append a message to the feed; return its cursor."""
        with self._lock:
            cursor = len(self._messages) + 1
            self._messages.append((message_id or _message_id(message, cursor), message))
            return cursor

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests (any path), one per request, in order."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend(faults)

    def take_fault(self, request_line: str) -> str | None:
        with self._lock:
            self.requests.append(request_line)
            return self._faults.popleft() if self._faults else None

    def index(self, query: str) -> tuple[int, dict[str, Any]]:
        params = parse_qs(query)
        try:
            with self._lock:
                acked = self.acked
            after = int(params.get("after", [acked])[0])
            limit = int(params.get("limit", [DEFAULT_LIMIT])[0])
        except ValueError:
            return 400, {"error": "after and limit must be integers"}
        if after < 0 or not 1 <= limit <= MAX_LIMIT:
            return 400, {"error": f"after must be >= 0 and limit 1..{MAX_LIMIT}"}
        with self._lock:
            listed = [
                {"cursor": cursor, "id": self._messages[cursor - 1][0], "url": f"/messages/{cursor}"}
                for cursor in range(after + 1, min(after + limit, len(self._messages)) + 1)
            ]
        return 200, {"messages": listed, "next": listed[-1]["cursor"] if listed else after}

    def message(self, cursor: int) -> bytes | None:
        with self._lock:
            return self._messages[cursor - 1][1] if 1 <= cursor <= len(self._messages) else None

    def ack(self, body: Any) -> tuple[int, dict[str, Any]]:
        cursor = body.get("cursor") if isinstance(body, dict) else None
        with self._lock:
            last = len(self._messages)
            if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= last:
                return 400, {"error": f"cursor must be an integer 0..{last}, got {cursor!r}"}
            self.acked = cursor
        return 200, {"acked": cursor}


class _LgspHandler(LoopbackHandler):
    server_version = "lgsp"

    @property
    def simulator(self) -> LgspSimulator:
        return self.server.simulator

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        if self._fault(f"GET {self.path}"):
            return
        url = urlsplit(self.path)
        if url.path == "/messages":
            status, answer = self.simulator.index(url.query)
            self.send_payload(status, json.dumps(answer).encode())
            return
        found = re.fullmatch(r"/messages/(\d+)", url.path)
        message = self.simulator.message(int(found.group(1))) if found else None
        if message is None:
            self.send_payload(404, json.dumps({"error": f"no message at {url.path}"}).encode())
        else:
            self.send_payload(200, message, "application/xml")

    def do_POST(self) -> None:  # noqa: N802 — http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if self._fault(f"POST {self.path}"):
            return
        if self.path != "/ack":
            self.send_payload(404, json.dumps({"error": f"no {self.path}"}).encode())
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        status, answer = self.simulator.ack(body)
        self.send_payload(status, json.dumps(answer).encode())

    def _fault(self, request_line: str) -> bool:
        fault = self.simulator.take_fault(request_line)
        if fault == "http_500":
            self.send_payload(500, b'{"error": "internal"}')
        elif fault == "http_429":
            self.send_payload(429, b'{"error": "slow down"}', headers={"Retry-After": "0"})
        return fault is not None



class RecordingServer(LoopbackServer):
    """A loopback HTTP server that records every request (`.requests`): the XXE target of tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.handler = _RecordingHandler
        self.requests: list[str] = []


class _RecordingHandler(LoopbackHandler):

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        self.server.simulator.requests.append(self.path)
        payload = b'<!ENTITY leaked "secret">'
        self.send_response(200)
        self.send_header("Content-Type", "application/xml-dtd")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

