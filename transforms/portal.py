"""National-portal (DVCQG) records → standard dossier, dossier-event and procedure frames."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

import standards
from transforms.amounts import amount_to_dong
from transforms.identity import PseudonymKey, id_number_pseudonymise, pseudonymise
from transforms.text import code_normalise, int_code, text_normalise
from transforms.timefmt import LOCAL_TZ, InvalidTime, local_date, local_month, parse_portal_time

SOURCE_SYSTEM = "national_portal"
TZ_DTYPE = pd.DatetimeTZDtype(tz=str(LOCAL_TZ))

# Personal data that must not reach the warehouse in clear, not even in quarantine payloads
# (Decree 13/2023; docs/INTERFACES.md "Citizens' data"): kept there as their keyed hash.
PERSONAL_FIELDS = ("SoGiayToChuHoSo", "SoDienThoai", "Email", "Fax", "ChuHoSo", "MaDoiTuong")
# A processing step's actor is a person: the applicant (steps 1 and 7) or an officer.
STEP_PERSONAL_FIELDS = ("NguoiXuLy",)
# What stands for the applicant's name in free text (TrichYeuHoSo "Đề nghị … - <ChuHoSo>").
NAME_MASK = "***"
SCOPES = {"1": "province", "2": "district", "3": "commune"}
# The years a source time may name (`<column>.valid_datetime` outside them): before 1900 or from
# 2200 on, a time is a placeholder (00010101000000, 99991231235959) or a typo, never a guess to
# load; beyond 1677..2262 no pandas timestamp can even hold it.
TIME_YEARS = range(1900, 2200)
# Fees are NUMERIC(14, 2) in the warehouse: 10^12 đồng or more is no fee (`fee.valid_amount`).
FEE_LIMIT = 10**12
# The largest processing time in working days the warehouse holds (an INTEGER column).
DAYS_LIMIT = 2**31 - 1
# Integer codes travel as Int64: a number beyond it is in no code list (`<column>.in_codelist`).
INT64 = range(-(2**63), 2**63)
# Control characters other than whitespace are no text (a C string's NUL, a terminal escape), and
# PostgreSQL cannot store a NUL: in free text they are folded away like runs of spaces (text.nfc);
# in a record key they are written as escapes (\u0000), so the key stays readable and storable.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")

DOSSIER_TIMES = {
    "received_at": "NgayTiepNhan",
    "due_at": "NgayHenTra",
    "finished_at": "NgayKetThucXuLy",
    "returned_at": "NgayTra",
    "updated_at": "NgayCapNhat",
}
DOSSIER_CODES = {
    "channel": "KenhThucHien",
    "applicant_type": "LoaiDoiTuong",
    "status": "TrangThaiHoSo",
    "paid_online": "DuocThanhToanTrucTuyen",
}
DOSSIER_COLUMNS = [
    "dossier_code", "procedure_code", "agency_code", "admin_unit_code", "procedure_name", "summary",
    "channel", "applicant_type", "applicant_id_hash", "applicant_id_type",
    "received_at", "due_at", "finished_at", "returned_at", "status", "fee", "paid_online",
    "updated_at", "source_system", "source_record_id",
    "received_date", "received_month", "due_date", "finished_date", "finished_month",
    "_row", "_errors", "_payload", "_record_key",
]
EVENT_COLUMNS = ["dossier_code", "seq", "status", "occurred_at", "note"]
PROCEDURE_COLUMNS = [
    "procedure_code", "name", "field_code", "field_name", "agency_code", "scope", "fee",
    "processing_days", "published_on", "abolished_on", "levels", "updated_at",
    "source_system", "source_record_id", "_row", "_errors", "_payload", "_record_key",
]


def name_mask(text: object, name: object) -> str | None:
    """Text in NFC with folded spaces (`text_normalise`), the person `name` in it replaced by `***`.

    Rule `applicant.name_masked`: the portal's summary (TrichYeuHoSo) ends with the applicant's
    name; the warehouse keeps what a dossier asks for, never who asks. The name is matched as a
    whole word sequence, ignoring case; a name written otherwise in the text is not recognised.
    """
    clean = text_normalise(text)
    person = text_normalise(name)
    if clean is None or person is None:
        return clean
    folded, target = clean.casefold(), person.casefold()
    if not target or len(folded) != len(clean) or len(target) != len(person):  # a letter folds to several
        return name_pattern(person).sub(NAME_MASK, clean)
    # The same matches as `name_pattern` (re.sub: leftmost first, never overlapping), found with
    # str.find: compiling a pattern per applicant cost more than the rest of the transform.
    parts, done, start = [], 0, folded.find(target)
    while start != -1:
        end = start + len(target)
        if _word_at(clean, start - 1) or _word_at(clean, end):
            start = folded.find(target, start + 1)
            continue
        parts += [clean[done:start], NAME_MASK]
        done = end
        start = folded.find(target, end)
    return "".join(parts) + clean[done:] if parts else clean


def name_pattern(person: str) -> re.Pattern[str]:
    """The pattern `name_mask` applies: the name as whole words, ignoring case."""
    return re.compile(rf"(?<!\w){re.escape(person)}(?!\w)", re.IGNORECASE)


def _word_at(text: str, index: int) -> bool:
    """Whether text[index] is a word character as `re` sees one (`\\w`); False outside the text."""
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")


def payload_mask(record: dict[str, Any], key: PseudonymKey) -> str:
    """The source record as JSON with personal identifiers replaced by their keyed hash
    (`hmac:<hex>`, re-keyed by a key rotation) and the applicant's name masked in the summary."""
    masked = dict(record)
    if masked.get("TrichYeuHoSo"):
        masked["TrichYeuHoSo"] = name_mask(masked["TrichYeuHoSo"], record.get("ChuHoSo")) or ""
    for field in PERSONAL_FIELDS:
        if masked.get(field):
            masked[field] = "hmac:" + pseudonymise(key, str(masked[field]))
    if isinstance(masked.get("DinhDanhCHS"), list):
        masked["DinhDanhCHS"] = [
            {**item, "SoDinhDanh": "hmac:" + pseudonymise(key, str(item.get("SoDinhDanh", "")))}
            if isinstance(item, dict) and item.get("SoDinhDanh") else item
            for item in masked["DinhDanhCHS"]
        ]
    if isinstance(masked.get("QuaTrinhXuLy"), list):
        masked["QuaTrinhXuLy"] = [_step_mask(step, key) for step in masked["QuaTrinhXuLy"]]
    return json.dumps(masked, ensure_ascii=False, sort_keys=True)


