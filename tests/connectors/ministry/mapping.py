"""The ministry's business registrations → portal-shaped dossiers, the record `transforms.portal` reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from transforms.portal import dossiers_to_frames
from transforms.timefmt import format_portal_time

# portal field (connectors.base.PORTAL_DOSSIER_FIELDS) ← ministry field, copied as they are
FIELDS = {
    "MaHoSo": "registration_id",
    "MaTTHC": "procedure_code",
    "TenTTHC": "procedure_name",
    "DonViXuLy": "office_code",
    "NoiNopHoSo": "district_code",
    "ChuHoSo": "enterprise_name",
    "TrichYeuHoSo": "summary",
    "LePhi": "fee",
}
# portal time field ← ministry ISO 8601 field, written yyyyMMddHHmmss in local time
TIMES = {
    "NgayTiepNhan": "submitted_at",
    "NgayHenTra": "due_at",
    "NgayKetThucXuLy": "decided_at",
    "NgayCapNhat": "updated_at",
}
# portal code field ← (ministry field, its values' portal codes); a value not listed passes as it
# is, for the quality gate to name (`channel.in_codelist`)
CODES = {
    "KenhThucHien": ("channel", {"counter": "1", "online": "2", "post": "3"}),
    "TrangThaiHoSo": ("status", {"received": "2", "processing": "4", "granted": "10", "refused": "3"}),
}
ENTERPRISE = "2"  # LoaiDoiTuong: every applicant of a business registration is an enterprise


def registration_to_portal(record: dict[str, Any]) -> dict[str, Any]:
    """One ministry registration as a portal dossier record ("" for what it does not say)."""
    portal: dict[str, Any] = {field: _text(record.get(name)) for field, name in FIELDS.items()}
    for field, name in TIMES.items():
        portal[field] = _portal_time(record.get(name))
    for field, (name, codes) in CODES.items():
        value = _text(record.get(name))
        portal[field] = codes.get(value, value)
    portal["LoaiDoiTuong"] = ENTERPRISE
    return portal


def registrations_to_frames(records: Sequence[dict[str, Any]], *, key: bytes, first_row: int,
                            source_system: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A chunk of registrations → standard dossier and event frames (the `StreamPlan` transform)."""
    portal = [registration_to_portal(record) for record in records]
    return dossiers_to_frames(portal, key=key, first_row=first_row, source_system=source_system)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _portal_time(value: Any) -> str:
    """ISO 8601 with an offset → yyyyMMddHHmmss local; anything else as it is (the gate flags it)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return format_portal_time(moment) if moment.tzinfo is not None else str(value)
