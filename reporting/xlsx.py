"""Writes the indicator report as an xlsx workbook shaped like the provincial report.

A "Tóm tắt" (summary) sheet with the headline figures, then one sheet per indicator group
(`reporting.tables.build_tables`): a title row, a Vietnamese header row (frozen, with the period and
agency columns), one row per period and agency and a bold "Tổng cộng" row per period. Counts are
formatted `#,##0`; percentages are kept as stored (0–100, the header says "(%)") and formatted
`0.0`. Text from the sources (agency names, codes, breakdowns) that a spreadsheet would read as a
formula — beginning with `=`, `+`, `-`, `@`, a tab or a carriage return — is written as a text cell
with the quote-prefix style, never as a formula.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import Cell, MergedCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reporting.indicators import IndicatorValue
from reporting.tables import ReportTable, build_tables

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NUMBER_FORMATS = {"count": "#,##0", "percent": "0.0", "number": "#,##0.0#"}
SUMMARY_SHEET = "Tóm tắt"

_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_TOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")
_THIN = Side(style="thin", color="A6A6A6")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=13)
_INVALID_SHEET_CHARS = str.maketrans({c: " " for c in "[]:*?/\\"})


def write_cell(cell: Cell | MergedCell, value: Any) -> Cell:
    """Set a cell's value; a string a spreadsheet would run as a formula stays literal text."""
    if isinstance(cell, MergedCell):  # the report merges no cells: writing into one is a bug
        raise ValueError(f"cell {cell.coordinate} is merged: it holds no value")
    cell.value = value
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        # openpyxl makes "=…" a formula: force a string cell, and quote-prefix it so that Excel
        # and LibreOffice keep it as text even after the cell is edited.
        cell.data_type = "s"
        cell.quotePrefix = True
    return cell


def sheet_title(title: str, taken: set[str]) -> str:
    """A valid, unique worksheet name (at most 31 characters, none of []:*?/\\)."""
    base = title.translate(_INVALID_SHEET_CHARS).strip()[:31] or "Sheet"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[:31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _filters_line(filters: dict[str, str | None]) -> str:
    shown = [f"{k}={v}" for k, v in filters.items() if v]
    return ", ".join(shown) if shown else "—"


def _summary(ws: Worksheet, headline: list[str], filters: dict[str, str | None], tables: list[ReportTable],
             values: list[IndicatorValue]) -> None:
    write_cell(ws.cell(1, 1), "BÁO CÁO CHỈ TIÊU DỊCH VỤ CÔNG — TÓM TẮT").font = _TITLE
    write_cell(ws.cell(2, 1), "Standard e-government indicators, computed from the warehouse (lienthong)")
    row = 4
    for label, text in [("Thời điểm lập", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
                        ("Bộ lọc / filters", _filters_line(filters)),
                        ("Số giá trị chỉ tiêu", f"{len(values):,}")]:
        write_cell(ws.cell(row, 1), label).font = _BOLD
        write_cell(ws.cell(row, 2), text)
        row += 1
    row += 1
    write_cell(ws.cell(row, 1), "Số liệu chính / Headline figures").font = _BOLD
    row += 1
    for line in headline or ["(chỉ có khi không lọc theo chỉ tiêu, cơ quan hay kỳ — "
                             "only without an indicator, agency or period filter)"]:
        write_cell(ws.cell(row, 1), line)
        row += 1
    row += 1
    write_cell(ws.cell(row, 1), "Các trang / Sheets").font = _BOLD
    for table in tables:
        row += 1
        write_cell(ws.cell(row, 1), table.title)
        write_cell(ws.cell(row, 2), f"{table.title_en}: {len(table.rows):,} rows")
    ws.column_dimensions["A"].width = 48
    ws.column_dimensions["B"].width = 60


def _table_sheet(ws: Worksheet, table: ReportTable) -> None:
    write_cell(ws.cell(1, 1), f"{table.title.upper()} — {table.title_en}").font = _TITLE
    widths = []
    for col, column in enumerate(table.columns, start=1):
        cell = write_cell(ws.cell(2, col), column.header)
        cell.font, cell.fill, cell.border = _BOLD, _HEADER_FILL, _BORDER
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
        widths.append(min(max(12, len(column.header) // 2 + 4), 40) if col > table.key_columns else 12)
    for r, row in enumerate(table.rows, start=3):
        for col, value in enumerate(row.cells, start=1):
            column = table.columns[col - 1]
            cell = write_cell(ws.cell(r, col), value)
            if column.kind in NUMBER_FORMATS:
                cell.number_format = NUMBER_FORMATS[column.kind]
            elif value is not None:
                widths[col - 1] = min(max(widths[col - 1], len(str(value)) + 2), 60)
            if row.is_total:
                cell.font, cell.fill = _BOLD, _TOTAL_FILL
    ws.row_dimensions[2].height = 60
    for col, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(col)].width = width
    ws.freeze_panes = ws.cell(3, table.key_columns + 1).coordinate
    if table.rows:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(table.columns))}{len(table.rows) + 2}"


def build_workbook(values: list[IndicatorValue], *, names: dict[str, str] | None = None,
                   tables: list[ReportTable] | None = None, headline: list[str] | None = None,
                   filters: dict[str, str | None] | None = None) -> Workbook:
    """The workbook: the summary sheet, then one sheet per indicator group (`tables`, built from
    `values` when not given)."""
    tables = build_tables(values, names) if tables is None else tables
    wb = Workbook()
    taken: set[str] = set()
    summary = wb.active
    assert isinstance(summary, Worksheet)  # a new workbook's one sheet
    summary.title = sheet_title(SUMMARY_SHEET, taken)
    _summary(summary, headline or [], filters or {}, tables, values)
    for table in tables:
        _table_sheet(wb.create_sheet(sheet_title(table.title, taken)), table)
    return wb


def render_xlsx(values: list[IndicatorValue], *, names: dict[str, str] | None = None,
                tables: list[ReportTable] | None = None, headline: list[str] | None = None,
                filters: dict[str, str | None] | None = None) -> bytes:
    """The workbook as xlsx bytes."""
    buffer = io.BytesIO()
    build_workbook(values, names=names, tables=tables, headline=headline, filters=filters).save(buffer)
    return buffer.getvalue()
