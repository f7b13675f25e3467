"""Signed dossier exchange packages: publish the warehouse's dossiers for an agency, receive another's."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from lxml import etree

import standards
from connectors.base import DuplicateKey, nested_deeper, unique_keys
from connectors.lgsp import SAFE_PARSER_OPTIONS  # libxml2's safe parsing, as the LGSP connector's
from exchange.keys import SigningKey, TrustedKeys
from pipeline.sources import SourcePlan, StreamPlan
from transforms.codes import AGENCY_CODE
from transforms.identity import PseudonymKey
from transforms.timefmt import LOCAL_TZ, format_portal_time

__all__ = [
    "EXCHANGE_NS",
    "Package",
    "PackageReader",
    "PackageRefused",
    "DeliveryFailed",
    "PublishOutcome",
    "ReceiveOutcome",
    "XSD_PATH",
    "build_package",
    "dossier_digest",
    "exchange_frames",
    "iter_package_dossiers",
    "publish_package",
    "receive_package",
    "verify_package",
    "warehouse_dossiers",
]

log = logging.getLogger("lienthong.exchange")

EXCHANGE_NS = "urn:lienthong:exchange:v1"
XSD_PATH = standards.STANDARD_DIR / "xsd" / "exchange_package.xsd"
FORMAT = "lienthong-exchange/1"
MANIFEST, MESSAGE = "manifest.json", "message.xml"
MAX_PART_BYTES = 256 << 20  # a message.xml above this is refused unread
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a dozen fields: above this it is refused unread
MAX_MANIFEST_DEPTH = 8  # the manifest is one flat object: anything nested deeper is no manifest
# The Dossier children of standards/xsd/exchange_package.xsd with a text value, in the schema's order.
DOSSIER_FIELDS = (
    "MaHoSo", "MaTTHC", "TenTTHC", "DonViXuLy", "NoiNopHoSo", "KenhThucHien", "LoaiDoiTuong",
    "TrangThaiHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra", "NgayCapNhat",
    "TrichYeuHoSo", "DuocThanhToanTrucTuyen", "LePhi",
)
REQUIRED_FIELDS = frozenset({"MaHoSo", "MaTTHC", "DonViXuLy", "KenhThucHien", "LoaiDoiTuong", "TrangThaiHoSo",
                             "NgayTiepNhan", "NgayCapNhat"})
# The receiver's record carries the identity hash under these keys (not portal fields).
ID_HASH, ID_TYPE = "_applicant_id_hash", "_applicant_id_type"
PUBLISH_STREAM = "publish"  # ops_sync_state (source "exchange:<receiver>", stream "publish")
_NS = f"{{{EXCHANGE_NS}}}"
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class PackageRefused(Exception):
    """A package that is not loaded. `str()` is the one-line reason."""


class DeliveryFailed(RuntimeError):
    """A package was built but a delivery (outbox or HTTP) failed; it is recorded `failed`."""


def _q(name: str) -> str:
    return f"{_NS}{name}"


@cache
def load_package_schema() -> etree.XMLSchema:
    """standards/xsd/exchange_package.xsd, parsed once."""
    return etree.XMLSchema(etree.parse(str(XSD_PATH), etree.XMLParser(**SAFE_PARSER_OPTIONS)))


# ── the warehouse, read back as portal dossiers ─────────────────────────────────────────────────

def _time(value: datetime | None) -> str:
    return format_portal_time(value) if value is not None else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | float):
        # a fee: plain notation, no exponent, trailing zeros kept as the warehouse has them
        return format(Decimal(str(value)), "f")
    return str(value)


def warehouse_dossiers(engine: sa.Engine | sa.Connection, agency_code: str,
                       since: datetime | None = None, *, exclude_source: str | None = None) -> list[dict[str, Any]]:
    """The dossiers of `agency_code` loaded after `since` (all when None), as portal-shaped records.

    `exclude_source`: leave out the dossiers whose kept version came from that `source_system`
    (publishing to an agency never echoes back what came from that agency).

    Each record has the exchange body's fields (`DOSSIER_FIELDS`, "" for none), `QuaTrinhXuLy`
    (its fact_dossier_event steps, in order: ThoiDiemXuLy, TrangThai, NoiDungXuLy), and the
    applicant identity as the warehouse keeps it — `_applicant_id_hash` (the keyed hash; the raw
    number is never stored, so never sent) and `_applicant_id_type`. Ordered by dossier code.
    """
    from warehouse.db import connection_of
    from warehouse.schema import fact_dossier as fd
    from warehouse.schema import fact_dossier_event as ev

    query = sa.select(fd).where(fd.c.agency_code == agency_code).order_by(fd.c.dossier_code)
    if since is not None:
        query = query.where(fd.c.loaded_at > since)
    if exclude_source is not None:
        query = query.where(fd.c.source_system != exclude_source)
    with connection_of(engine) as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
        steps: dict[str, list[dict[str, str]]] = {}
        codes = [row["dossier_code"] for row in rows]
        for start in range(0, len(codes), 500):
            chunk = codes[start:start + 500]
            for event in conn.execute(sa.select(ev).where(ev.c.dossier_code.in_(chunk))
                                      .order_by(ev.c.dossier_code, ev.c.seq)).mappings():
                steps.setdefault(event["dossier_code"], []).append({
                    "ThoiDiemXuLy": _time(event["occurred_at"]), "TrangThai": _text(event["status"]),
                    "NoiDungXuLy": _text(event["note"])})
    records = []
    for row in rows:
        records.append({
            "MaHoSo": row["dossier_code"], "MaTTHC": _text(row["procedure_code"]),
            "TenTTHC": _text(row["procedure_name"]), "DonViXuLy": _text(row["agency_code"]),
            "NoiNopHoSo": _text(row["admin_unit_code"]), "KenhThucHien": _text(row["channel"]),
            "LoaiDoiTuong": _text(row["applicant_type"]), "TrangThaiHoSo": _text(row["status"]),
            "NgayTiepNhan": _time(row["received_at"]), "NgayHenTra": _time(row["due_at"]),
            "NgayKetThucXuLy": _time(row["finished_at"]), "NgayTra": _time(row["returned_at"]),
            "NgayCapNhat": _time(row["updated_at"]), "TrichYeuHoSo": _text(row["summary"]),
            "DuocThanhToanTrucTuyen": _text(row["paid_online"]), "LePhi": _text(row["fee"]),
            ID_HASH: _text(row["applicant_id_hash"]), ID_TYPE: _text(row["applicant_id_type"]),
            "QuaTrinhXuLy": steps.get(row["dossier_code"], []),
        })
    return records


def dossier_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of a record's exchanged content (its canonical JSON): equal digests, equal dossiers."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ── building and signing ────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Package:
    """A signed package: the manifest (signature included) and the body (message.xml bytes)."""

    manifest: dict[str, Any]
    body: bytes

    @property
    def message_id(self) -> str:
        return self.manifest["message_id"]

    @property
    def sender(self) -> str:
        return self.manifest["sender"]

    @property
    def receiver(self) -> str:
        return self.manifest["receiver"]

    @property
    def dossier_count(self) -> int:
        return self.manifest["dossier_count"]

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])

    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")

    def zip_bytes(self) -> bytes:
        """The package as `<message_id>.zip` holds it; the same package always gives the same bytes."""
        stamp = self.created_at.astimezone(LOCAL_TZ).timetuple()[:6]
        stamp = (max(stamp[0], 1980), *stamp[1:])  # zip times start in 1980
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in ((MANIFEST, self.manifest_bytes()), (MESSAGE, self.body)):
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        return buffer.getvalue()


def signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    """What the signature covers: the manifest without `signature`, as canonical JSON (sorted
    keys, no spaces, UTF-8). It holds `body_sha256`, so the signature covers the body too."""
    unsigned = {key: value for key, value in manifest.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _canonical(element: etree._Element) -> list[Any]:
    """An element as [local name, text, [children]]: what it says, whatever the namespace prefixes
    or declarations of its serialisation (lxml's C14N of a sub-element is not stable across parses)."""
    return [etree.QName(element).localname, (element.text or "").strip(), [_canonical(c) for c in element]]


def message_id_for(sender: str, receiver: str, body: etree._Element) -> str:
    """32 hex digits of SHA-256 over sender, receiver and the Body's content (canonical JSON)."""
    digest = hashlib.sha256(f"{FORMAT}\n{sender}\n{receiver}\n".encode())
    digest.update(json.dumps(_canonical(body), ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return digest.hexdigest()[:32]


def _body_element(records: Sequence[Mapping[str, Any]]) -> etree._Element:
    body = etree.Element(_q("Body"), nsmap={None: EXCHANGE_NS})
    for record in sorted(records, key=lambda r: r["MaHoSo"]):
        dossier = etree.SubElement(body, _q("Dossier"))
        for name in DOSSIER_FIELDS:
            text = _text(record.get(name))
            if text or name in REQUIRED_FIELDS:
                etree.SubElement(dossier, _q(name)).text = text
        if record.get(ID_HASH):
            identity = etree.SubElement(dossier, _q("DinhDanhBam"))
            if record.get(ID_TYPE):
                etree.SubElement(identity, _q("LoaiDinhDanh")).text = _text(record[ID_TYPE])
            etree.SubElement(identity, _q("HMAC")).text = record[ID_HASH]
        if record.get("QuaTrinhXuLy"):
            history = etree.SubElement(dossier, _q("QuaTrinhXuLy"))
            for step in record["QuaTrinhXuLy"]:
                element = etree.SubElement(history, _q("BuocXuLy"))
                etree.SubElement(element, _q("ThoiDiemXuLy")).text = step["ThoiDiemXuLy"]
                etree.SubElement(element, _q("TrangThai")).text = step["TrangThai"]
                if step.get("NoiDungXuLy"):
                    etree.SubElement(element, _q("NoiDungXuLy")).text = step["NoiDungXuLy"]
    return body


def build_package(records: Sequence[Mapping[str, Any]], sender: str, receiver: str,
                  signing_key: SigningKey) -> Package:
    """A signed package of `records` (portal-shaped, as `warehouse_dossiers` gives them).

    The body is validated against the schema before anything is signed. Nothing in it depends on
    the clock: CreatedAt is the newest NgayCapNhat of the dossiers, the message id a digest of
    sender, receiver and body, so the same content gives the same package, byte for byte.
    """
    if not records:
        raise ValueError("a package carries at least one dossier")
    body = _body_element(records)
    message_id = message_id_for(sender, receiver, body)
    newest = max(record["NgayCapNhat"] for record in records)
    created = datetime.strptime(newest, "%Y%m%d%H%M%S").replace(tzinfo=LOCAL_TZ).isoformat()
    root = etree.Element(_q("Message"), nsmap={None: EXCHANGE_NS})
    header = etree.SubElement(root, _q("Header"))
    etree.SubElement(header, _q("MessageId")).text = message_id
    etree.SubElement(etree.SubElement(header, _q("From")), _q("OrganId")).text = sender
    etree.SubElement(etree.SubElement(header, _q("To")), _q("OrganId")).text = receiver
    etree.SubElement(header, _q("CreatedAt")).text = created
    trace = etree.SubElement(etree.SubElement(header, _q("TraceList")), _q("Trace"))
    etree.SubElement(trace, _q("OrganId")).text = sender
    etree.SubElement(trace, _q("Timestamp")).text = created
    etree.SubElement(trace, _q("Action")).text = "publish"
    root.append(body)
    schema = load_package_schema()
    if not schema.validate(root):
        raise ValueError(f"the package for {receiver} does not meet {XSD_PATH.name}: "
                         f"{_schema_reason(schema.error_log.last_error)}")
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    manifest: dict[str, Any] = {
        "format": FORMAT, "message_id": message_id, "sender": sender, "receiver": receiver,
        "created_at": created, "body_sha256": hashlib.sha256(data).hexdigest(),
        "dossier_count": len(records), "key_id": signing_key.key_id, "algorithm": "Ed25519",
    }
    manifest["signature"] = base64.b64encode(signing_key.sign(signed_bytes(manifest))).decode("ascii")
    return Package(manifest, data)


# ── reading and verifying ───────────────────────────────────────────────────────────────────────

def _read_part(read: Any, name: str, size: int) -> bytes:
    """A part's bytes from `read()`, refused when it is (or says it is) over its limit."""
    limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_PART_BYTES
    if size > limit:
        raise PackageRefused(f"{name} is larger than {limit} bytes")
    data = read()
    if len(data) > limit:
        raise PackageRefused(f"{name} is larger than {limit} bytes")
    return data


def _check_members(members: Sequence[zipfile.ZipInfo]) -> None:
    """A package's zip holds manifest.json and message.xml, each once, as plain files; else refused.

    The reader never extracts, but a package is a file other tools unpack: a member named
    `../x` or `/etc/x` (written outside the folder it is unpacked in), a member twice (which copy
    was verified depends on the tool), or a symbolic link is refused, naming the member.
    """
    seen: set[str] = set()
    for member in members:
        name = member.filename
        shown = " ".join(repr(name)[:120].split())
        if name in seen:
            raise PackageRefused(f"the package holds {shown} twice: which copy is meant cannot be told")
        seen.add(name)
        if stat.S_ISLNK(member.external_attr >> 16):
            raise PackageRefused(f"the package member {shown} is a symbolic link")
        if name not in (MANIFEST, MESSAGE):
            parts = re.split(r"[/\\]", name)
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise PackageRefused(f"the package member {shown} points outside the package "
                                     "(an absolute path or '..')")
            raise PackageRefused(f"the package holds {shown}: a package holds only {MANIFEST} and {MESSAGE}")


def read_parts(path: str | Path) -> tuple[bytes | None, bytes | None]:
    """The manifest and message.xml bytes of a package (a zip or a folder); None for a missing part.

    Refused (PackageRefused): a zip with members other than the two, or one twice, or a symbolic
    link (`_check_members`); in a folder, a part that is a symbolic link or not a regular file.
    """
    path = Path(path)
    parts: dict[str, bytes | None] = {MANIFEST: None, MESSAGE: None}
    if path.is_dir():
        for name in parts:
            part = path / name
            if not os.path.lexists(part):
                continue
            mode = part.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise PackageRefused(f"{name} is a symbolic link (to {_one_line_path(os.readlink(part))}): "
                                     "links are not followed")
            if not stat.S_ISREG(mode):
                raise PackageRefused(f"{name} is not a regular file")
            parts[name] = _read_part(part.read_bytes, name, part.stat().st_size)
        return parts[MANIFEST], parts[MESSAGE]
    if not path.is_file():
        raise FileNotFoundError(f"package {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            _check_members(members)
            for info in members:  # zipfile inflates no more than the stated size: ask for no more
                parts[info.filename] = _read_part(lambda i=info: archive.open(i).read(i.file_size + 1),
                                                  info.filename, info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, RuntimeError, ValueError) as exc:
        raise PackageRefused(f"not a readable zip package ({' '.join(str(exc).split())[:200]})") from None
    return parts[MANIFEST], parts[MESSAGE]


def _one_line_path(text: str) -> str:
    """A path as one printable line: control characters escaped, at most 200 characters."""
    return repr(text)[1:-1][:200]


def _parse_manifest(data: bytes) -> dict[str, Any]:
    """manifest.json as a JSON object, else PackageRefused: not UTF-8 JSON, not an object, a key
    twice (the signature covers one reading of it; another reader may take the other value), or
    nested deeper than MAX_MANIFEST_DEPTH (json itself gives up near 1,000 levels)."""
    try:
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        raise PackageRefused(f"{MANIFEST} has the key {' '.join(repr(exc.key)[:100].split())} twice") from None
    except RecursionError:
        raise PackageRefused(f"{MANIFEST} is not valid JSON (nested deeper than {MAX_MANIFEST_DEPTH} levels)") from None
    except (UnicodeDecodeError, ValueError):
        raise PackageRefused(f"{MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise PackageRefused(f"{MANIFEST} is not a JSON object")
    if nested_deeper(manifest, MAX_MANIFEST_DEPTH):
        raise PackageRefused(f"{MANIFEST} is not valid JSON (nested deeper than {MAX_MANIFEST_DEPTH} levels)")
    return manifest


def _schema_reason(error: Any) -> str:
    text = str(getattr(error, "message", error)).replace(_NS, "")
    return " ".join(text.split())[:300]


def _refuse_doctype(data: bytes) -> None:
    """Any DOCTYPE is refused before the content is parsed: the format has none, and entities are
    how XML attacks (external entities, entity expansion) come."""
    try:
        for _, root in etree.iterparse(io.BytesIO(data), events=("start",), **SAFE_PARSER_OPTIONS):
            docinfo = root.getroottree().docinfo
            dtd = docinfo.internalDTD
            entities = list(dtd.iterentities()) if dtd is not None else []
            if any(entity.system_url or entity.content is None for entity in entities):
                raise PackageRefused("message.xml: external entity declared")
            if entities:
                raise PackageRefused("message.xml: entity expansion refused")
            if dtd is not None or docinfo.doctype or docinfo.system_url:
                raise PackageRefused("message.xml: DOCTYPE refused")
            return
    except etree.XMLSyntaxError as exc:
        raise PackageRefused(f"message.xml: malformed XML ({' '.join(str(exc).split())[:200]})") from None


def _check_message(data: bytes) -> etree._Element:
    """message.xml parsed safely and valid against the schema, else PackageRefused."""
    _refuse_doctype(data)
    try:
        root = etree.fromstring(data, etree.XMLParser(remove_comments=True, remove_pis=True, **SAFE_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise PackageRefused(f"message.xml: malformed XML ({' '.join(str(exc).split())[:200]})") from None
    schema = load_package_schema()
    if not schema.validate(root):
        raise PackageRefused(f"message.xml: schema: {_schema_reason(schema.error_log.last_error)}")
    return root


def verify_package(path: str | Path, trusted: TrustedKeys, *, receiver: str | None = None) -> Package:
    """Check a package before any dossier of it is read; the checked Package, or PackageRefused.

    In order: a manifest that is a JSON object; a signature; the stated sender's key `key_id`
    trusted; the signature valid over the manifest; message.xml's SHA-256 equal to the manifest's
    `body_sha256`; message.xml free of DOCTYPE/entities and valid against the schema; its header
    agreeing with the manifest (id, sender, receiver, count) and its id the digest of its content;
    addressed to `receiver` when given.
    """
    manifest_data, body = read_parts(path)
    if manifest_data is None:
        raise PackageRefused(f"no {MANIFEST} in the package")
    manifest = _parse_manifest(manifest_data)
    signature_text = manifest.get("signature")
    if not signature_text:
        raise PackageRefused("not signed (the manifest has no signature)")
    sender, key_id = manifest.get("sender"), manifest.get("key_id")
    if not isinstance(sender, str) or not isinstance(key_id, str) or not sender or not key_id:
        raise PackageRefused("the manifest does not name its sender and key_id")
    if trusted.lookup(sender, key_id) is None:
        raise PackageRefused(f"signed by unknown key {key_id!r} of {sender} (not in LIENTHONG_TRUSTED_KEYS)")
    try:
        signature = base64.b64decode(str(signature_text), validate=True)
    except (binascii.Error, ValueError):
        raise PackageRefused("the signature is not base64") from None
    if not trusted.verify(sender, key_id, signature, signed_bytes(manifest)):
        raise PackageRefused(f"signature does not verify with {sender}'s key {key_id!r}")
    checks = {"message_id": _HEX32, "body_sha256": _HEX64, "receiver": AGENCY_CODE, "sender": AGENCY_CODE}
    for name, pattern in checks.items():
        if not isinstance(manifest.get(name), str) or not pattern.match(manifest[name]):
            raise PackageRefused(f"manifest field {name} is missing or malformed")
    if body is None:
        raise PackageRefused(f"no {MESSAGE} in the package")
    if hashlib.sha256(body).hexdigest() != manifest["body_sha256"]:
        raise PackageRefused("body SHA-256 does not match the manifest")
    root = _check_message(body)
    stated = {
        "message_id": root.findtext(f"{_NS}Header/{_NS}MessageId"),
        "sender": root.findtext(f"{_NS}Header/{_NS}From/{_NS}OrganId"),
        "receiver": root.findtext(f"{_NS}Header/{_NS}To/{_NS}OrganId"),
    }
    for name, value in stated.items():
        if value != manifest[name]:
            raise PackageRefused(f"{MANIFEST} and {MESSAGE} disagree on {name}")
    body_element = root.find(_q("Body"))
    if body_element is None:  # the schema requires it: not reached after _check_message
        raise PackageRefused(f"no Body in {MESSAGE}")
    if message_id_for(manifest["sender"], manifest["receiver"], body_element) != manifest["message_id"]:
        raise PackageRefused("the message id is not the digest of the package's content")
    if manifest.get("dossier_count") != len(body_element):
        raise PackageRefused(f"the manifest counts {manifest.get('dossier_count')} dossiers, "
                             f"{MESSAGE} holds {len(body_element)}")
    if receiver is not None and manifest["receiver"] != receiver:
        raise PackageRefused(f"addressed to {manifest['receiver']}, not to this warehouse's agency {receiver}")
    try:
        datetime.fromisoformat(str(manifest.get("created_at")))
    except ValueError:
        raise PackageRefused("manifest field created_at is not an ISO-8601 time") from None
    return Package(manifest, body)


def iter_package_dossiers(body: bytes, *, sender: str = "", message_id: str = "") -> Iterator[dict[str, Any]]:
    """The Dossier elements of a verified message.xml as portal-shaped dicts (every `DOSSIER_FIELDS`
    key, "" when absent; `QuaTrinhXuLy` steps; `_applicant_id_hash`/`_applicant_id_type`)."""
    parser = etree.XMLParser(remove_comments=True, remove_pis=True, **SAFE_PARSER_OPTIONS)
    root = etree.fromstring(body, parser)
    cut = len(_NS)
    for element in root.iterfind(f"{_NS}Body/{_NS}Dossier"):
        record: dict[str, Any] = dict.fromkeys(DOSSIER_FIELDS, "")
        record.update({ID_HASH: "", ID_TYPE: "", "QuaTrinhXuLy": []})
        for child in element:
            name = str(child.tag)[cut:]  # a parsed element's tag is text: "{namespace}name"
            if name == "DinhDanhBam":
                record[ID_HASH] = child.findtext(_q("HMAC")) or ""
                record[ID_TYPE] = child.findtext(_q("LoaiDinhDanh")) or ""
            elif name == "QuaTrinhXuLy":
                record["QuaTrinhXuLy"] = [
                    {"ThoiDiemXuLy": step.findtext(_q("ThoiDiemXuLy")) or "",
                     "TrangThai": step.findtext(_q("TrangThai")) or "",
                     "NoiDungXuLy": step.findtext(_q("NoiDungXuLy")) or ""}
                    for step in child]
            else:
                record[name] = child.text or ""
        record["_exchange_message_id"] = message_id
        record["_exchange_sender"] = sender
        yield record


# ── the `exchange` source, declared for the runner (EXCHANGE_SOURCE, pipeline/sources.py) ──────────

class PackageReader:
    """Reads the dossiers of a verified package folder as the `exchange` source: source_system
    `exchange:<sender>`, one stream `dossiers`. `receive_package` verifies the package (signature,
    hash, schema) and unpacks it in a private folder before the pipeline opens this reader, which
    checks the body against the manifest's hash once more."""

    streams = ("dossiers",)

    def __init__(self, folder: str | Path, *, chunk_size: int = 5000) -> None:
        folder = Path(folder)
        self.manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        self.body = (folder / MESSAGE).read_bytes()
        if hashlib.sha256(self.body).hexdigest() != self.manifest["body_sha256"]:
            raise PackageRefused("body SHA-256 does not match the manifest")
        self.chunk_size = chunk_size
        self.source = f"exchange:{self.manifest['sender']}"

    def __enter__(self) -> PackageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, stream: str, window: Any = None) -> Iterator[list[dict[str, Any]]]:
        """Chunks of at most `chunk_size` dossiers; `window` is ignored (a package is read whole)."""
        if stream != "dossiers":
            raise ValueError(f"the exchange source has one stream, dossiers (not {stream!r})")
        chunk: list[dict[str, Any]] = []
        for record in iter_package_dossiers(self.body, sender=self.manifest["sender"],
                                            message_id=self.manifest["message_id"]):
            chunk.append(record)
            if len(chunk) >= self.chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def exchange_frames(records: Sequence[dict[str, Any]], *, key: PseudonymKey, first_row: int,
                    source_system: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Package dossiers → standard frames: the portal transform, then the applicant identity the
    package carries (its keyed hash and type: there is no raw number to hash again)."""
    from transforms.portal import dossiers_to_frames

    frame, events = dossiers_to_frames(records, key=key, first_row=first_row, source_system=source_system)
    frame["applicant_id_hash"] = [record.get(ID_HASH) or None for record in records]
    types = [int(text) if (text := str(record.get(ID_TYPE) or "")).isdigit() else None for record in records]
    frame["applicant_id_type"] = pd.array(types, dtype="Int64")
    return frame, events


def _open_package_reader(connection: Any, settings: Any, on_page: Any) -> PackageReader:
    return PackageReader(connection.local_path, chunk_size=settings.chunk_size)


# A signed package of another warehouse, verified by receive_package before this reader opens it;
# the applicant's keyed hash is carried, not recomputed. Declared here, run by the runner: the
# runner does not import exchange/.
EXCHANGE_SOURCE = SourcePlan("exchange", "exchange", _open_package_reader,
                             {"dossiers": StreamPlan("dossier", exchange_frames)}, windowed=False)


# ── publishing ──────────────────────────────────────────────────────────────────────────────────

@dataclass
class PublishOutcome:
    """What one publish for one receiver did."""

    receiver: str
    status: str  # delivered | unchanged (no dossier changed) | republished (same package again) | failed
    message_id: str | None = None
    dossier_count: int = 0
    receipts: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        if self.status == "unchanged":
            return f"exchange → {self.receiver}: no dossier changed since the last package; nothing published"
        where = ", ".join(r.get("path") or r.get("url") or r["channel"] for r in self.receipts)
        return (f"exchange → {self.receiver}: package {self.message_id} ({self.dossier_count} dossiers) "
                f"{self.status}" + (f" to {where}" if where else ""))


def _deliver_outbox(package: Package, outbox: Path) -> dict[str, Any]:
    outbox.mkdir(parents=True, exist_ok=True)
    data = package.zip_bytes()
    target = outbox / f"{package.message_id}.zip"
    with tempfile.NamedTemporaryFile(dir=outbox, prefix=".", suffix=".part", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, target)  # a reader of the outbox never sees half a package
    return {"channel": "outbox", "path": str(target), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "at": datetime.now(UTC).isoformat()}


def _deliver_http(package: Package, endpoint: str, timeout: float) -> dict[str, Any]:
    import httpx

    receipt: dict[str, Any] = {"channel": "http", "url": endpoint}
    try:
        response = httpx.post(endpoint, content=package.zip_bytes(), timeout=timeout, headers={
            "Content-Type": "application/zip", "X-Lienthong-Message-Id": package.message_id,
            "X-Lienthong-Sender": package.sender})
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"POST {endpoint}: {type(exc).__name__}: {exc}") from None
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text[:2000]
    receipt.update({"status_code": response.status_code, "response": answer,
                    "at": datetime.now(UTC).isoformat()})
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"POST {endpoint} answered HTTP {response.status_code}: {str(answer)[:200]}")
    return receipt


def publish_package(engine: sa.Engine, *, sender: str, receiver: str, signing_key: SigningKey,
                    outbox: str | Path | None = None, endpoint: str | None = None,
                    lookback_minutes: int = 60, timeout: float = 30.0) -> PublishOutcome:
    """Publish for `receiver` the dossiers of that agency changed since its last package.

    Candidates are the receiver's dossiers loaded since the high-water mark of the last publish
    (minus `lookback_minutes`, for batches that committed late); of those, only the ones whose
    content differs from the version last delivered to the receiver (`ops_package_dossier`) go
    into the package. None changed: no package. The package goes to `outbox` (`<message_id>.zip`)
    and/or is POSTed to `endpoint`; each delivery leaves a receipt in `ops_package`. Only once every
    delivery succeeded are the delivered versions and the high-water mark recorded, so a failed
    delivery is retried whole by the next publish (DeliveryFailed is raised after recording it).
    """
    from warehouse.db import insert_for
    from warehouse.schema import fact_dossier, ops_package, ops_package_dossier, ops_sync_state
    from warehouse.state import get_watermark

    if outbox is None and endpoint is None:
        raise ValueError("nowhere to publish: give an outbox folder and/or an HTTP endpoint "
                         "(LIENTHONG_OUTBOX, LIENTHONG_EXCHANGE_ENDPOINT)")
    state_source = f"exchange:{receiver}"
    high_water = get_watermark(engine, state_source, PUBLISH_STREAM)
    since = high_water - timedelta(minutes=lookback_minutes) if high_water is not None else None
    with engine.connect() as conn:
        newest_load = conn.execute(sa.select(sa.func.max(fact_dossier.c.loaded_at))
                                   .where(fact_dossier.c.agency_code == receiver)).scalar()
        sent = dict(conn.execute(sa.select(ops_package_dossier.c.dossier_code, ops_package_dossier.c.digest)
                                 .where(ops_package_dossier.c.receiver == receiver)).all())
        candidates = warehouse_dossiers(conn, receiver, since, exclude_source=f"exchange:{receiver}")
    digests = {record["MaHoSo"]: dossier_digest(record) for record in candidates}
    changed = [record for record in candidates if sent.get(record["MaHoSo"]) != digests[record["MaHoSo"]]]
    now = datetime.now(UTC)

    def remember(conn: sa.Connection, message_id: str | None) -> None:
        if message_id is not None and changed:
            stmt = insert_for(conn)(ops_package_dossier)
            stmt = stmt.on_conflict_do_update(
                index_elements=["receiver", "dossier_code"],
                set_={"digest": stmt.excluded.digest, "message_id": stmt.excluded.message_id})
            conn.execute(stmt, [{"receiver": receiver, "dossier_code": r["MaHoSo"],
                                 "digest": digests[r["MaHoSo"]], "message_id": message_id} for r in changed])
        if newest_load is not None:
            stmt = insert_for(conn)(ops_sync_state).values(
                source=state_source, stream=PUBLISH_STREAM, watermark=newest_load, last_batch_id=message_id,
                updated_at=now)
            current = ops_sync_state.c.watermark
            stmt = stmt.on_conflict_do_update(index_elements=["source", "stream"], set_={
                "watermark": sa.case((sa.or_(current.is_(None), stmt.excluded.watermark > current),
                                      stmt.excluded.watermark), else_=current),
                "last_batch_id": sa.func.coalesce(stmt.excluded.last_batch_id, ops_sync_state.c.last_batch_id),
                "updated_at": stmt.excluded.updated_at})
            conn.execute(stmt)

    if not changed:
        with engine.begin() as conn:
            remember(conn, None)
        return PublishOutcome(receiver, "unchanged")
    package = build_package(changed, sender, receiver, signing_key)
    with engine.connect() as conn:
        earlier = conn.execute(sa.select(ops_package.c.status).where(
            ops_package.c.message_id == package.message_id, ops_package.c.direction == "out")).scalar()
    receipts: list[dict[str, Any]] = []
    error: str | None = None
    try:
        if outbox is not None:
            receipts.append(_deliver_outbox(package, Path(outbox)))
        if endpoint is not None:
            receipts.append(_deliver_http(package, endpoint, timeout))
    except (DeliveryFailed, OSError) as exc:
        error = str(exc)
    row = {
        "message_id": package.message_id, "direction": "out", "sender": sender, "receiver": receiver,
        "created_at": package.created_at, "dossier_count": package.dossier_count,
        "body_sha256": package.manifest["body_sha256"], "key_id": signing_key.key_id,
        "status": "failed" if error else "delivered", "reason": error,
        "path": next((r["path"] for r in receipts if r["channel"] == "outbox"), None),
        "batch_id": None, "delivered_at": None if error else now,
        "receipt": json.dumps(receipts, ensure_ascii=False, default=str), "recorded_at": now,
    }
    with engine.begin() as conn:
        stmt = insert_for(conn)(ops_package).values(**row)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["message_id", "direction"],
            set_={name: stmt.excluded[name] for name in row if name not in ("message_id", "direction")}))
        if error is None:
            remember(conn, package.message_id)
    if error is not None:
        raise DeliveryFailed(f"package {package.message_id} for {receiver} not delivered: {error}")
    status = "republished" if earlier == "delivered" else "delivered"
    log.info("exchange: package %s for %s (%d dossiers) %s", package.message_id, receiver,
             package.dossier_count, status)
    return PublishOutcome(receiver, status, package.message_id, package.dossier_count, receipts)


# ── receiving ───────────────────────────────────────────────────────────────────────────────────

@dataclass
class ReceiveOutcome:
    """What receiving one package did."""

    message_id: str
    sender: str
    status: str  # accepted | already (received before: nothing loaded)
    dossier_count: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    batch_id: str | None = None

    def summary(self) -> str:
        if self.status == "already":
            return f"package {self.message_id} from {self.sender} was received before: nothing loaded"
        return (f"package {self.message_id} from {self.sender} accepted: {self.dossier_count} dossiers, "
                f"loaded {self.rows_loaded}, quarantined {self.rows_quarantined} (batch {self.batch_id})")


def _record_received(engine: sa.Engine, row: dict[str, Any]) -> None:
    from warehouse.db import insert_for
    from warehouse.schema import ops_package

    full = {"message_id": None, "direction": "in", "sender": None, "receiver": None, "created_at": None,
            "dossier_count": None, "body_sha256": None, "key_id": None, "status": None, "reason": None,
            "path": None, "batch_id": None, "delivered_at": None, "receipt": None,
            "recorded_at": datetime.now(UTC), **row}
    with engine.begin() as conn:
        stmt = insert_for(conn)(ops_package).values(**full)
        keep_accepted = ops_package.c.status != "accepted"  # a later bad copy never unseats a loaded one
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["message_id", "direction"],
            set_={name: stmt.excluded[name] for name in full if name not in ("message_id", "direction")},
            where=keep_accepted))


def _refused_id(path: Path, manifest_data: bytes | None) -> str:
    """The id a refused package is recorded under: its manifest's, when well-formed, else a digest."""
    try:
        stated = _parse_manifest(manifest_data or b"").get("message_id")
        if isinstance(stated, str) and _HEX32.match(stated):
            return stated
    except PackageRefused:
        pass  # no usable manifest: fall back to the package's own digest below
    digest = hashlib.sha256(os.fsencode(path.resolve()))
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as f:  # in blocks: a refused package may be of any size
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:32]


def receive_package(engine: sa.Engine, path: str | Path, *, trusted: TrustedKeys, settings: Any,
                    agency: str | None = None) -> ReceiveOutcome:
    """Verify a package and load its dossiers through the quality gate (source `exchange:<sender>`).

    Nothing of a package is read before it is verified (`verify_package`); a refused one is
    recorded in `ops_package` (direction in, status refused, its reason) and PackageRefused is
    raised. A package already accepted loads nothing again. `agency`: this warehouse's agency code,
    when packages must be addressed to it.
    """
    from connectors.settings import ConnectionSettings
    from pipeline.sync import QualityThresholdExceeded, sync_stream
    from warehouse.schema import ops_package

    path = Path(path)
    try:
        package = verify_package(path, trusted, receiver=agency)
    except PackageRefused as exc:
        try:
            manifest_data, _ = read_parts(path)
        except (PackageRefused, OSError):
            manifest_data = None
        manifest: dict[str, Any] = {}
        try:
            manifest = _parse_manifest(manifest_data or b"{}")
        except PackageRefused:
            manifest = {}

        def stated(name: str, limit: int) -> str | None:
            value = manifest.get(name)
            return value[:limit] if isinstance(value, str) else None

        _record_received(engine, {
            "message_id": _refused_id(path, manifest_data), "sender": stated("sender", 16),
            "receiver": stated("receiver", 16), "key_id": stated("key_id", 64), "status": "refused",
            "reason": str(exc), "path": str(path)})
        log.warning("exchange: package %s refused: %s", path, exc)
        raise
    with engine.connect() as conn:
        earlier = conn.execute(sa.select(ops_package.c.status).where(
            ops_package.c.message_id == package.message_id, ops_package.c.direction == "in")).scalar()
    if earlier == "accepted":
        return ReceiveOutcome(package.message_id, package.sender, "already", package.dossier_count)
    recorded = {"message_id": package.message_id, "sender": package.sender, "receiver": package.receiver,
                "created_at": package.created_at, "dossier_count": package.dossier_count,
                "body_sha256": package.manifest["body_sha256"], "key_id": package.manifest["key_id"],
                "path": str(path)}
    with tempfile.TemporaryDirectory(prefix="lienthong-package-") as folder:
        # the verified bytes, in a folder only this process writes: what is loaded is what was checked
        (Path(folder) / MANIFEST).write_bytes(package.manifest_bytes())
        (Path(folder) / MESSAGE).write_bytes(package.body)
        connection = ConnectionSettings(host="", scheme="file", extra={"path": folder})
        try:
            outcome = sync_stream(EXCHANGE_SOURCE, "dossiers", engine=engine, connection=connection, settings=settings)
        except QualityThresholdExceeded as exc:
            _record_received(engine, {**recorded, "status": "refused", "reason": f"quality gate: {exc}"})
            raise PackageRefused(f"quality gate: {exc}") from None
    _record_received(engine, {**recorded, "status": "accepted", "batch_id": outcome.batch_id,
                              "delivered_at": datetime.now(UTC)})
    return ReceiveOutcome(package.message_id, package.sender, "accepted", package.dossier_count,
                          outcome.rows_loaded, outcome.rows_quarantined, outcome.batch_id)


def inbox_packages(inbox: str | Path) -> list[Path]:
    """The packages waiting in an inbox folder (`*.zip`, oldest first by name)."""
    return sorted(Path(inbox).glob("*.zip"))


def receivers_from_env(value: str | None = None) -> list[str]:
    """LIENTHONG_EXCHANGE_RECEIVERS: comma-separated agency codes."""
    text = value if value is not None else os.environ.get("LIENTHONG_EXCHANGE_RECEIVERS", "")
    codes = [code.strip() for code in text.split(",") if code.strip()]
    bad = [code for code in codes if not AGENCY_CODE.match(code)]
    if bad:
        raise ValueError(f"LIENTHONG_EXCHANGE_RECEIVERS: not agency codes: {', '.join(bad)}")
    return codes


# ── configured runs: the CLI and the `exchange` DAG call these ─────────────────────────────────

DEFAULT_SENDER = "000.00.00.H62"  # the province's People's Committee


def sender_from_env() -> str:
    """LIENTHONG_EXCHANGE_SENDER: this warehouse's agency code on the packages it publishes."""
    sender = os.environ.get("LIENTHONG_EXCHANGE_SENDER", "").strip() or DEFAULT_SENDER
    if not AGENCY_CODE.match(sender):
        raise ValueError(f"LIENTHONG_EXCHANGE_SENDER {sender!r} is not an agency code")
    return sender


def publish_from_env(receiver: str, *, outbox: str | None = None, endpoint: str | None = None,
                     sender: str | None = None) -> PublishOutcome:
    """Publish for one receiver into the warehouse of WAREHOUSE_URL, with the configured key
    (LIENTHONG_SIGNING_KEY[_ID]), outbox (LIENTHONG_OUTBOX) and endpoint (LIENTHONG_EXCHANGE_ENDPOINT)."""
    from exchange.keys import load_signing_key
    from pipeline.settings import PipelineSettings
    from warehouse.db import create_engine, upgrade, warehouse_url

    if not AGENCY_CODE.match(receiver):
        raise ValueError(f"receiver {receiver!r} is not an agency code (NNN.NN.NN.XNN)")
    key = load_signing_key()
    outbox = outbox or os.environ.get("LIENTHONG_OUTBOX", "").strip() or None
    endpoint = endpoint or os.environ.get("LIENTHONG_EXCHANGE_ENDPOINT", "").strip() or None
    settings = PipelineSettings()
    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    try:
        return publish_package(engine, sender=sender or sender_from_env(), receiver=receiver, signing_key=key,
                               outbox=outbox, endpoint=endpoint, lookback_minutes=settings.lookback_minutes,
                               timeout=settings.http_timeout)
    finally:
        engine.dispose()


def receive_from_env(paths: Sequence[str | Path], *, agency: str | None = None,
                     trusted_keys: str | None = None) -> list[ReceiveOutcome | PackageRefused]:
    """Receive packages into the warehouse of WAREHOUSE_URL, trusting LIENTHONG_TRUSTED_KEYS; for
    each, its outcome or the PackageRefused that refused it (the others are still received)."""
    from exchange.keys import load_trusted_keys
    from pipeline.settings import PipelineSettings
    from warehouse.db import create_engine, upgrade, warehouse_url

    trusted = load_trusted_keys(trusted_keys)
    agency = agency or os.environ.get("LIENTHONG_EXCHANGEAGENCY_CODE", "").strip() or None
    settings = PipelineSettings()
    settings.require_pseudonym_key()
    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    results: list[ReceiveOutcome | PackageRefused] = []
    try:
        for path in paths:
            try:
                results.append(receive_package(engine, path, trusted=trusted, settings=settings, agency=agency))
            except PackageRefused as exc:
                results.append(exc)
    finally:
        engine.dispose()
    return results


def receive_inbox(inbox: str | Path, **options: Any) -> dict[str, list[str]]:
    """Receive every package of an inbox folder; each is then moved to `received/` or `refused/`
    (with `<name>.reason.txt`), so a package is read once. Returns the names by outcome."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise FileNotFoundError(f"exchange inbox {inbox} does not exist (LIENTHONG_EXCHANGE_INBOX)")
    paths = inbox_packages(inbox)
    done: dict[str, list[str]] = {"accepted": [], "already": [], "refused": []}
    for path, result in zip(paths, receive_from_env(paths, **options), strict=True):
        if isinstance(result, PackageRefused):
            target = inbox / "refused"
            target.mkdir(exist_ok=True)
            (target / f"{path.name}.reason.txt").write_text(f"refused: {result}\n", encoding="utf-8")
            done["refused"].append(f"{path.name}: {result}")
        else:
            target = inbox / "received"
            target.mkdir(exist_ok=True)
            done[result.status].append(path.name)
        os.replace(path, target / path.name)
    return done
