"""The table model of the xlsx and HTML reports: one table per indicator group, built from the values.

The renderers (`reporting/xlsx.py`, `reporting/html.py`) take these tables; they import this module
and the indicators, never the report module that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reporting.indicators import INDICATORS, IndicatorValue

# Units whose values add up over agencies (a total row sums them); an IndicatorDef may say so
# itself with an `additive` attribute. Percentages never add up: their total is the province's
# own value (the ratio of the province's totals) or blank.
COUNT_UNITS = frozenset({"procedures", "dossiers", "count", "reports", "applicants", "units"})
ADDITIVE_MEASURES = frozenset({"count", "count_distinct", "sum"})
PERCENT_UNITS = frozenset({"percent", "%"})
TOTAL_LABEL = "Tổng cộng"
# More (group, dimension) columns than this and a group is listed one value per row instead.
MAX_WIDE_COLUMNS = 16

# Sheet of each indicator when its definition has no `group`: key → (Vietnamese, English title);
# an indicator goes to the sheet of the first prefix of its id below, else a sheet of its own.
SHEETS: dict[str, tuple[str, str]] = {
    "procedures": ("Thủ tục hành chính", "Administrative procedures"),
    "procedures_used": ("TTHC trực tuyến có hồ sơ", "Online procedures in use"),
    "received": ("Tiếp nhận hồ sơ", "Dossiers received"),
    "online_groups": ("Trực tuyến theo nhóm TTHC", "Online dossiers by procedure group"),
    "finished": ("Giải quyết hồ sơ", "Dossiers finished"),
    "in_progress": ("Hồ sơ đang giải quyết", "Dossiers in progress"),
    "d766": ("Điểm QĐ 766", "Decision 766 scores"),
    "reconciliation": ("Đối soát báo cáo xã", "Commune reports vs dossiers"),
}
_SHEET_PREFIXES = [
    ("procedures_online_used", "procedures_used"), ("procedures_", "procedures"),
    ("online_dossiers_by_group", "online_groups"), ("dossiers_received", "received"), ("online_", "received"),
    ("dossiers_finished", "finished"), ("finished_", "finished"), ("in_progress_", "in_progress"),
    ("d766_", "d766"), ("reconciliation_", "reconciliation"),
]
_DETAIL_HEADERS = {
    "commune_code": "Mã xã", "procedure_code": "Mã thủ tục", "measure": "Chỉ số",
    "reported": "Xã báo cáo", "counted": "Kho dữ liệu", "month": "Tháng",
}


@dataclass
class ReportColumn:
    """One column: Vietnamese header, English subtitle, and kind: text | count | percent | number."""

    header: str
    header_en: str
    kind: str = "text"


@dataclass
class ReportRow:
    cells: list[Any]
    is_total: bool = False


@dataclass
class ReportTable:
    """One indicator group: a sheet of the workbook, a table of the HTML page."""

    key: str
    title: str
    title_en: str
    columns: list[ReportColumn]
    rows: list[ReportRow] = field(default_factory=list)
    key_columns: int = 3  # period, agency code, agency name: frozen in the workbook


def indicator_name(indicator: str, lang: str = "vi") -> str:
    """The indicator's name (standard's definition), or its id."""
    defn = INDICATORS.get(indicator)
    return getattr(defn, "name_vi" if lang == "vi" else "name_en", None) or indicator


def sheet_key(indicator: str) -> str:
    """The group (sheet) of an indicator: its definition's `group`, else by its id's prefix, else its id."""
    defn = INDICATORS.get(indicator)
    group = getattr(defn, "group", None) or (getattr(defn, "definition", None) or {}).get("group")
    if group:
        return str(group)
    return next((key for prefix, key in _SHEET_PREFIXES if indicator.startswith(prefix)), indicator)


def code_labels() -> dict[str, tuple[str, str]]:
    """Vietnamese and English labels of breakdown codes, from the standard's code lists."""
    import standards

    labels: dict[str, tuple[str, str]] = {}
    for row in standards.load_codelist("online_level"):
        labels[f"level_{row['code']}"] = (row["name_vi"].split(":")[0], row["name_en"].split(":")[0])
    for row in standards.load_codelist("decree42_level"):
        labels[row["code"]] = (row["name_vi"], row["name_en"])
    labels.setdefault("not_online", ("Chưa trực tuyến", "Not online"))
    for row in standards.load_codelist("channel"):
        labels[f"channel_{row['code']}"] = (row["name_vi"], row["name_en"])
    groups: dict[str, list[dict[str, str]]] = {}
    for row in standards.load_codelist("procedure_groups"):
        groups.setdefault(row["group_code"], []).append(row)
    for code, rows in groups.items():
        labels[code] = (" / ".join(r["name_vi"] for r in rows), " / ".join(r["name_en"] for r in rows))
    return labels


def _kind(unit: str, additive: bool) -> str:
    if unit in PERCENT_UNITS:
        return "percent"
    return "count" if additive else "number"


def _period_order(period: str) -> tuple[str, int, str]:
    # a year's months first, then the year's own row; as-of dates sort with their year
    return (period[:4], 0 if len(period) != 4 else 1, period)


