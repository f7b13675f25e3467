"""Commune report rows (the file drop's `service_stat` records) → the standard service_stat frame."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

REPORT_COUNTS = ("received", "online", "on_time", "late", "pending")
# The largest count stored: fact_service_stat's counts are INTEGER (32 bits on PostgreSQL). No
# commune receives two billion dossiers a month; a larger cell (10^30, a pasted digit string)
# is no count, and as one it would fail the whole batch at the load instead of its row.
MAX_COUNT = 2**31 - 1


def service_stats_to_frame(records: Iterable[Mapping[str, Any]], *, first_row: int = 0) -> pd.DataFrame:
    """Commune report rows (FileDropConnector `service_stat` records) → standard service_stat frame.

    Counts become nullable Int64; a count that is not a whole number (text, a fraction, a formula
    read as its text) or is beyond ±MAX_COUNT is left empty and reported `<column>.valid_integer`,
    so the row is quarantined with its cell as read.
    """
    rows = []
    for i, record in enumerate(records):
        errors: list[str] = []
        row: dict[str, Any] = {
            "commune_code": str(record.get("commune_code") or "") or None,
            "month": str(record.get("month") or "") or None,
            "procedure_code": str(record.get("procedure_code") or "").strip() or None,
        }
        for column in REPORT_COUNTS:
            value = record.get(column)
            if value is None or value == "":
                row[column] = None
            elif isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_COUNT:
                row[column] = value
            else:
                row[column] = None
                errors.append(f"{column}.valid_integer")
        row["source_file"] = record.get("_file")
        row["_row"] = first_row + i
        row["_errors"] = errors
        row["_payload"] = json.dumps(dict(record), ensure_ascii=False, default=str)
        row["_record_key"] = "/".join(str(record.get(k) or "") for k in ("commune_code", "month", "procedure_code"))
        rows.append(row)
    columns = ["commune_code", "month", "procedure_code", *REPORT_COUNTS, "source_file",
               "_row", "_errors", "_payload", "_record_key"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in REPORT_COUNTS:
        frame[column] = frame[column].astype("Int64")
    return frame
