"""Renders the indicator report as a terminal table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date

import sqlalchemy as sa

from pipeline.indicators import INDICATORS, IndicatorValue, compute_indicators, filter_values

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
COLUMNS = ["indicator", "period", "agency_code", "group_code", "dimension", "value", "unit"]


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
    """Loaded, quarantined by rule, and the latest batches."""
    lines = []
    with engine.connect() as conn:
        dossiers = conn.execute(sa.text("SELECT count(*) FROM fact_dossier")).scalar()
        procedures = conn.execute(sa.text("SELECT count(*) FROM dim_procedure")).scalar()
        rules: dict[str, int] = {}
        for (text,) in conn.execute(sa.text("SELECT failed_rules FROM ops_quarantine")):
            for rule in json.loads(text):
                rules[rule] = rules.get(rule, 0) + 1
        batches = conn.execute(sa.text(
            "SELECT source, stream, status, rows_read, rows_loaded, rows_quarantined, rows_deduplicated "
            "FROM ops_batch ORDER BY started_at DESC LIMIT 4")).all()
    lines.append(f"Warehouse: {procedures:,} procedures, {dossiers:,} dossiers")
    if rules:
        lines.append("Quarantined rows by rule: " + ", ".join(f"{r} {n}" for r, n in sorted(rules.items())))
    for b in batches:
        lines.append(f"  batch {b.source}.{b.stream} {b.status}: read {b.rows_read}, loaded {b.rows_loaded} "
                     f"({b.rows_deduplicated} duplicates merged), quarantined {b.rows_quarantined}")
    return lines


def render_report(*, fmt: str = "table", indicator: str | None = None, period: str | None = None,
                  agency: str | None = None, engine: sa.Engine | None = None) -> str:
    """The report as text in the chosen format."""
    from warehouse.db import create_engine, warehouse_url

    own = engine is None
    engine = engine or create_engine(warehouse_url())
    try:
        values = collect(engine, indicator=indicator, period=period, agency=agency)
        if fmt == "json":
            return json.dumps([v.as_dict() for v in values], ensure_ascii=False, indent=1) + "\n"
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(v.as_dict() for v in values)
            return out.getvalue()
        if indicator or period or agency:
            return _table(values)
        lines = ["lienthong — standard indicators (computed from the warehouse)", ""]
        lines += headline(values) + [""] + quality_summary(engine)
        lines += ["", f"{len(values):,} indicator values; `lienthong report --format json` lists them all."]
        return "\n".join(lines) + "\n"
    finally:
        if own:
            engine.dispose()