def build_tables(values: list[IndicatorValue], agency_names: dict[str, str] | None = None) -> list[ReportTable]:
    """One table per indicator group, in the standard's indicator order.

    Wide tables (a column per indicator and breakdown) have one row per period and agency and a
    "Tổng cộng" row per period: the province's own value where the indicator has one (for a
    percentage, the ratio of the province's totals), else the sum of the agencies' values for
    counts, else blank. A group with more breakdowns than MAX_WIDE_COLUMNS (reconciliation_gap: a
    value per commune, procedure and measure) is listed one value per row, without a total row
    (its values are signed differences of different measures).
    """
    names = agency_names or {}
    labels = code_labels()
    order = {ind: i for i, ind in enumerate(INDICATORS)}
    by_sheet: dict[str, list[IndicatorValue]] = {}
    for v in sorted(values, key=lambda v: order.get(v.indicator, len(order))):
        by_sheet.setdefault(sheet_key(v.indicator), []).append(v)
    tables = []
    for key, part in by_sheet.items():
        indicators = list(dict.fromkeys(v.indicator for v in part))
        default = (indicator_name(indicators[0]), indicator_name(indicators[0], "en")) \
            if len(indicators) == 1 else (key, key)
        title, title_en = SHEETS.get(key, default)
        columns = list(dict.fromkeys((v.indicator, v.group_code, v.dimension) for v in part))
        if len(columns) > MAX_WIDE_COLUMNS:
            tables.append(_long_table(key, title, title_en, part, names, labels))
        else:
            tables.append(_wide_table(key, title, title_en, part, columns, names, labels))
    return tables


def _key_columns() -> list[ReportColumn]:
    return [ReportColumn("Kỳ báo cáo", "Period"), ReportColumn("Mã cơ quan", "Agency code"),
            ReportColumn("Tên cơ quan", "Agency")]


def _wide_table(key: str, title: str, title_en: str, part: list[IndicatorValue], columns: list[tuple],
                names: dict[str, str], labels: dict[str, tuple[str, str]]) -> ReportTable:
    cols = _key_columns()
    kinds = []
    for indicator, group, dimension in columns:
        sample = next(v for v in part if (v.indicator, v.group_code, v.dimension) == (indicator, group, dimension))
        kind = _kind(sample.unit, is_additive(sample))
        kinds.append(kind)
        vi, en = indicator_name(indicator), indicator_name(indicator, "en")
        for code in (group, dimension):
            if code:
                vi += f" — {labels.get(code, (code, code))[0]}"
                en += f" — {labels.get(code, (code, code))[1]}"
        cols.append(ReportColumn(vi + (" (%)" if kind == "percent" else ""), en, kind))
    index = {c: i for i, c in enumerate(columns)}
    cells: dict[tuple[str, str | None], list[Any]] = {}
    for v in part:
        row = cells.setdefault((v.period, v.agency_code), [None] * len(columns))
        row[index[(v.indicator, v.group_code, v.dimension)]] = _number(v.value)
    table = ReportTable(key, title, title_en, cols)
    for period in sorted({p for p, _ in cells}, key=_period_order):
        agencies = sorted(a for p, a in cells if p == period and a is not None)
        for agency in agencies:
            table.rows.append(ReportRow([period, agency, names.get(agency, ""), *cells[(period, agency)]]))
        province = cells.get((period, None), [None] * len(columns))
        total = []
        for i, kind in enumerate(kinds):
            if province[i] is not None:
                total.append(province[i])
            elif kind == "count":
                found = [cells[(period, a)][i] for a in agencies if cells[(period, a)][i] is not None]
                total.append(sum(found) if found else None)
            else:
                total.append(None)
        table.rows.append(ReportRow([period, "", TOTAL_LABEL, *total], is_total=True))
    return table


def _long_table(key: str, title: str, title_en: str, part: list[IndicatorValue], names: dict[str, str],
                labels: dict[str, tuple[str, str]]) -> ReportTable:
    detail_keys = [k for k in dict.fromkeys(k for v in part for k in (v.detail or {})) if k != "month"]
    cols = _key_columns() + [ReportColumn("Chỉ tiêu", "Indicator"), ReportColumn("Nhóm", "Group"),
                             ReportColumn("Phân tổ", "Breakdown")]
    for k in detail_keys:
        numeric = any(is_number((v.detail or {}).get(k)) for v in part)
        cols.append(ReportColumn(_DETAIL_HEADERS.get(k, k), k, "count" if numeric else "text"))
    kind = _kind(part[0].unit, is_additive(part[0]))
    cols.append(ReportColumn("Giá trị" + (" (%)" if kind == "percent" else ""), "Value", kind))
    table = ReportTable(key, title, title_en, cols)
    for v in sorted(part, key=lambda v: (_period_order(v.period), v.agency_code or "", v.group_code or "",
                                         v.dimension or "")):
        detail = v.detail or {}
        table.rows.append(ReportRow([
            v.period, v.agency_code or "", names.get(v.agency_code or "", ""), indicator_name(v.indicator),
            v.group_code or "", v.dimension or "", *[detail.get(k) for k in detail_keys], _number(v.value)]))
    return table


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def is_additive(value: IndicatorValue) -> bool:
    """Whether values of this indicator add up over agencies or units: its definition's `additive`,
    else its formula's measure (count, count_distinct: yes; ratio: no), else its unit (COUNT_UNITS)."""
    defn = INDICATORS.get(value.indicator)
    additive = getattr(defn, "additive", None)
    if additive is not None:
        return bool(additive)
    measure = ((getattr(defn, "definition", None) or {}).get("formula") or {}).get("measure")
    if measure:
        return measure in ADDITIVE_MEASURES
    return value.unit in COUNT_UNITS
