"""Hand-built standard frames (INTERFACES.md §3) for the warehouse tests."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
AGENCY = "000.00.04.H62"
PROCEDURE = "1.005190"
TIMES = ["received_at", "due_at", "finished_at", "returned_at", "updated_at"]
CODES = ["channel", "applicant_type", "status", "paid_online", "applicant_id_type"]


def local(*args: int) -> datetime:
    """A local (Asia/Ho_Chi_Minh) time."""
    return datetime(*args, tzinfo=LOCAL)


def code(n: int, day: str = "170105") -> str:
    return f"{AGENCY}-{day}-{n:04d}"


def dossier(
    n: int,
    row: int,
    *,
    updated: datetime,
    received: datetime | None = None,
    due: datetime | None = None,
    finished: datetime | None = None,
    status: int = 4,
    channel: int = 1,
    agency: str = AGENCY,
    procedure: str = PROCEDURE,
    fee: float | None = 50000.0,
    **extra: Any,
) -> dict[str, Any]:
    """One standard dossier row with its derived local-calendar columns and `_` columns."""
    received = received or local(2017, 1, 5, 8, 30)
    record = {"MaHoSo": code(n), "NgayCapNhat": updated.strftime("%Y%m%d%H%M%S")}
    row_dict = {
        "dossier_code": code(n),
        "procedure_code": procedure,
        "agency_code": agency,
        "admin_unit_code": "243",
        "procedure_name": "Đăng ký thành lập doanh nghiệp",
        "summary": "Hồ sơ thử",
        "channel": channel,
        "applicant_type": 2,
        "applicant_id_hash": "a" * 64,
        "applicant_id_type": 1,
        "received_at": received,
        "due_at": due,
        "finished_at": finished,
        "returned_at": None,
        "status": status,
        "fee": fee,
        "paid_online": 0,
        "updated_at": updated,
        "source_system": "national_portal",
        "source_record_id": code(n),
        "received_date": received.date(),
        "received_month": received.strftime("%Y-%m"),
        "due_date": due.date() if due else None,
        "finished_date": finished.date() if finished else None,
        "finished_month": finished.strftime("%Y-%m") if finished else None,
        "_row": row,
        "_errors": [],
        "_payload": json.dumps(record, sort_keys=True),
        "_record_key": code(n),
    }
    row_dict.update(extra)
    return row_dict


def dossier_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows → a frame with the dtypes the transforms give (tz-aware local times, Int64 codes)."""
    frame = pd.DataFrame(rows)
    for column in TIMES:
        if column in frame.columns:
            frame[column] = pd.Series(
                pd.array(list(frame[column]), dtype=pd.DatetimeTZDtype(tz=LOCAL))
            )
    for column in CODES:
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    frame["fee"] = frame["fee"].astype("float64")
    return frame


def bad_frame(rows: list[dict[str, Any]], rules: list[list[str]]) -> pd.DataFrame:
    """A quality-rejected frame: the rows plus their sorted `failed_rules`."""
    frame = dossier_frame(rows)
    frame["failed_rules"] = rules
    return frame


def events_frame(events: list[tuple[str, int, int, datetime, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(events, columns=["dossier_code", "seq", "status", "occurred_at", "note"])
    frame["occurred_at"] = pd.Series(
        pd.array(list(frame["occurred_at"]), dtype=pd.DatetimeTZDtype(tz=LOCAL))
    )
    frame["seq"] = frame["seq"].astype("Int64")
    frame["status"] = frame["status"].astype("Int64")
    return frame


def procedure(
    code_: str,
    row: int,
    *,
    levels: list[tuple[int, date]],
    updated: datetime,
    published: date = date(2010, 1, 1),
    abolished: date | None = None,
    agency: str = AGENCY,
    scope: str = "province",
) -> dict[str, Any]:
    """One standard procedure row with its level history."""
    return {
        "procedure_code": code_,
        "name": f"Thủ tục {code_}",
        "field_code": "G01",
        "field_name": "Thành lập và hoạt động doanh nghiệp",
        "agency_code": agency,
        "scope": scope,
        "fee": 100000.0,
        "processing_days": 3,
        "published_on": published,
        "abolished_on": abolished,
        "levels": [{"online_level": lvl, "valid_from": start} for lvl, start in levels],
        "updated_at": updated,
        "source_system": "national_portal",
        "source_record_id": code_,
        "_row": row,
        "_errors": [],
        "_payload": json.dumps({"MaTTHC": code_}),
        "_record_key": code_,
    }


def procedure_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["updated_at"] = pd.Series(
        pd.array(list(frame["updated_at"]), dtype=pd.DatetimeTZDtype(tz=LOCAL))
    )
    frame["processing_days"] = frame["processing_days"].astype("Int64")
    return frame
