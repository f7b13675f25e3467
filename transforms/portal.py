"""National-portal (DVCQG) records → standard dossier, dossier-event and procedure frames."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from transforms.amounts import amount_to_dong
from transforms.identity import id_number_pseudonymise, pseudonymise
from transforms.text import code_normalise, int_code, text_normalise
from transforms.timefmt import LOCAL_TZ, InvalidTime, local_date, local_month, parse_portal_time

SOURCE_SYSTEM = "national_portal"
TZ_DTYPE = pd.DatetimeTZDtype(tz=str(LOCAL_TZ))

# Personal data that must not reach the warehouse in clear, not even in quarantine payloads.
PERSONAL_FIELDS = ("SoGiayToChuHoSo", "SoDienThoai", "Email", "Fax")
SCOPES = {"1": "province", "2": "district", "3": "commune"}

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


def payload_mask(record: dict[str, Any], key: bytes) -> str:
    """The source record as JSON with personal identifiers replaced by their keyed hash."""
    masked = dict(record)
    for field in PERSONAL_FIELDS:
        if masked.get(field):
            masked[field] = "hmac:" + pseudonymise(key, str(masked[field]))
    if isinstance(masked.get("DinhDanhCHS"), list):
        masked["DinhDanhCHS"] = [
            {**item, "SoDinhDanh": "hmac:" + pseudonymise(key, str(item.get("SoDinhDanh", "")))}
            if isinstance(item, dict) and item.get("SoDinhDanh") else item
            for item in masked["DinhDanhCHS"]
        ]
    return json.dumps(masked, ensure_ascii=False, sort_keys=True)


def _time(record: dict[str, Any], field: str, column: str, errors: list[str]) -> datetime | None:
    try:
        return parse_portal_time(record.get(field))
    except InvalidTime:
        errors.append(f"{column}.valid_datetime")
        return None


def _code(record: dict[str, Any], field: str, column: str, errors: list[str]) -> int | None:
    value, ok = int_code(record.get(field))
    if not ok:
        errors.append(f"{column}.in_codelist")
    return value


def _fee(items: object, total: object = None) -> tuple[int | None, bool]:
    """The total of `DanhSachLePhi` in đồng; a source without the list may give it as `LePhi`.

    (None, True) when no fee is given; (None, False) when an amount is not whole đồng as
    `amount_to_dong` reads it: the row is quarantined (`fee.valid_amount`), never loaded with a
    guessed fee. An item with an empty `Gia` adds nothing.
    """
    if not isinstance(items, list) or not items:
        return amount_to_dong(total)
    fees = 0
    for item in items:
        if not isinstance(item, dict):
            return None, False
        amount, ok = amount_to_dong(item.get("Gia"))
        if not ok:
            return None, False
        fees += amount or 0
    return fees, True


def _id_number(record: dict[str, Any]) -> object:
    """The applicant's ID number: DinhDanhCHS first (newer field), SoGiayToChuHoSo otherwise."""
    ids = record.get("DinhDanhCHS")
    if isinstance(ids, list):
        for item in ids:
            if isinstance(item, dict) and str(item.get("SoDinhDanh", "")).strip():
                return item["SoDinhDanh"]
    return record.get("SoGiayToChuHoSo")


def dossier_to_standard(record: dict[str, Any], *, key: bytes, row: int,
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
    raw_key = str(record.get("MaHoSo") or "")
    dossier_code = code_normalise(record.get("MaHoSo"), upper=True)
    out = {
        "dossier_code": dossier_code,
        "procedure_code": code_normalise(record.get("MaTTHC"), upper=True),
        "agency_code": code_normalise(record.get("DonViXuLy"), upper=True),
        "admin_unit_code": code_normalise(record.get("NoiNopHoSo")),
        "procedure_name": text_normalise(record.get("TenTTHC")),
        "summary": text_normalise(record.get("TrichYeuHoSo")),
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
    for step in steps:
        if not isinstance(step, dict):
            continue
        try:
            moment = parse_portal_time(step.get("ThoiDiemXuLy"))
        except InvalidTime:
            moment = None
        status, ok = int_code(step.get("TrangThai"))
        if moment is None or status is None or not ok:
            continue  # an unreadable step is kept in the payload, not as an event
        parsed.append((moment, status, text_normalise(step.get("NoiDungXuLy"))))
    parsed.sort(key=lambda item: item[0])
    return [{"dossier_code": dossier_code, "seq": i, "status": s, "occurred_at": m, "note": n}
            for i, (m, s, n) in enumerate(parsed, start=1)]


def dossiers_to_frames(records: Sequence[dict[str, Any]], *, key: bytes, first_row: int = 0,
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
    fee, fee_ok = amount_to_dong(record.get("PhiLePhi"))
    days, days_ok = int_code(record.get("ThoiHanGiaiQuyet"))
    if not fee_ok:
        errors.append("fee.valid_amount")
    if not days_ok:
        errors.append("processing_days.valid_number")
    levels: list[dict[str, Any]] = []
    history = record.get("LichSuMucDo") or []
    for item in history if isinstance(history, list) else []:
        level, ok = int_code(item.get("MucDo") if isinstance(item, dict) else None)
        try:
            start = parse_portal_time(item.get("TuNgay")) if isinstance(item, dict) else None
        except InvalidTime:
            start = None
        if level is None or not ok or start is None:
            errors.append("levels.valid_history")
            continue
        levels.append({"online_level": level, "valid_from": local_date(start)})
    if not levels:
        current, ok = int_code(record.get("MucDo"))
        if current is not None and ok and published is not None:
            # No history sent: the current level is taken to hold since publication.
            levels.append({"online_level": current, "valid_from": local_date(published)})
    levels.sort(key=lambda item: item["valid_from"])
    raw_key = str(record.get("MaTTHC") or "")
    return {
        "procedure_code": code_normalise(record.get("MaTTHC"), upper=True),
        "name": text_normalise(record.get("TenTTHC")),
        "field_code": code_normalise(record.get("MaLinhVuc")),
        "field_name": text_normalise(record.get("TenLinhVuc")),
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
