"""The agencies' file validator: a dossier or procedure file checked by the pipeline's own rules."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, overload

import standards
from connectors.base import PORTAL_DOSSIER_FIELDS, PORTAL_PROCEDURE_FIELDS, DuplicateKey, nested_deeper, unique_keys

__all__ = [
    "ENTITIES",
    "MESSAGES_PATH",
    "Finding",
    "UnreadableFile",
    "ValidationReport",
    "gate_rule_ids",
    "load_catalogue",
    "load_messages",
    "validate_file",
]

ENTITIES = ("dossier", "procedure")
LANGS = ("vi", "en")
MESSAGES_PATH = standards.STANDARD_DIR / "messages.yaml"
CHUNK_ROWS = 5000  # rows per quality-gate call, as the pipeline's chunks

# A CSV or xlsx header naming the portal record's fields (connectors.base.PORTAL_DOSSIER_FIELDS,
# PORTAL_PROCEDURE_FIELDS) is read as written; the Justice export's Vietnamese headers are
# `JUSTICE_COLUMNS`.
# Fields only one of the two records has: they tell a procedure file from a dossier file.
_DOSSIER_ONLY = frozenset({"MaHoSo", "NgayTiepNhan", "TrangThaiHoSo", "DonViXuLy", "KenhThucHien"})
_PROCEDURE_ONLY = frozenset({"MucDo", "LichSuMucDo", "CapThucHien", "MaCoQuanThucHien",
                             "NgayCongBo", "ThoiHanGiaiQuyet"})

# Standard column → the portal field the clerk wrote it in (the transform's inverse).
_DOSSIER_FIELD_OF = {
    "dossier_code": "MaHoSo", "source_record_id": "MaHoSo", "procedure_code": "MaTTHC",
    "agency_code": "DonViXuLy", "admin_unit_code": "NoiNopHoSo", "procedure_name": "TenTTHC",
    "summary": "TrichYeuHoSo", "received_at": "NgayTiepNhan", "due_at": "NgayHenTra",
    "finished_at": "NgayKetThucXuLy", "returned_at": "NgayTra", "updated_at": "NgayCapNhat",
    "channel": "KenhThucHien", "applicant_type": "LoaiDoiTuong", "status": "TrangThaiHoSo",
    "paid_online": "DuocThanhToanTrucTuyen", "fee": "DanhSachLePhi",
}
_PROCEDURE_FIELD_OF = {
    "procedure_code": "MaTTHC", "source_record_id": "MaTTHC", "name": "TenTTHC",
    "field_code": "MaLinhVuc", "field_name": "TenLinhVuc", "agency_code": "MaCoQuanThucHien",
    "scope": "CapThucHien", "fee": "PhiLePhi", "processing_days": "ThoiHanGiaiQuyet",
    "published_on": "NgayCongBo", "abolished_on": "NgayBaiBo", "updated_at": "NgayCapNhat",
    "levels": "LichSuMucDo",
}
_APPLICANT_ID_COLUMNS = frozenset({"applicant_id", "applicant_id_hash", "applicant_id_type"})
# Personal identifiers: shown masked, never in full (the quarantine keeps only their keyed hash).
_PERSONAL_FIELDS = frozenset({"SoGiayToChuHoSo", "SoDienThoai", "Email", "Fax", "DinhDanhCHS"})

_BINARY_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"%PDF": "PDF",
                 b"\x1f\x8b": "gzip", b"Rar!": "RAR", b"7z\xbc\xaf": "7z"}
_XLS_MAGIC = b"\xd0\xcf\x11\xe0"
_ZIP_MAGIC = b"PK\x03\x04"
_CONTROL = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D}
_HEADER_SCAN_ROWS = 20
# Limits on hostile files (docs/hostile_input.md). The file is read whole: at most MAX_FILE_BYTES.
# A JSON document nested deeper than MAX_JSON_DEPTH is refused (a portal record needs 4 levels;
# Python's json module itself fails with RecursionError near 1,000). A value longer than the csv
# module's field limit (`csv.field_size_limit()`, 128 KiB) is refused in CSV and in JSON alike.
MAX_FILE_BYTES = 256 << 20
MAX_JSON_DEPTH = 32
_SCHEMA_ELEMENT = re.compile(r"element '([^']+)'", re.IGNORECASE)
_SCHEMA_VALUE = re.compile(r"'([^']*)' is not a valid value")
_SCHEMA_FACET = re.compile(
    r"\[facet 'pattern'\] The value '(?P<value>[^']*)' is not accepted by the pattern '(?P<pattern>[^']*)'\.?"
)


class UnreadableFile(Exception):
    """A file that cannot be read at all (exit code 2). `key` names its text in messages.yaml."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key, params)
        self.key = key
        self.params = params

    def message(self, lang: str = "vi") -> str:
        """One line in `lang`."""
        return _one_line(_text(f"unreadable.{self.key}", lang, **self.params))