def _step_mask(step: object, key: PseudonymKey) -> object:
    if not isinstance(step, dict):
        return step
    return {name: "hmac:" + pseudonymise(key, str(value)) if name in STEP_PERSONAL_FIELDS and value else value
            for name, value in step.items()}


def _portal_time(value: object) -> datetime | None:
    """`parse_portal_time` within `TIME_YEARS`: a time outside them raises `InvalidTime` too."""
    moment = parse_portal_time(value)
    if moment is not None and moment.year not in TIME_YEARS:
        raise InvalidTime(f"{value!r} is outside the years {TIME_YEARS.start}..{TIME_YEARS.stop - 1}")
    return moment


def _time(record: dict[str, Any], field: str, column: str, errors: list[str]) -> datetime | None:
    try:
        return _portal_time(record.get(field))
    except InvalidTime:
        errors.append(f"{column}.valid_datetime")
        return None


def _code(record: dict[str, Any], field: str, column: str, errors: list[str]) -> int | None:
    value, ok = int_code(record.get(field))
    if not ok or (value is not None and value not in INT64):
        errors.append(f"{column}.in_codelist")
        return None
    return value


def _free_text(text: str | None) -> str | None:
    """Normalised free text without control characters (see `_CONTROL`); None stays None."""
    return text if text is None or not _CONTROL.search(text) else text_normalise(_CONTROL.sub(" ", text))


def key_escape(value: object) -> str:
    """A source key as received, as text ("" for none), its control characters written as escapes.

    What names a record in the quarantine and the lineage (`_record_key`, `source_record_id`):
    readable, and storable where a NUL is not (PostgreSQL text).
    """
    text = str(value or "")
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _within_money(amount: int | None, ok: bool) -> tuple[int | None, bool]:
    """A read amount the warehouse can hold (under `FEE_LIMIT` either way), else refused."""
    if ok and amount is not None and abs(amount) >= FEE_LIMIT:
        return None, False
    return amount, ok


