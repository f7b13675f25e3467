"""The indicator report: collects the values, renders a terminal table, JSON or CSV, and hands the
tables of `reporting/tables.py` to the xlsx (`reporting/xlsx.py`) and HTML (`reporting/html.py`)
renderers. `to_unit_scheme` re-keys values broken down by commune to the communes of the 1 July
2025 merger.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporting.indicators import INDICATORS, IndicatorValue, compute_indicators, filter_values
from reporting.tables import build_tables, is_additive, is_number

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
    from reporting.indicators import reconciliation_gaps

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
    latest: dict[tuple[str, str], sa.Row[Any]] = {}
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
               tuple(sorted((k, x) for k, x in detail.items() if not is_number(x))))
        merged.setdefault(key, []).append(mapped)
    for parts in merged.values():
        first = parts[0]
        if len(parts) == 1:
            out.append(first)
            continue
        if not is_additive(first):
            continue
        total = sum(p.value for p in parts)
        if first.indicator == "reconciliation_gap" and total == 0:
            continue
        detail = dict(first.detail or {})
        for k, x in detail.items():
            if is_number(x):
                detail[k] = sum((p.detail or {}).get(k, 0) for p in parts)
        agencies = {p.agency_code for p in parts}
        out.append(replace(first, value=total, detail=detail,
                           agency_code=agencies.pop() if len(agencies) == 1 else None))
    return out


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
            names = agency_names(engine)
            tables = build_tables(values, names)
            figures = headline(values) if headline_applies(indicator, period, agency) else []
            filters = {"indicator": indicator, "period": period, "agency": agency, "unit_scheme": unit_scheme}
            if fmt == "xlsx":
                from reporting.xlsx import render_xlsx

                return render_xlsx(values, names=names, tables=tables, headline=figures, filters=filters)
            from reporting.html import find_data_docs, render_html

            docs = data_docs_url or find_data_docs(out)
            return render_html(values, names=names, tables=tables, headline=figures, filters=filters,
                               data_docs_url=docs)
        if indicator or period or agency:
            return _table(values)
        lines = ["lienthong — standard indicators (computed from the warehouse)", ""]
        lines += headline(values) + [""] + quality_summary(engine)
        lines += ["", f"{len(values):,} indicator values; `lienthong report --format json` lists them all."]
        return "\n".join(lines) + "\n"
    finally:
        if own:
            engine.dispose()
