"""Renders the indicator report as a terminal table, JSON or CSV, and prepares the xlsx and HTML reports.

The xlsx workbook (`pipeline/report_xlsx.py`) and the HTML page (`pipeline/report_html.py`) share
one table model built here (`build_tables`): one table per indicator group, one row per period and
agency, a "Tổng cộng" (total) row per period. `to_unit_scheme` re-keys values broken down by
commune to the communes of the 1 July 2025 merger.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline.indicators import INDICATORS, IndicatorValue, compute_indicators, filter_values

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
COLUMNS = ["indicator", "period", "agency_code", "group_code", "dimension", "value", "unit"]
FORMATS = ("table", "json", "csv", "xlsx", "html")
BINARY_FORMATS = frozenset({"xlsx"})
UNIT_SCHEMES = ("legacy", "2025")


class ReportError(ValueError):
    """A report request that cannot be answered (unknown indicator, bad period)."""


def collect(engine: sa.Engine, *, indicator: str | None = None, period: str | None = None,
            agency: str | None = None) -> list[IndicatorValue]:
    """Indicator values after the report's filters; a full date as period is the as-of date."""
    if indicator and indicator not in INDICATORS:
        raise ReportError(f"unknown indicator {indicator!r}; known: {', '.join(INDICATORS)}")
    as_of = None
    if period and _DATE.match(period):
        try:
            as_of = date.fromisoformat(period)
        except ValueError:
            raise ReportError(f"period {period!r} is not a real date") from None
    elif period and not re.match(r"^\d{4}(-\d{2})?$", period):
        raise ReportError(f"period {period!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
    values = compute_indicators(engine, as_of=as_of)
    return filter_values(values, indicator=indicator, period=None if as_of else period, agency=agency)


def _sum(values: list[IndicatorValue], indicator: str, group: str, periods: list[str]) -> int:
    return int(sum(v.value for v in values
                   if v.indicator == indicator and v.group_code == group and v.period in periods))


def _month_range(first: str, last: str) -> list[str]:
    y, m = (int(x) for x in first.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def headline(values: list[IndicatorValue]) -> list[str]:
    """The seed article's figures, read off the computed indicators."""
    lines = []
    snapshot = [v for v in values if v.agency_code is None and v.indicator == "procedures_by_level"]
    total = next((v for v in values if v.agency_code is None and v.indicator == "procedures_total"), None)
    if total:
        by_level = {v.dimension: int(v.value) for v in snapshot}
        lines.append(f"Procedures in force on {total.period}: {int(total.value):,} — "
                     f"level 1–2: {by_level.get('level_1', 0) + by_level.get('level_2', 0):,}, "
                     f"level 3: {by_level.get('level_3', 0)}, level 4: {by_level.get('level_4', 0)}")
    grp = "online_dossiers_by_group"
    lines.append("Online business registrations (new + change, Dept. of Planning and Investment): "
                 f"2015-06…2015-12: {_sum(values, grp, 'business_registration', _month_range('2015-06', '2015-12'))}, "
                 f"2016: {_sum(values, grp, 'business_registration', ['2016'])}, "
                 f"2017-01…2017-08: {_sum(values, grp, 'business_registration', _month_range('2017-01', '2017-08'))}")
    judicial = {v.period: int(v.value) for v in values if v.indicator == grp
                and v.group_code == "judicial_record" and len(v.period) == 7}
    months = _month_range("2016-07", "2017-08")
    shown = [judicial.get(m, 0) for m in months]
    per_month = ", ".join(f"{m[2:]}:{n}" for m, n in zip(months, shown, strict=True))
    lines.append("Online judicial-record requests (Dept. of Justice), 2016-07…2017-08: "
                 f"{min(shown)}–{max(shown)} a month ({per_month})")
    lines.append("Online printing-licence dossiers (Dept. of Information and Communications), 2014-12…2017-08: "
                 f"{_sum(values, grp, 'printing_licence', _month_range('2014-12', '2017-08'))}")
    return lines


def _table(values: list[IndicatorValue]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS)
    for v in values:
        d = v.as_dict()
        table.add_row(*["" if d[c] is None else str(d[c]) for c in COLUMNS])
    buffer = io.StringIO()
    Console(file=buffer, width=140, force_terminal=False).print(table)
    return buffer.getvalue()


def quality_summary(engine: sa.Engine) -> list[str]:
    """Loaded (by source, with merged dossiers), quarantined by rule, report gaps, each stream's latest batch."""
    from pipeline.indicators import reconciliation_gaps

    lines = []
    with engine.connect() as conn:
        dossiers = conn.execute(sa.text("SELECT count(*) FROM fact_dossier")).scalar()
        procedures = conn.execute(sa.text("SELECT count(*) FROM dim_procedure")).scalar()
        by_source = conn.execute(sa.text(
            "SELECT source_system, count(*) FROM fact_dossier GROUP BY source_system ORDER BY 2 DESC")).all()
        merged = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT dossier_code FROM fact_dossier_source GROUP BY dossier_code "
            "HAVING count(DISTINCT source_system) > 1) m")).scalar()
        rules: dict[str, int] = {}
        for (text,) in conn.execute(sa.text("SELECT failed_rules FROM ops_quarantine")):
            for rule in json.loads(text):
                rules[rule] = rules.get(rule, 0) + 1
        gaps = reconciliation_gaps(conn)
        batches = conn.execute(sa.text(
            "SELECT source, stream, status, rows_read, rows_loaded, rows_quarantined, rows_deduplicated "
            "FROM ops_batch ORDER BY started_at DESC")).all()
    lines.append(f"Warehouse: {procedures:,} procedures, {dossiers:,} dossiers")
    if by_source:
        lines.append("Dossiers by the source whose record won: "
                     + ", ".join(f"{system} {n:,}" for system, n in by_source)
                     + f"; {merged:,} merged from more than one source (fact_dossier_source)")
    if rules:
        lines.append("Quarantined rows by rule: " + ", ".join(f"{r} {n}" for r, n in sorted(rules.items())))
    if gaps:
        cells = {(g.detail or {}).get("commune_code", "") + g.period for g in gaps}
        lines.append(f"Communes' reports vs dossiers: {len(gaps)} differences in {len(cells)} commune-months "
                     "(lienthong report --indicator reconciliation_gap --format json)")
    latest = {}
    for b in batches:  # newest first: the first of each stream is its latest batch
        latest.setdefault((b.source, b.stream), b)
    for b in latest.values():
        lines.append(f"  batch {b.source}.{b.stream} {b.status}: read {b.rows_read}, loaded {b.rows_loaded} "
                     f"({b.rows_deduplicated} duplicates merged), quarantined {b.rows_quarantined}")
    return lines