def _fee(items: object, total: object = None) -> tuple[int | None, bool]:
    """The total of `DanhSachLePhi` in đồng; a source without the list may give it as `LePhi`.

    (None, True) when no fee is given; (None, False) when an amount is not whole đồng as
    `amount_to_dong` reads it, or the fees reach `FEE_LIMIT`: the row is quarantined
    (`fee.valid_amount`), never loaded with a guessed fee. An item with an empty `Gia` adds nothing.
    """
    if not isinstance(items, list) or not items:
        return _within_money(*amount_to_dong(total))
    fees = 0
    for item in items:
        if not isinstance(item, dict):
            return None, False
        amount, ok = amount_to_dong(item.get("Gia"))
        if not ok:
            return None, False
        fees += amount or 0
    return _within_money(fees, True)


def _id_number(record: dict[str, Any]) -> object:
    """The applicant's ID number: DinhDanhCHS first (newer field), SoGiayToChuHoSo otherwise."""
    ids = record.get("DinhDanhCHS")
    if isinstance(ids, list):
        for item in ids:
            if isinstance(item, dict) and str(item.get("SoDinhDanh", "")).strip():
                return item["SoDinhDanh"]
    return record.get("SoGiayToChuHoSo")


def dossier_to_standard(record: dict[str, Any], *, key: PseudonymKey, row: int,
                        source_system: str = SOURCE_SYSTEM) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One portal dossier → (standard dossier row, its status events)."""
    errors: list[str] = []
    times = {col: _time(record, field, col, errors) for col, field in DOSSIER_TIMES.items()}
    codes = {col: _code(record, field, col, errors) for col, field in DOSSIER_CODES.items()}
    identity = id_number_pseudonymise(key, _id_number(record))
    if not identity.valid:
        errors.append("applicant_id.valid_format")
    fee, fee_ok = _fee(record.get("DanhSachLePhi"), record.get("LePhi"))
    if not fee_ok:
        errors.append("fee.valid_amount")
    raw_key = key_escape(record.get("MaHoSo"))
    dossier_code = code_normalise(record.get("MaHoSo"), upper=True)
    out = {
        "dossier_code": dossier_code,
        "procedure_code": code_normalise(record.get("MaTTHC"), upper=True),
        "agency_code": code_normalise(record.get("DonViXuLy"), upper=True),
        "admin_unit_code": code_normalise(record.get("NoiNopHoSo")),
        "procedure_name": _free_text(text_normalise(record.get("TenTTHC"))),
        "summary": _free_text(name_mask(record.get("TrichYeuHoSo"), record.get("ChuHoSo"))),
        **codes,
        "applicant_id_hash": identity.hash if identity.valid else None,
        "applicant_id_type": identity.id_type,
        **times,
        "fee": fee,
        "source_system": source_system,
        "source_record_id": raw_key or None,
        "received_date": local_date(times["received_at"]),
        "received_month": local_month(times["received_at"]),
        "due_date": local_date(times["due_at"]),
        "finished_date": local_date(times["finished_at"]),
        "finished_month": local_month(times["finished_at"]),
        "_row": row,
        "_errors": errors,
        "_payload": payload_mask(record, key),
        "_record_key": raw_key,
    }
    return out, _events(record, dossier_code)


def _events(record: dict[str, Any], dossier_code: str | None) -> list[dict[str, Any]]:
    steps = record.get("QuaTrinhXuLy")
    if not dossier_code or not isinstance(steps, list):
        return []
    parsed = []
    statuses = standards.codes("dossier_status")
    for step in steps:
        if not isinstance(step, dict):
            continue
        try:
            moment = _portal_time(step.get("ThoiDiemXuLy"))
        except InvalidTime:
            moment = None
        status, ok = int_code(step.get("TrangThai"))
        if moment is None or status is None or not ok or str(status) not in statuses:
            continue  # an unreadable step is kept in the payload, not as an event
        parsed.append((moment, status, _free_text(name_mask(step.get("NoiDungXuLy"), record.get("ChuHoSo")))))
    parsed.sort(key=lambda item: item[0])
    return [{"dossier_code": dossier_code, "seq": i, "status": s, "occurred_at": m, "note": n}
            for i, (m, s, n) in enumerate(parsed, start=1)]


def dossiers_to_frames(records: Sequence[dict[str, Any]], *, key: PseudonymKey, first_row: int = 0,
                       source_system: str = SOURCE_SYSTEM) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A chunk of portal dossiers → (standard dossier frame, event frame)."""
    rows, events = [], []
    for offset, record in enumerate(records):
        row, row_events = dossier_to_standard(record, key=key, row=first_row + offset,
                                              source_system=source_system)
        rows.append(row)
        events.extend(row_events)
    frame = pd.DataFrame(rows, columns=DOSSIER_COLUMNS)
    for column in DOSSIER_TIMES:
        frame[column] = _as_local_times(frame[column])
    for column in DOSSIER_CODES:
        frame[column] = frame[column].astype("Int64")
    frame["applicant_id_type"] = frame["applicant_id_type"].astype("Int64")
    frame["fee"] = frame["fee"].astype("float64")
    event_frame = pd.DataFrame(events, columns=EVENT_COLUMNS)
    event_frame["occurred_at"] = _as_local_times(event_frame["occurred_at"])
    event_frame["status"] = event_frame["status"].astype("Int64")
    event_frame["seq"] = event_frame["seq"].astype("Int64")
    return frame, event_frame


