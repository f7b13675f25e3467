"""National-portal (DVCQG) records → standard dossier, dossier-event and procedure frames."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import numpy as np
import pandas as pd

import standards
from transforms.amounts import amount_to_dong
from transforms.identity import PseudonymKey, id_number_pseudonymise, pseudonymise
from transforms.text import code_normalise, int_code, text_normalise
from transforms.timefmt import (
    LOCAL_TZ,
    MAX_YEAR,
    MIN_YEAR,
    InvalidTime,
    local_date,
    parse_portal_time,
    parse_portal_times,
)

SOURCE_SYSTEM = "national_portal"
T = TypeVar("T")
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
TIME_YEARS = range(MIN_YEAR, MAX_YEAR + 1)
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


def payload_mask(record: dict[str, Any], key: PseudonymKey, *, summary: str | None = None,
                 hashes: dict[str, str] | None = None) -> str:
    """The source record as JSON with personal identifiers replaced by their keyed hash
    (`hmac:<hex>`, re-keyed by a key rotation) and the applicant's name masked in the summary.

    `summary`, when given, is the summary already masked; `hashes` keeps each value's hash for
    the caller (a record repeats its applicant's number in several fields).
    """
    hashes = {} if hashes is None else hashes

    def hashed(value: object) -> str:
        text = str(value)
        if text not in hashes:
            hashes[text] = pseudonymise(key, text)
        return "hmac:" + hashes[text]

    masked = dict(record)
    if masked.get("TrichYeuHoSo"):
        if summary is None:
            summary = name_mask(masked["TrichYeuHoSo"], record.get("ChuHoSo"))
        masked["TrichYeuHoSo"] = summary or ""
    for field in PERSONAL_FIELDS:
        if masked.get(field):
            masked[field] = hashed(masked[field])
    if isinstance(masked.get("DinhDanhCHS"), list):
        masked["DinhDanhCHS"] = [
            {**item, "SoDinhDanh": hashed(item.get("SoDinhDanh", ""))}
            if isinstance(item, dict) and item.get("SoDinhDanh") else item
            for item in masked["DinhDanhCHS"]
        ]
    if isinstance(masked.get("QuaTrinhXuLy"), list):
        masked["QuaTrinhXuLy"] = [_step_mask(step, key) for step in masked["QuaTrinhXuLy"]]
    return json_text(masked)


def json_text(value: Any) -> str:
    """`value` as JSON text with sorted keys, not ASCII-escaped (msgspec; `json` for what it cannot
    encode: keys that are not text)."""
    try:
        return _SORTED_JSON.encode(value).decode("utf-8")
    except (TypeError, ValueError, msgspec.EncodeError):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


_SORTED_JSON = msgspec.json.Encoder(order="sorted")


def _step_mask(step: object, key: PseudonymKey) -> object:
    if not isinstance(step, dict):
        return step
    masked = {name: "hmac:" + _officer_pseudonym(key, step[name])
              for name in STEP_PERSONAL_FIELDS if step.get(name)}
    return {**step, **masked} if masked else step


def _officer_pseudonym(key: PseudonymKey, value: object) -> str:
    """The pseudonym of a step's actor: a province has a few thousand officers, hashed once each."""
    text = str(value)
    return _cached_pseudonym(key, text) if len(text) <= 200 else pseudonymise(key, text)


@functools.lru_cache(maxsize=1 << 16)
def _cached_pseudonym(key: PseudonymKey, text: str) -> str:
    return pseudonymise(key, text)


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


def _int_code(value: object) -> tuple[int | None, bool]:
    """`int_code` of a value, refused beyond Int64 (`<column>.in_codelist`)."""
    number, ok = int_code(value)
    if not ok or (number is not None and number not in INT64):
        return None, False
    return number, True


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
        return _within_money(*_amount(total))
    fees = 0
    for item in items:
        if not isinstance(item, dict):
            return None, False
        amount, ok = _amount(item.get("Gia"))
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


def _memo(convert: Callable[[object], T], maxsize: int = 1 << 14) -> Callable[[object], T]:
    """`convert`, computed once per distinct text: codes, names and amounts repeat across records.

    Only `str` values are remembered (1, 1.0 and True are equal keys, but not the same input).
    """
    cached = functools.lru_cache(maxsize=maxsize)(convert)

    def apply(value: object) -> T:
        return cached(value) if type(value) is str else convert(value)
    return apply


_upper_code = _memo(functools.partial(code_normalise, upper=True))
_plain_code = _memo(code_normalise)
_name_text = _memo(lambda value: _free_text(text_normalise(value)))
_folded = _memo(lambda text: text.casefold() if isinstance(text, str) else text)
_code_value = _memo(_int_code)
_status_code = _memo(int_code)
_amount = _memo(amount_to_dong)


def dossiers_to_frames(records: Sequence[dict[str, Any]], *, key: PseudonymKey, first_row: int = 0,
                       source_system: str = SOURCE_SYSTEM) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A chunk of portal dossiers → (standard dossier frame, event frame).

    Column by column: a field's values are read from every record at once, times are parsed
    together (`parse_portal_times`), and what repeats across records (codes, procedure names,
    amounts, officers) is normalised once per distinct value. Every row's transform errors are
    in `_errors`, in the order: times, codes, applicant ID, fee.
    """
    n = len(records)
    if not n:
        return _empty_frames()
    errors: list[list[str]] = [[] for _ in range(n)]

    def field(name: str) -> list[Any]:
        return [record.get(name) for record in records]

    raw_codes = field("MaHoSo")
    codes = [code_normalise(value, upper=True) for value in raw_codes]
    steps = _Steps(records, codes)
    # every time of the chunk, the dossiers' and their steps', read at once
    times, invalid, days_of = parse_portal_times(
        [value for name in DOSSIER_TIMES.values() for value in field(name)] + steps.moments)
    columns: dict[str, Any] = {}
    days: dict[str, list[int | None]] = {}
    for k, column in enumerate(DOSSIER_TIMES):
        columns[column] = times.iloc[k * n:(k + 1) * n].reset_index(drop=True)
        days[column] = days_of[k * n:(k + 1) * n]
    for position in invalid:
        if position < len(DOSSIER_TIMES) * n:
            errors[position % n].append(f"{list(DOSSIER_TIMES)[position // n]}.valid_datetime")
    first_step = len(DOSSIER_TIMES) * n
    step_times = times.iloc[first_step:].reset_index(drop=True)
    step_invalid = [position - first_step for position in invalid if position >= first_step]
    for column, name in DOSSIER_CODES.items():
        values = []
        for i, (value, ok) in enumerate(map(_code_value, field(name))):
            if not ok:
                errors[i].append(f"{column}.in_codelist")
            values.append(value)
        columns[column] = pd.array(values, dtype="Int64")
    id_hashes, id_types, fees, payloads, summaries = [], [], [], [], []
    persons = [text_normalise(value) for value in field("ChuHoSo")]
    for i, record in enumerate(records):
        number = _id_number(record)
        identity = id_number_pseudonymise(key, number)
        if not identity.valid:
            errors[i].append("applicant_id.valid_format")
        id_hashes.append(identity.hash if identity.valid else None)
        id_types.append(identity.id_type)
        fee, fee_ok = _fee(record.get("DanhSachLePhi"), record.get("LePhi"))
        if not fee_ok:
            errors[i].append("fee.valid_amount")
        fees.append(np.nan if fee is None else fee)
        masked = _masked(text_normalise(record.get("TrichYeuHoSo")), persons[i])
        summaries.append(_free_text(masked))
        # a number written as bare digits is what its pseudonym hashed: the payload's is the same
        hashes = {number: identity.hash} if type(number) is str and number.isdigit() and identity.hash else {}
        payloads.append(payload_mask(record, key, summary=masked, hashes=hashes))
    keys = [key_escape(value) for value in raw_codes]
    frame = pd.DataFrame({
        "dossier_code": codes,
        "procedure_code": [_upper_code(v) for v in field("MaTTHC")],
        "agency_code": [_upper_code(v) for v in field("DonViXuLy")],
        "admin_unit_code": [_plain_code(v) for v in field("NoiNopHoSo")],
        "procedure_name": [_name_text(v) for v in field("TenTTHC")],
        "summary": summaries,
        **{column: columns[column] for column in DOSSIER_CODES},
        "applicant_id_hash": id_hashes,
        "applicant_id_type": pd.array(id_types, dtype="Int64"),
        **{column: columns[column] for column in DOSSIER_TIMES},
        "fee": np.asarray(fees, dtype=np.float64),
        "source_system": [source_system] * n,
        "source_record_id": [k or None for k in keys],
        "received_date": day_dates(days["received_at"]),
        "received_month": day_months(days["received_at"]),
        "due_date": day_dates(days["due_at"]),
        "finished_date": day_dates(days["finished_at"]),
        "finished_month": day_months(days["finished_at"]),
        "_row": range(first_row, first_row + n),
        "_errors": errors,
        "_payload": payloads,
        "_record_key": keys,
    }, columns=DOSSIER_COLUMNS)
    return frame, _event_frame(steps, step_times, step_invalid, codes, persons)


def _empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames of no dossier, typed as a chunk's are."""
    frame = pd.DataFrame(columns=DOSSIER_COLUMNS, dtype=object)
    for column in [*DOSSIER_CODES, "applicant_id_type"]:
        frame[column] = frame[column].astype("Int64")
    for column in DOSSIER_TIMES:
        frame[column] = frame[column].astype(TZ_DTYPE)
    frame["fee"] = frame["fee"].astype("float64")
    events = pd.DataFrame(columns=EVENT_COLUMNS, dtype=object)
    events[["seq", "status"]] = events[["seq", "status"]].astype("Int64")
    events["occurred_at"] = events["occurred_at"].astype(TZ_DTYPE)
    return frame, events


def _masked(clean: str | None, person: str | None) -> str | None:
    """`name_mask` of text and name already normalised; the text itself when the name is not in it."""
    if clean is None or person is None:
        return clean
    folded, target = _folded(clean), _folded(person)
    if isinstance(folded, str) and isinstance(target, str) and target and target not in folded \
            and len(folded) == len(clean) and len(target) == len(person):
        return clean  # no match can be found (the common case for a processing note)
    return name_mask(clean, person)


class _Steps:
    """The processing steps (objects of `QuaTrinhXuLy`) of a chunk's dossiers that have a code."""

    def __init__(self, records: Sequence[dict[str, Any]], codes: list[str | None]) -> None:
        self.owner: list[int] = []
        self.moments: list[Any] = []
        self.statuses: list[Any] = []
        self.notes: list[Any] = []
        for i, record in enumerate(records):
            steps = record.get("QuaTrinhXuLy")
            if not codes[i] or not isinstance(steps, list):
                continue
            for step in steps:
                if isinstance(step, dict):
                    self.owner.append(i)
                    self.moments.append(step.get("ThoiDiemXuLy"))
                    self.statuses.append(step.get("TrangThai"))
                    self.notes.append(step.get("NoiDungXuLy"))


def _event_frame(steps: _Steps, times: pd.Series, invalid: list[int], codes: list[str | None],
                 persons: list[str | None]) -> pd.DataFrame:
    """The status events of the chunk's dossiers: their readable steps (`times` parsed) in time order."""
    known = standards.codes("dossier_status")
    readable = times.notna().to_numpy(dtype=bool, copy=True)
    readable[invalid] = False
    status_values: list[int | None] = []
    for j, status in enumerate(steps.statuses):
        value, ok = _status_code(status)
        if value is None or not ok or str(value) not in known:
            readable[j] = False
        status_values.append(value)
    keep = np.flatnonzero(readable).tolist()
    owner = steps.owner
    events = pd.DataFrame({
        "_owner": np.asarray([owner[j] for j in keep], dtype=np.int64),
        "occurred_at": times.iloc[keep].reset_index(drop=True),
    })
    events["status"] = pd.array([status_values[j] for j in keep], dtype="Int64")
    events["note"] = [_step_note(steps.notes[j], persons[owner[j]]) for j in keep]
    # in time order within each dossier, steps at the same time as sent (a stable sort)
    events = events.sort_values(["_owner", "occurred_at"], kind="stable").reset_index(drop=True)
    events["dossier_code"] = [codes[i] for i in events["_owner"].tolist()]
    events["seq"] = pd.array(events.groupby("_owner").cumcount().to_numpy() + 1, dtype="Int64")
    return events[EVENT_COLUMNS]


def _step_note(note: object, person: str | None) -> str | None:
    """A step's note as free text, the applicant's name masked (notes repeat: read once each)."""
    clean, folded, free = _note_text(note)
    if person is None or clean is None:
        return free
    target = _folded(person)
    if folded is not None and isinstance(target, str) and target and len(target) == len(person) \
            and target not in folded:
        return free
    return _free_text(name_mask(clean, person))


def _read_note(note: object) -> tuple[str | None, str | None, str | None]:
    """(normalised text, its case fold when as long, free text) of a note."""
    clean = text_normalise(note)
    folded = clean.casefold() if clean is not None else None
    return clean, folded if folded is not None and clean is not None and len(folded) == len(clean) else None, \
        _free_text(clean)


_note_text = _memo(_read_note)


def day_dates(days: list[int | None]) -> list[date | None]:
    """Days since 1970-01-01 (`parse_portal_times`) as dates, None for none."""
    known = {day: _EPOCH + timedelta(days=day) for day in set(days) if day is not None}
    return [None if day is None else known[day] for day in days]


def day_months(days: list[int | None]) -> list[str | None]:
    """Days since 1970-01-01 as their `YYYY-MM` (the month grain of the reports), None for none."""
    known = {day: f"{_EPOCH + timedelta(days=day):%Y-%m}" for day in set(days) if day is not None}
    return [None if day is None else known[day] for day in days]


_EPOCH = date(1970, 1, 1)


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