@dataclass(frozen=True)
class Finding:
    """One rule one row broke (or, with `row` None, one the whole file broke)."""

    row: int | None  # as the clerk sees it: line (CSV), sheet row (xlsx), record (JSON), dossier (XML)
    field: str  # the portal field, e.g. NgayTiepNhan
    rule: str  # the standard's rule id, e.g. received_at.valid_datetime
    value: str | None  # as written in the file (personal identifiers masked)
    message: str
    column: str | None = None  # the header as written in the file, when it is not `field`
    line: int | None = None  # XML: the file line of a file-level finding


@dataclass
class ValidationReport:
    """What `validate_file` found; `exit_code` 0 valid, 1 invalid rows (or a file-level finding)."""

    file: str
    format: str
    encoding: str | None
    entity: str
    rows: int
    invalid_rows: int
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    lang: str = "vi"

    @property
    def exit_code(self) -> int:
        return 1 if self.findings else 0

    def to_json(self) -> dict[str, Any]:
        """The machine report: file, format, encoding, entity, rows, invalid_rows, findings, notes."""
        findings = []
        for finding in self.findings:
            item = {k: v for k, v in asdict(finding).items() if v is not None or k in
                    ("row", "value")}
            findings.append(item)
        return {"file": self.file, "format": self.format, "encoding": self.encoding,
                "entity": self.entity, "rows": self.rows, "invalid_rows": self.invalid_rows,
                "findings": findings, "notes": list(self.notes)}

    def to_text(self) -> str:
        """The clerk's report: a header line, one line per finding, the notes, a summary line."""
        lang = self.lang
        encoding = _text("encoding", lang, encoding=self.encoding) if self.encoding else ""
        lines = [_text("header", lang, file=self.file, format=self.format.upper(),
                       encoding=encoding, entity=_text(f"entity.{self.entity}", lang))]
        for f in self.findings:
            if f.row is None:
                where = _text("file_line", lang, line=f.line if f.line is not None else "?")
            else:
                where = f"{_text(f'row.{self.format}', lang)} {f.row}"
            name = f"{f.column} ({f.field})" if f.column else f.field
            value = f' ({_text("value", lang)}: "{f.value}")' if f.value not in (None, "") else ""
            lines.append(f"{where}, {name}: {f.rule} — {f.message}{value}")
        lines += [f"{_text('note', lang)}: {note}" for note in self.notes]
        lines.append(_text("summary", lang, rows=self.rows, invalid_rows=self.invalid_rows,
                           errors=len(self.findings)))
        return "\n".join(lines) + "\n"


@dataclass
class _Read:
    """A file as read: portal-shaped records, each with its row number and raw values."""

    format: str
    encoding: str | None
    records: list[dict[str, Any]]
    rows: list[int]
    raws: list[dict[str, Any]]  # portal field → value as written in the file
    columns: dict[str, str] = field(default_factory=dict)  # portal field → header as written
    entity: str | None = None  # what the headers said, if they did
    file_findings: list[tuple[int | None, str, str | None, str]] = field(default_factory=list)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


# ── the entry point ────────────────────────────────────────────────────────────────────────────