# ── the 2025 administrative units ──────────────────────────────────────────────────────────────

# Keys of `IndicatorValue.detail` that hold an administrative-unit code (reconciliation_gap:
# commune_code). An indicator whose values carry one of them is "broken down by unit".
UNIT_KEYS = ("commune_code", "admin_unit_code", "unit_code")


def commune_successors() -> dict[str, str]:
    """Legacy commune code → the commune it became on 1 July 2025 (warehouse.history.unit_on_scheme)."""
    import standards
    from warehouse.history import unit_on_scheme

    out = {}
    for row in standards.load_codelist("admin_units"):
        successor = unit_on_scheme(row["unit_code"], "2025") if row["unit_type"] == "commune" else None
        if successor:
            out[row["unit_code"]] = successor
    return out


def _unit_of(value: IndicatorValue) -> str | None:
    detail = value.detail or {}
    return next((str(detail[k]) for k in UNIT_KEYS if detail.get(k)), None)


def _is_additive(value: IndicatorValue) -> bool:
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


def to_unit_scheme(values: Iterable[IndicatorValue], scheme: str = "legacy",
                   successors: dict[str, str] | None = None) -> list[IndicatorValue]:
    """The values keyed by the communes of `scheme`: "legacy" (as stored) or "2025" (after the merger).

    Only values broken down by administrative unit change — those whose `detail` carries a unit
    code (UNIT_KEYS; today `reconciliation_gap`'s commune_code). Under "2025" each legacy commune
    code becomes its successor (in `detail`, in the "/"-separated parts of `dimension` and in
    `group_code`), and values that now share every key are summed, with their numeric `detail`
    fields (reported, counted). A summed `reconciliation_gap` of 0 (the merged commune's reports
    agree with its dossiers overall) gives no row, as an agreeing commune gives none. The agency
    (the legacy commune's People's Committee) is kept when every merged value had the same one,
    else it is None: the 2025 communes have no agency code in the standard yet. Ratios cannot be
    summed: a non-additive value merged from more than one legacy unit is left out.
    Other values pass through unchanged.
    """
    values = list(values)
    if scheme == "legacy":
        return values
    if scheme != "2025":
        raise ReportError(f"unknown unit scheme {scheme!r}; known: {', '.join(UNIT_SCHEMES)}")
    successors = commune_successors() if successors is None else successors
    out: list[IndicatorValue] = []
    merged: dict[tuple, list[IndicatorValue]] = {}
    for v in values:
        unit = _unit_of(v)
        if unit is None:
            out.append(v)
            continue
        new = successors.get(unit, unit)
        detail = {k: (successors.get(str(x), x) if k in UNIT_KEYS and x else x) for k, x in (v.detail or {}).items()}
        dimension = None if v.dimension is None else "/".join(
            successors.get(part, part) for part in v.dimension.split("/"))
        group = successors.get(v.group_code, v.group_code) if v.group_code else v.group_code
        mapped = replace(v, group_code=group, dimension=dimension, detail=detail)
        key = (v.indicator, v.period, v.unit, group, dimension, new,
               tuple(sorted((k, x) for k, x in detail.items() if not _is_number(x))))
        merged.setdefault(key, []).append(mapped)
    for parts in merged.values():
        first = parts[0]
        if len(parts) == 1:
            out.append(first)
            continue
        if not _is_additive(first):
            continue
        total = sum(p.value for p in parts)
        if first.indicator == "reconciliation_gap" and total == 0:
            continue
        detail = dict(first.detail or {})
        for k, x in detail.items():
            if _is_number(x):
                detail[k] = sum((p.detail or {}).get(k, 0) for p in parts)
        agencies = {p.agency_code for p in parts}
        out.append(replace(first, value=total, detail=detail,
                           agency_code=agencies.pop() if len(agencies) == 1 else None))
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# ── the table model of the xlsx and HTML reports ───────────────────────────────────────────────

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
        kind = _kind(sample.unit, _is_additive(sample))
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
        numeric = any(_is_number((v.detail or {}).get(k)) for v in part)
        cols.append(ReportColumn(_DETAIL_HEADERS.get(k, k), k, "count" if numeric else "text"))
    kind = _kind(part[0].unit, _is_additive(part[0]))
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


