"""Writers of the drop files: procedure catalogue and commune reports (xlsx), Justice CSV exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook

import standards
from connectors.filedrop import (
    CATALOGUE_HEADERS,
    JUSTICE_COLUMNS,
    JUSTICE_DATE_FIELDS,
    REPORT_HEADERS,
    SCOPE_NAMES,
)
from simulators.generator import fee_total
from transforms.legacy_encoding import encode_legacy

__all__ = [
    "REPORT_COUNTS",
    "commune_report_rows",
    "write_commune_report_xlsx",
    "write_justice_csv",
    "write_procedure_catalogue_xlsx",
]

REPORT_COUNTS = ("received", "online", "on_time", "late", "pending")
_REPORT_LABELS = {field: label for label, field in REPORT_HEADERS.items()}


def write_procedure_catalogue_xlsx(path: Path | str, procedures: Iterable[Mapping[str, Any]]) -> int:
    """Write portal-shaped procedures as the catalogue spreadsheet; returns the rows written.

    A title row, a blank row, then one row per procedure under `CATALOGUE_HEADERS`: the agency
    code in "Cơ quan thực hiện", the scope as "Tỉnh"/"Huyện"/"Xã", level, fee and days as numbers,
    the publication date as an Excel date.
    """
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Danh mục TTHC")
    sheet.append(["DANH MỤC THỦ TỤC HÀNH CHÍNH TỈNH VĨNH PHÚC"])
    sheet.append([])
    sheet.append(list(CATALOGUE_HEADERS))
    count = 0
    for procedure in procedures:
        row = []
        for field in CATALOGUE_HEADERS.values():
            value = procedure.get(field, "")
            if field == "CapThucHien":
                value = SCOPE_NAMES.get(str(value), value)
            elif field == "NgayCongBo":
                value = _from_portal(str(value)) or value
            elif field in ("MucDo", "PhiLePhi", "ThoiHanGiaiQuyet"):
                value = int(value) if str(value).isdigit() else value
            row.append(value)
        sheet.append(row)
        count += 1
    workbook.save(path)
    return count


def write_commune_report_xlsx(
    path: Path | str,
    commune_code: str,
    month: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    commune_name: str = "",
) -> int:
    """Write a commune's monthly report (month "YYYY-MM"); returns the procedure rows written.

    `rows` hold `procedure_code`, optionally `procedure_name`, and the counts `received`,
    `online`, `on_time`, `late`, `pending`. A title block (unit code, period) comes first, then the
    table under "STT, Mã TTHC, Tên TTHC, Tiếp nhận, Trực tuyến, Đúng hạn, Quá hạn, Đang giải
    quyết", then a "Tổng cộng" row.
    """
    year, mm = month.split("-")
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Báo cáo")
    sheet.append(["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"])
    sheet.append(["BÁO CÁO TÌNH HÌNH TIẾP NHẬN VÀ GIẢI QUYẾT THỦ TỤC HÀNH CHÍNH"])
    sheet.append([f"Đơn vị: {commune_name}".strip(), f"Mã đơn vị: {commune_code}"])
    sheet.append([f"Kỳ báo cáo: tháng {mm}/{year}"])
    sheet.append([])
    sheet.append(["STT", "Mã TTHC", "Tên TTHC", *(_REPORT_LABELS[f] for f in REPORT_COUNTS)])
    totals = dict.fromkeys(REPORT_COUNTS, 0)
    count = 0
    for count, row in enumerate(rows, start=1):
        values = [row.get(field, 0) for field in REPORT_COUNTS]
        for field, value in zip(REPORT_COUNTS, values, strict=True):
            if isinstance(value, int):
                totals[field] += value
        sheet.append([count, row["procedure_code"], row.get("procedure_name", ""), *values])
    sheet.append([None, None, "Tổng cộng", *totals.values()])
    workbook.save(path)
    return count


def commune_report_rows(dossiers: Iterable[Mapping[str, Any]], commune_code: str, month: str
                        ) -> list[dict[str, Any]]:
    """The report rows a commune would send for `month`, counted from portal-shaped dossiers.

    The rule of the reconciliation indicator (docs/reconciliation.md), so that a report written
    from the dossiers the warehouse holds reconciles with no gap: a dossier counts for the commune
    and month when it was filed there (`NoiNopHoSo`), received in the month (`NgayTiepNhan`,
    local) and its status is in the report group `received`; online = channel 2; on time =
    status group `finished` and (no due date, or finished on or before the due DATE); late =
    finished after the due date; pending = received but not finished. A dossier sent twice
    counts once, in its latest version (`NgayCapNhat`).
    """
    groups = standards.status_groups()
    stamp = month.replace("-", "")
    latest: dict[str, Mapping[str, Any]] = {}
    for dossier in dossiers:
        code = str(dossier.get("MaHoSo") or "")
        if code not in latest or str(dossier.get("NgayCapNhat") or "") >= str(latest[code].get("NgayCapNhat") or ""):
            latest[code] = dossier
    rows: dict[str, dict[str, Any]] = {}
    for dossier in latest.values():
        received = str(dossier.get("NgayTiepNhan") or "")
        status = str(dossier.get("TrangThaiHoSo") or "").strip()
        if (dossier.get("NoiNopHoSo") != commune_code or received[:6] != stamp
                or not status.isdigit() or int(status) not in groups["received"]):
            continue
        row = rows.setdefault(dossier["MaTTHC"], {
            "procedure_code": dossier["MaTTHC"], "procedure_name": dossier.get("TenTTHC", ""),
            **dict.fromkeys(REPORT_COUNTS, 0)})
        row["received"] += 1
        row["online"] += str(dossier.get("KenhThucHien") or "").strip() == "2"
        if int(status) not in groups["finished"]:
            row["pending"] += 1
            continue
        finished = str(dossier.get("NgayKetThucXuLy") or "")[:8]  # yyyyMMdd: compared by date
        due = str(dossier.get("NgayHenTra") or "")[:8]
        if not due or (finished and finished <= due):
            row["on_time"] += 1
        elif finished and finished > due:
            row["late"] += 1
    return [rows[code] for code in sorted(rows)]


def write_justice_csv(path: Path | str, dossiers: Iterable[Mapping[str, Any]], encoding: str = "tcvn3"
                      ) -> int:
    """Write portal-shaped dossiers as the Department of Justice export; returns the rows written.

    `;`-separated, `\\r\\n` line ends, header and text in `encoding` through `encode_legacy`
    ("tcvn3", "vni", also "cp1258"/"utf-8"); dates `dd/mm/yyyy HH:MM:SS` (`dd/mm/yyyy` at
    midnight); the fee as the sum of `DanhSachLePhi`. TCVN3 has no upper-case toned letters, so a
    record holding one raises `LegacyEncodingError`, as the department's software would fail.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    count = 0
    with Path(path).open("wb") as out:

        def emit(values: list[str]) -> None:
            writer.writerow(values)
            out.write(encode_legacy(buffer.getvalue(), encoding))
            buffer.seek(0)
            buffer.truncate()

        emit(list(JUSTICE_COLUMNS))
        for dossier in dossiers:
            values = []
            for field in JUSTICE_COLUMNS.values():
                value = dossier.get(field, "")
                if field == "DanhSachLePhi":
                    total = fee_total(value)  # "" when no fee is listed, "0" for a free one
                    value = "" if total is None else str(total)
                elif field in JUSTICE_DATE_FIELDS:
                    value = _to_vn_date(str(value))
                values.append(str(value))
            emit(values)
            count += 1
    return count


def _from_portal(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _to_vn_date(text: str) -> str:
    moment = _from_portal(text)
    if moment is None:
        return text
    if moment.time() == datetime.min.time():
        return moment.strftime("%d/%m/%Y")
    return moment.strftime("%d/%m/%Y %H:%M:%S")