def validate_file(
    path: Path | str,
    *,
    entity: str | None = None,
    lang: str = "vi",
    encoding: str | None = None,
    catalogue: Iterable[str] | None = None,
    catalogue_source: str | None = None,
) -> ValidationReport:
    """Check one agency file against the standard with the pipeline's transform and quality gate.

    The format (JSON list / `{"result": [...]}` / JSON lines, the LGSP XML message, CSV, xlsx) is
    found from the content; a CSV's encoding from its bytes unless `encoding` is given; the entity
    (dossier or procedure) from the fields unless given. `catalogue` is the set of procedure codes
    for `procedure_code.in_catalogue`; without it that rule is skipped and a note says so.
    Raises `UnreadableFile` for a file that cannot be read at all.
    """
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    if entity is not None and entity not in ENTITIES:
        raise ValueError(f"entity must be one of {', '.join(ENTITIES)}, not {entity!r}")
    path = Path(path)
    read = read_file(path, encoding=encoding, entity=entity)
    entity = entity or read.entity or _entity_of(read.records)
    notes = [_text(key, lang, **params) for key, params in read.notes]

    references: dict[str, frozenset[str]] = {}
    if entity == "dossier":
        if catalogue is None:
            notes.append(_text("note.no_catalogue", lang))
        else:
            references["procedure_code"] = frozenset(catalogue)
            notes.append(_text("note.catalogue", lang, source=catalogue_source or "—",
                               count=len(references["procedure_code"])))
    if not read.records:
        notes.append(_text("note.no_rows", lang))

    messages = load_messages()
    findings = [
        Finding(row=None, field=name, rule="message.refused", value=value, line=line,
                message=_message(messages, "message.refused", lang, name, {}) + f": {detail}")
        for line, name, value, detail in read.file_findings
    ]
    by_row = _row_findings(read, entity, references, lang, messages)
    if any(f.field in _PERSONAL_FIELDS or f.field.startswith("DinhDanhCHS") for f in by_row):
        notes.append(_text("note.masked", lang))
    findings += by_row
    return ValidationReport(
        file=path.name, format=read.format, encoding=read.encoding, entity=entity,
        rows=len(read.records), invalid_rows=len({f.row for f in by_row}), findings=findings,
        notes=notes, lang=lang,
    )


def _row_findings(read: _Read, entity: str, references: Mapping[str, frozenset[str]], lang: str,
                  messages: Mapping[str, Any]) -> list[Finding]:
    """Every rule of every row, from the pipeline's own transform and quality gate."""
    from transforms.portal import dossiers_to_frames, procedures_to_frame

    gate = _gate(entity, references.get("procedure_code"))
    key = os.urandom(32)  # ID numbers are hashed by the transform; nothing of it is kept
    failed: dict[int, list[str]] = {}
    for start in range(0, len(read.records), CHUNK_ROWS):
        chunk = read.records[start:start + CHUNK_ROWS]
        if entity == "dossier":
            frame, _ = dossiers_to_frames(chunk, key=key, first_row=start, source_system="validate")
        else:
            frame = procedures_to_frame(chunk, first_row=start, source_system="validate")
        result = gate.split(frame)
        for row, rules in zip(result.bad["_row"], result.bad["failed_rules"], strict=True):
            failed[int(row)] = list(rules)

    field_of = _DOSSIER_FIELD_OF if entity == "dossier" else _PROCEDURE_FIELD_OF
    findings = []
    for index in sorted(failed):
        record, raw = read.records[index], read.raws[index]
        seen: set[str] = set()
        for rule in failed[index]:
            column = rule.partition(".")[0]
            name = _field_of(column, record, raw, field_of)
            if rule.endswith(".required") and f"{name}.required" in seen:
                continue  # MaHoSo missing: dossier_code and source_record_id, one finding
            seen.add(f"{name}.{rule.partition('.')[2]}")
            findings.append(Finding(
                row=read.rows[index], field=name, rule=rule, value=_shown(raw, name),
                message=_message(messages, rule, lang, name, raw),
                column=read.columns.get(name) if read.columns.get(name) != name else None,
            ))
    return findings


def _field_of(column: str, record: Mapping[str, Any], raw: Mapping[str, Any],
              field_of: Mapping[str, str]) -> str:
    """The portal field a standard column came from, in this record."""
    if column in _APPLICANT_ID_COLUMNS:
        ids = record.get("DinhDanhCHS")
        if isinstance(ids, list) and any(isinstance(i, dict) and str(i.get("SoDinhDanh", "")).strip()
                                         for i in ids):
            return "DinhDanhCHS"
        return "SoGiayToChuHoSo"
    if column == "fee" and "LePhi" in raw and not (isinstance(record.get("DanhSachLePhi"), list)
                                                   and record["DanhSachLePhi"]):
        return "LePhi"  # as transforms.portal._fee reads it: the total when the list is empty
    if column == "levels" and not record.get("LichSuMucDo") and "MucDo" in raw:
        return "MucDo"
    return field_of.get(column, column)