def _as_local_times(values: Iterable[datetime | None]) -> pd.Series:
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert(TZ_DTYPE.tz).astype(TZ_DTYPE)  # pandas already typed it
    return pd.Series(pd.array(list(values), dtype=TZ_DTYPE))


def procedure_to_standard(record: dict[str, Any], *, row: int,
                          source_system: str = SOURCE_SYSTEM, key: bytes = b"") -> dict[str, Any]:
    """One portal procedure (LayDanhSachTTHC) → a standard procedure row with its level history."""
    errors: list[str] = []
    published = _time(record, "NgayCongBo", "published_on", errors)
    abolished = _time(record, "NgayBaiBo", "abolished_on", errors)
    updated = _time(record, "NgayCapNhat", "updated_at", errors)
    scope_raw = code_normalise(record.get("CapThucHien"))
    scope = SCOPES.get(scope_raw or "")
    if scope_raw and scope is None:
        errors.append("scope.in_codelist")
    fee, fee_ok = _within_money(*amount_to_dong(record.get("PhiLePhi")))
    days, days_ok = int_code(record.get("ThoiHanGiaiQuyet"))
    if not fee_ok:
        errors.append("fee.valid_amount")
    if days is not None and days > DAYS_LIMIT:
        days_ok = False
    if not days_ok:
        errors.append("processing_days.valid_number")
    levels: list[dict[str, Any]] = []
    online_levels = standards.codes("online_level")
    history = record.get("LichSuMucDo") or []
    for item in history if isinstance(history, list) else []:
        level, ok = int_code(item.get("MucDo") if isinstance(item, dict) else None)
        try:
            start = _portal_time(item.get("TuNgay")) if isinstance(item, dict) else None
        except InvalidTime:
            start = None
        if level is None or not ok or start is None or str(level) not in online_levels:
            errors.append("levels.valid_history")
            continue
        levels.append({"online_level": level, "valid_from": local_date(start)})
    if not levels:
        current, ok = int_code(record.get("MucDo"))
        if current is not None and ok and published is not None:
            # No history sent: the current level is taken to hold since publication.
            levels.append({"online_level": current, "valid_from": local_date(published)})
    levels.sort(key=lambda item: item["valid_from"])
    raw_key = key_escape(record.get("MaTTHC"))
    return {
        "procedure_code": code_normalise(record.get("MaTTHC"), upper=True),
        "name": _free_text(text_normalise(record.get("TenTTHC"))),
        "field_code": code_normalise(record.get("MaLinhVuc")),
        "field_name": _free_text(text_normalise(record.get("TenLinhVuc"))),
        "agency_code": code_normalise(record.get("MaCoQuanThucHien"), upper=True),
        "scope": scope,
        "fee": fee,
        "processing_days": days if days_ok else None,
        "published_on": local_date(published),
        "abolished_on": local_date(abolished),
        "levels": levels,
        "updated_at": updated,
        "source_system": source_system,
        "source_record_id": raw_key or None,
        "_row": row,
        "_errors": errors,
        "_payload": json.dumps(record, ensure_ascii=False, sort_keys=True),
        "_record_key": raw_key,
    }


def procedures_to_frame(records: Sequence[dict[str, Any]], *, first_row: int = 0,
                        source_system: str = SOURCE_SYSTEM) -> pd.DataFrame:
    """A chunk of portal procedures → a standard procedure frame."""
    rows = [procedure_to_standard(r, row=first_row + i, source_system=source_system)
            for i, r in enumerate(records)]
    frame = pd.DataFrame(rows, columns=PROCEDURE_COLUMNS)
    frame["updated_at"] = _as_local_times(frame["updated_at"])
    frame["processing_days"] = frame["processing_days"].astype("Int64")
    frame["fee"] = frame["fee"].astype("float64")
    return frame