def agency_names(engine: sa.Engine) -> dict[str, str]:
    """Agency code → Vietnamese name (dim_agency)."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT agency_code, name FROM dim_agency")).all())


def headline_applies(indicator: str | None, period: str | None, agency: str | None) -> bool:
    """The headline figures need every indicator of every agency and month (an as-of date may vary)."""
    return not indicator and not agency and (not period or bool(_DATE.match(period)))


def render_report(*, fmt: str = "table", indicator: str | None = None, period: str | None = None,
                  agency: str | None = None, engine: sa.Engine | None = None, unit_scheme: str = "legacy",
                  out: str | Path | None = None, data_docs_url: str | None = None) -> str | bytes:
    """The report in the chosen format: text (table, json, csv, html) or bytes (xlsx).

    `unit_scheme` "2025" re-keys commune breakdowns to the merged communes (`to_unit_scheme`);
    `out` (where the report goes) lets the HTML page link Great Expectations Data Docs found
    beside it, unless `data_docs_url` names them.
    """
    from warehouse.db import create_engine, warehouse_url

    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if unit_scheme not in UNIT_SCHEMES:
        raise ReportError(f"unknown unit scheme {unit_scheme!r}; known: {', '.join(UNIT_SCHEMES)}")
    own = engine is None
    engine = engine or create_engine(warehouse_url())
    try:
        values = to_unit_scheme(collect(engine, indicator=indicator, period=period, agency=agency), unit_scheme)
        if fmt == "json":
            return json.dumps([v.as_dict() for v in values], ensure_ascii=False, indent=1) + "\n"
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(v.as_dict() for v in values)
            return buffer.getvalue()
        if fmt in ("xlsx", "html"):
            context = {
                "names": agency_names(engine),
                "headline": headline(values) if headline_applies(indicator, period, agency) else [],
                "filters": {"indicator": indicator, "period": period, "agency": agency, "unit_scheme": unit_scheme},
            }
            if fmt == "xlsx":
                from pipeline.report_xlsx import render_xlsx

                return render_xlsx(values, **context)
            from pipeline.report_html import find_data_docs, render_html

            docs = data_docs_url or find_data_docs(out)
            return render_html(values, data_docs_url=docs, **context)
        if indicator or period or agency:
            return _table(values)
        lines = ["lienthong — standard indicators (computed from the warehouse)", ""]
        lines += headline(values) + [""] + quality_summary(engine)
        lines += ["", f"{len(values):,} indicator values; `lienthong report --format json` lists them all."]
        return "\n".join(lines) + "\n"
    finally:
        if own:
            engine.dispose()