def _shown(raw: Mapping[str, Any], name: str) -> str | None:
    """A value as the clerk wrote it; personal identifiers masked."""
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, list | dict):
        if name == "DinhDanhCHS":
            value = [{**item, "SoDinhDanh": _mask(str(item.get("SoDinhDanh", "")))}
                     if isinstance(item, dict) else item for item in value]
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    return _mask(text) if name in _PERSONAL_FIELDS else text


def _mask(text: str) -> str:
    """Keep the first two and last two characters, the rest as `*`: the length still shows."""
    if len(text) <= 4:
        return "*" * len(text)
    return text[:2] + "*" * (len(text) - 4) + text[-2:]


@lru_cache(maxsize=4)
def _gate(entity: str, catalogue: frozenset[str] | None) -> Any:
    """The pipeline's quality gate for `entity` (built once per catalogue: GX is slow to start)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from quality.gate import QualityGate

    return QualityGate(entity, {"procedure_code": catalogue} if catalogue is not None else None)


# ── messages ───────────────────────────────────────────────────────────────────────────────────


@cache
def load_messages() -> dict[str, Any]:
    """standards/messages.yaml: `rules` (rule id → {vi, en}) and `texts` (the report's words)."""
    import yaml

    return yaml.safe_load(MESSAGES_PATH.read_text(encoding="utf-8"))


class _Values(dict):
    """Placeholders of a message: a field missing from the row reads as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _message(messages: Mapping[str, Any], rule: str, lang: str, name: str,
             raw: Mapping[str, Any]) -> str:
    entry = messages["rules"].get(rule)
    if entry is None:
        return _text("unknown_rule", lang, rule=rule)
    values = _Values({k: _shown(raw, k) or "" for k in raw if isinstance(k, str)})
    values["field"] = name
    return entry[lang].format_map(values)


def _text(key: str, lang: str, **params: Any) -> str:
    return load_messages()["texts"][key][lang].format(**params)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def gate_rule_ids(entity: str) -> set[str]:
    """Every rule id the pipeline's transform and quality gate can emit for `entity`.

    From the suite generated from the schema (with a catalogue, so `in_catalogue` is in), the
    nested checks the gate does in Python, and the transform's own rules.
    """
    from quality.suites import build_suite, is_nested, rule_of
    from transforms.portal import DOSSIER_CODES, DOSSIER_TIMES

    schema = standards.load_schema(entity)
    references: dict[str, list[str]] = {c: [] for c, p in schema["properties"].items() if "x-references" in p}
    rules = {rule_of(e) for e in build_suite(entity, references).expectations}
    required = set(schema.get("required", ()))
    for column, prop in schema["properties"].items():
        if not is_nested(prop):
            continue
        if column in required or prop.get("minItems", 0) > 0:
            rules.add(f"{column}.required")
        if any("x-codelist" in p for p in prop.get("items", {}).get("properties", {}).values()):
            rules.add(f"{column}.in_codelist")
    if entity == "dossier":
        rules |= {f"{c}.valid_datetime" for c in DOSSIER_TIMES}
        rules |= {f"{c}.in_codelist" for c in DOSSIER_CODES}
        rules |= {"applicant_id.valid_format", "fee.valid_amount"}
    elif entity == "procedure":
        rules |= {f"{c}.valid_datetime" for c in ("published_on", "abolished_on", "updated_at")}
        rules |= {"scope.in_codelist", "fee.valid_amount", "processing_days.valid_number",
                  "levels.valid_history"}
    return rules


# ── reading ────────────────────────────────────────────────────────────────────────────────────


def read_file(path: Path, *, encoding: str | None = None, entity: str | None = None) -> _Read:
    """A file as portal-shaped records, its format found from its content. Raises UnreadableFile."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would be read for ever
            raise UnreadableFile("missing", detail="not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise UnreadableFile("too_large", size=info.st_size, limit=MAX_FILE_BYTES)
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile("missing", detail=exc.strerror or type(exc).__name__) from None
    fmt = detect_format(data)
    if fmt == "xlsx":
        return _read_xlsx(data, entity)
    text, used = _decode(data, encoding)
    if fmt == "json":
        return _read_json(text, used)
    if fmt == "xml":
        return _read_xml(data)
    return _read_csv(text, used, entity)


def detect_format(data: bytes) -> str:
    """`json`, `xml`, `csv` or `xlsx`, from the bytes (never the name). Raises UnreadableFile."""
    if not data.strip():
        raise UnreadableFile("empty")
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    if data.startswith(_XLS_MAGIC):
        raise UnreadableFile("xls")
    for magic, kind in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise UnreadableFile("binary", detail=f": {kind}")
    sample = data[:4096]
    if b"\x00" in data or sum(b in _CONTROL for b in sample) > len(sample) // 100:
        raise UnreadableFile("binary", detail="")
    first = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first in (b"[", b"{"):
        return "json"
    if first == b"<":
        return "xml"
    return "csv"


def _decode(data: bytes, encoding: str | None) -> tuple[str, str]:
    from transforms.legacy_encoding import LegacyEncodingError, decode_legacy, detect_legacy_encoding

    try:
        used = encoding or detect_legacy_encoding(data)
        text = decode_legacy(data, used)
    except LegacyEncodingError as exc:
        raise UnreadableFile("encoding", detail=_one_line(str(exc))) from None
    return text.lstrip("\ufeff"), used


def _json_int(text: str) -> int | float:
    """A JSON integer; one longer than Python converts (4,300 digits) reads as infinity, as json
    reads 1e999 — too large to be any field's value either way, and refused by its rule."""
    return int(text) if len(text) <= sys.get_int_max_str_digits() else float(text)


def _json_loads(text: str) -> Any:
    """json.loads refusing duplicate keys and documents nested deeper than MAX_JSON_DEPTH."""
    try:
        document = json.loads(text, object_pairs_hook=unique_keys, parse_int=_json_int)
    except DuplicateKey as exc:
        raise UnreadableFile("json_duplicate", name=exc.key[:100]) from None
    except RecursionError:  # json's C scanner gives up near 1,000 levels
        raise UnreadableFile("json_depth", limit=MAX_JSON_DEPTH) from None
    if nested_deeper(document, MAX_JSON_DEPTH):
        raise UnreadableFile("json_depth", limit=MAX_JSON_DEPTH)
    return document


# A portal record's list fields; its other fields (PORTAL_DOSSIER_FIELDS, PORTAL_PROCEDURE_FIELDS)
# hold one value each: text, or a number read as its digits.
_LIST_FIELDS = frozenset({"TaiLieuNop", "DanhSachLePhi", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua",
                          "DinhDanhCHS", "QuaTrinhXuLy", "LichSuMucDo"})
_VALUE_FIELDS = frozenset(PORTAL_DOSSIER_FIELDS) | frozenset(PORTAL_PROCEDURE_FIELDS)


def _check_record(record: Mapping[str, Any], row: int) -> None:
    """One JSON record against the limits and the portal record's shape (UnreadableFile).

    A value longer than the CSV field limit, or holding U+0000 (which no warehouse text column
    stores), refuses the file, as in a CSV; so does an object or a list where the portal has one
    value, or a value that is not a list where it has a list: the transform would read
    `{"Gia": …}` as no fee at all, silently.
    """
    limit = csv.field_size_limit()
    stack: list[Any] = [record]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if len(value) > limit:
                raise UnreadableFile("field_too_large", row=row, limit=limit)
            if "\x00" in value:
                raise UnreadableFile("nul", row=row)
        elif isinstance(value, dict):
            stack.extend((*value.keys(), *value.values()))
        elif isinstance(value, list):
            stack.extend(value)
    for name, value in record.items():
        if name in _LIST_FIELDS and not isinstance(value, list) and value not in ("", None):
            raise UnreadableFile("json_shape", detail=f"#{row} {name}: {type(value).__name__}, not a list")
        if name in _VALUE_FIELDS and isinstance(value, dict | list):
            raise UnreadableFile("json_shape", detail=f"#{row} {name}: {type(value).__name__}, not one value")


def _read_json(text: str, encoding: str) -> _Read:
    try:
        document = _json_loads(text)
        fmt = "json"
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise UnreadableFile("json", line=exc.lineno, column=exc.colno, detail=exc.msg) from None
        return _read_json_lines(text, encoding)
    if isinstance(document, dict):
        document = document["result"] if "result" in document else [document]
    if not isinstance(document, list):
        raise UnreadableFile("json_shape", detail=type(document).__name__)
    for i, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            raise UnreadableFile("json_shape", detail=f"#{i}: {type(record).__name__}")
        _check_record(record, i)
    return _Read(fmt, encoding, document, list(range(1, len(document) + 1)), document)


def _read_json_lines(text: str, encoding: str) -> _Read:
    records, rows = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = _json_loads(line)
        except json.JSONDecodeError as exc:
            raise UnreadableFile("json", line=line_no, column=exc.colno, detail=exc.msg) from None
        if not isinstance(record, dict):
            raise UnreadableFile("json_shape", detail=f"#{line_no}: {type(record).__name__}")
        _check_record(record, line_no)
        records.append(record)
        rows.append(line_no)
    return _Read("jsonl", encoding, records, rows, records)


def _read_xml(data: bytes) -> _Read:
    """The LGSP message, checked and read by the LGSP connector's own safe parser and schema.

    A schema violation is a finding of the whole file (the pipeline refuses the whole message),
    with its line; the dossiers are still checked one by one, so the clerk sees every problem at
    once.
    """
    from lxml import etree

    from connectors.lgsp import MessageHeader, MessageRefused, check_message, iter_dossiers

    file_findings: list[tuple[int | None, str, str | None, str]] = []
    notes: list[tuple[str, dict[str, Any]]] = []
    try:
        header = check_message(io.BytesIO(data))
        notes.append(("note.dossier_xml", {"message_id": header.message_id, "sender": header.sender}))
    except MessageRefused as exc:
        reason = str(exc)
        if not reason.startswith("schema:"):
            kind = "xml" if reason.startswith("malformed XML") else "xml_hostile"
            raise UnreadableFile(kind, detail=reason) from None
        file_findings = _schema_findings(data, reason)
        header = MessageHeader(message_id="", sender="", receiver="")
    records = []
    try:
        for record in iter_dossiers(io.BytesIO(data), header):
            record.pop("_lgsp_message_id", None)
            record.pop("_lgsp_sender", None)
            records.append(record)
    except etree.XMLSyntaxError as exc:  # well-formedness past a schema stop is checked here
        raise UnreadableFile("xml", detail=_one_line(str(exc))) from None
    return _Read("xml", "utf-8", records, list(range(1, len(records) + 1)), records,
                 entity="dossier", file_findings=file_findings, notes=notes)


def _schema_findings(data: bytes, reason: str) -> list[tuple[int | None, str, str | None, str]]:
    """Every schema violation of a message `check_message` refused, with its line.

    `check_message` validates streaming and stops at the first violation, whose line libxml2 does
    not report there; the message (its prolog already checked: no DOCTYPE) is validated again as
    a tree, with the connector's own parser options and schema, which gives each line.
    """
    from lxml import etree

    from connectors.lgsp import LGSP_NS, SAFE_PARSER_OPTIONS, load_message_schema  # the same options, not a copy

    try:
        tree = etree.parse(io.BytesIO(data), etree.XMLParser(**SAFE_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise UnreadableFile("xml", detail=_one_line(str(exc))) from None
    if tree.getroot().tag != f"{{{LGSP_NS}}}Message" or "validation root" in reason:
        raise UnreadableFile("xml_root", detail=reason)
    schema = load_message_schema()
    schema.validate(tree)
    # Empty only if the two passes disagreed: then the streaming pass's reason stands, lineless.
    errors = [(e.line or None, e.message) for e in schema.error_log] or [(None, reason)]
    found = []
    for line, message in errors:
        text = _SCHEMA_FACET.sub(lambda m: f"'{m['value']}' is not a valid value (pattern {m['pattern']})",
                                 message.replace(f"{{{LGSP_NS}}}", "").removeprefix("schema: "))
        element, value = _SCHEMA_ELEMENT.search(text), _SCHEMA_VALUE.search(text)
        found.append((line, element[1] if element else "Message", value[1] if value else None,
                      _one_line(text)))
    return found


def _read_csv(text: str, encoding: str, entity: str | None) -> _Read:
    from connectors.filedrop import justice_dossier

    lines = (match.group() for match in _LINE.finditer(text))  # one line copied at a time
    first_line = text[: min((i for i in (text.find("\n"), text.find("\r")) if i >= 0), default=len(text))]
    delimiter = _delimiter(first_line)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise UnreadableFile("header", where="") from None
    mapping = _header_mapping(header, entity, where="")
    read = _Read("csv", encoding, [], [], [], columns=mapping.columns, entity=mapping.entity,
                 notes=mapping.notes)
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise UnreadableFile("csv_row", line=reader.line_num, count=len(values),
                                     expected=len(header))
            raw = {name: values[i] for i, name in mapping.index}
            record = justice_dossier(raw) if mapping.justice else _portal_record(raw, mapping.entity)
            read.records.append(record)
            read.raws.append(raw)
            read.rows.append(reader.line_num)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise UnreadableFile("field_too_large", row=reader.line_num, limit=csv.field_size_limit()
                                 ) from None
        raise UnreadableFile("csv_row", line=reader.line_num, count="?", expected=len(header)
                             ) from exc
    return read


# A line with its end (\r\n, \r or \n, as io.StringIO(newline="") splits them), or the last one without.
# The text is not wrapped in a StringIO: that holds a copy of four bytes a character.
_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+$")


def _delimiter(first_line: str) -> str:
    """`;` (the Justice export's) or `,` — whichever splits the header line into more cells."""
    counts = {d: len(next(csv.reader([first_line], delimiter=d), [])) for d in (";", ",", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ";"))


def _read_xlsx(data: bytes, entity: str | None) -> _Read:
    from connectors.filedrop import (
        UNREADABLE_ERRORS,
        FileRejected,
        catalogue_procedure,
        cell_value,
        justice_dossier,
        open_workbook,
        unreadable_reason,
    )

    try:  # the connector's own opening: zip-bomb limits, formulas as text, no external links
        workbook = open_workbook(io.BytesIO(data))
    except FileRejected as exc:
        raise UnreadableFile("xlsx_limits", detail=str(exc)) from None
    except UNREADABLE_ERRORS as exc:
        raise UnreadableFile("xlsx", detail=_one_line(str(exc)) or type(exc).__name__) from None
    except Exception as exc:  # noqa: BLE001 — openpyxl has more ways to fail on a cut file
        raise UnreadableFile("xlsx", detail=unreadable_reason(exc)) from None
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        mapping = None
        row_no = 0
        for row_no, cells in enumerate(rows, start=1):
            if row_no > _HEADER_SCAN_ROWS:
                break
            mapping = _header_mapping(cells, entity, where=None)
            if mapping is not None:
                break
        if mapping is None:
            raise UnreadableFile("header", where=f" ({sheet.title!r}, {_HEADER_SCAN_ROWS} rows)")
        read = _Read("xlsx", None, [], [], [], columns=mapping.columns, entity=mapping.entity,
                     notes=mapping.notes)
        for number, cells in enumerate(rows, start=row_no + 1):
            raw = {name: cell_value(name, cells[i]) if i < len(cells) else "" for i, name in mapping.index}
            if all(v == "" for v in raw.values()):
                continue
            if mapping.justice:
                record = justice_dossier(raw)
            elif mapping.catalogue:
                procedure = catalogue_procedure(raw)
                if procedure is None:  # blank (caught above already)
                    continue
                record = procedure
            else:
                record = _portal_record(raw, mapping.entity)
            read.records.append(record)
            read.raws.append(raw)
            read.rows.append(number)
        return read
    except UnreadableFile:
        raise
    except Exception as exc:  # noqa: BLE001 — a workbook damaged past its directory: unreadable
        raise UnreadableFile("xlsx", detail=unreadable_reason(exc)) from None
    finally:
        workbook.close()


@dataclass
class _Mapping:
    """How a header row maps to portal fields."""

    index: list[tuple[int, str]]  # (cell position, portal field)
    columns: dict[str, str]  # portal field → header as written
    entity: str
    justice: bool = False  # the Justice export's Vietnamese headers
    catalogue: bool = False  # the catalogue sheet's Vietnamese headers
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@overload
def _header_mapping(header: Sequence[object], entity: str | None, where: str) -> _Mapping: ...
@overload
def _header_mapping(header: Sequence[object], entity: str | None, where: None) -> _Mapping | None: ...
def _header_mapping(header: Sequence[object], entity: str | None, where: str | None
                    ) -> _Mapping | None:
    """The mapping of a header row, or None (`where` None) / UnreadableFile when none fits."""
    from connectors.filedrop import CATALOGUE_HEADERS, JUSTICE_COLUMNS, header_fields

    cells = ["" if c is None else str(c).strip().lstrip("\ufeff") for c in header]
    candidates = []
    justice = header_fields(cells, JUSTICE_COLUMNS)
    if "MaHoSo" in justice and entity in (None, "dossier"):
        candidates.append((justice, "dossier", True, False))
    catalogue = header_fields(cells, CATALOGUE_HEADERS)
    if {"MaTTHC", "TenTTHC"} <= set(catalogue) and entity in (None, "procedure"):
        candidates.append((catalogue, "procedure", False, True))
    portal_names = {f.casefold(): f for f in (*PORTAL_DOSSIER_FIELDS, *PORTAL_PROCEDURE_FIELDS)}
    portal = [portal_names.get(c.casefold()) for c in cells]
    if "MaHoSo" in portal and entity in (None, "dossier"):
        candidates.append((portal, "dossier", False, False))
    elif {"MaTTHC", "TenTTHC"} <= set(portal) and entity in (None, "procedure"):
        candidates.append((portal, "procedure", False, False))
    elif entity is not None and "MaTTHC" in portal:
        candidates.append((portal, entity, False, False))
    if not candidates:
        if where is None:
            return None
        raise UnreadableFile("header", where=where if entity is None else "")
    fields, kind, is_justice, is_catalogue = max(candidates, key=lambda c: sum(map(bool, c[0])))
    index = [(i, name) for i, name in enumerate(fields) if name]
    unused = [cells[i] for i, name in enumerate(fields) if not name and cells[i]]
    notes = [("note.unused_columns", {"columns": ", ".join(unused)})] if unused else []
    return _Mapping(index=index, columns={name: cells[i] for i, name in index}, entity=kind,
                    justice=is_justice, catalogue=is_catalogue, notes=notes)


def _portal_record(raw: Mapping[str, object], entity: str) -> dict[str, Any]:
    """A flat row with portal field names → a portal record (absent fields empty)."""
    fields = PORTAL_DOSSIER_FIELDS if entity == "dossier" else PORTAL_PROCEDURE_FIELDS
    record: dict[str, Any] = dict.fromkeys(fields, "")
    record.update(raw)
    if entity == "procedure" and record.get("MucDo") and record.get("NgayCongBo"):
        record["LichSuMucDo"] = [{"MucDo": record["MucDo"], "TuNgay": record["NgayCongBo"]}]
    return record


def _entity_of(records: Sequence[Mapping[str, Any]]) -> str:
    """Dossiers when any record has a dossier-only field; procedures when they have MaTTHC and
    TenTTHC and a procedure-only field; otherwise the file cannot be judged."""
    keys = set().union(*(r.keys() for r in records)) if records else set()
    if keys & _DOSSIER_ONLY:
        return "dossier"
    if {"MaTTHC", "TenTTHC"} <= keys or keys & _PROCEDURE_ONLY:
        return "procedure"
    if not records:
        return "dossier"
    raise UnreadableFile("entity")


# ── the catalogue ──────────────────────────────────────────────────────────────────────────────


def load_catalogue(path: Path | str, lang: str = "vi") -> set[str]:
    """Procedure codes of a catalogue file (JSON, CSV or xlsx of procedures), as the standard writes
    them. Raises UnreadableFile("catalogue")."""
    from transforms.text import code_normalise

    path = Path(path)
    try:
        read = read_file(path, entity="procedure")
    except UnreadableFile as exc:
        raise UnreadableFile("catalogue", file=path.name, detail=exc.message(lang)) from None
    codes = {code for r in read.records if (code := code_normalise(r.get("MaTTHC"), upper=True))}
    if not codes:
        raise UnreadableFile("catalogue", file=path.name, detail="no MaTTHC")
    return codes


def catalogue_from_warehouse(url: str | None = None) -> set[str]:
    """Procedure codes of the warehouse's `dim_procedure` (WAREHOUSE_URL by default)."""
    import sqlalchemy as sa

    from warehouse.db import create_engine, warehouse_url

    engine = create_engine(url or warehouse_url())
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(sa.text("SELECT procedure_code FROM dim_procedure"))}
    finally:
        engine.dispose()
