"""The portal dossier transform as it was first written, a record at a time: the oracle that
`transforms.portal.dossiers_to_frames` (column by column) is checked against."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

import standards
from transforms.amounts import amount_to_dong
from transforms.identity import PseudonymKey, id_number_pseudonymise, pseudonymise
from transforms.portal import (
    DOSSIER_CODES,
    DOSSIER_COLUMNS,
    DOSSIER_TIMES,
    EVENT_COLUMNS,
    FEE_LIMIT,
    PERSONAL_FIELDS,
    STEP_PERSONAL_FIELDS,
    TIME_YEARS,
    key_escape,
    name_mask,
)
from transforms.text import code_normalise, int_code, text_normalise
from transforms.timefmt import InvalidTime, local_date, local_month, parse_portal_time

TZ = "Asia/Ho_Chi_Minh"
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")


def _portal_time(value: object) -> datetime | None:
    """`parse_portal_time` within `TIME_YEARS`: a time outside them raises `InvalidTime` too."""
    moment = parse_portal_time(value)
    if moment is not None and moment.year not in TIME_YEARS:
        raise InvalidTime(f"{value!r} is outside the years {TIME_YEARS.start}..{TIME_YEARS.stop - 1}")
    return moment


def _free_text(text: str | None) -> str | None:
    """Normalised free text without control characters (see `_CONTROL`); None stays None."""
    return text if text is None or not _CONTROL.search(text) else text_normalise(_CONTROL.sub(" ", text))


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


def _int_code(value: object) -> tuple[int | None, bool]:
    number, ok = int_code(value)
    if not ok or (number is not None and number not in range(-(2**63), 2**63)):
        return None, False
    return number, True



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


def _time(record: dict[str, Any], field: str, column: str, errors: list[str]) -> datetime | None:
    try:
        return _portal_time(record.get(field))
    except InvalidTime:
        errors.append(f"{column}.valid_datetime")
        return None


def _code(record: dict[str, Any], field: str, column: str, errors: list[str]) -> int | None:
    value, ok = _int_code(record.get(field))
    if not ok:
        errors.append(f"{column}.in_codelist")
    return value


def dossier_to_standard(record: dict[str, Any], *, key: PseudonymKey, row: int,
                        source_system: str = "national_portal") -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
                       source_system: str = "national_portal") -> tuple[pd.DataFrame, pd.DataFrame]:
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


def _as_local_times(values: Any) -> pd.Series:
    return pd.Series(pd.array(list(values), dtype=pd.DatetimeTZDtype(tz=TZ)))
