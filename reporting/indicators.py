"""The standard report indicators, computed from the warehouse's marts (never stored as constants)."""

from __future__ import annotations

import calendar
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa

import standards
from warehouse.indicator_sql import build_select


@dataclass(frozen=True)
class IndicatorDef:
    """One indicator of the standard (standards/indicators.yaml): id, names, unit and grain."""

    id: str
    name_vi: str
    name_en: str
    unit: str
    period: str  # "date" (as of a day), "month" (and its year roll-up)
    kind: str = "python"  # "sql": computed by the SELECT generated from its formula
    definition: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def load_indicator_defs() -> dict[str, IndicatorDef]:
    """The indicators of standards/indicators.yaml, in the file's order.

    Every formula is built once here, so a formula naming an unknown base, column or code fails at
    load with its one-line IndicatorDefinitionError, not in the middle of a report.
    """
    definitions = standards.load_indicators()
    for d in definitions:
        if d.get("formula"):
            build_select(d)
    return {d["id"]: IndicatorDef(d["id"], d["name_vi"], d["name_en"], d["unit"],
                                  "date" if "date" in d["grain"]["periods"] else "month",
                                  d["kind"], d)
            for d in definitions}


INDICATORS: dict[str, IndicatorDef] = load_indicator_defs()

# The report's grain for the indicators computed by SQL: months and their years, for the province
# and each agency (quarters and admin units are in the `mart_<id>` views).
REPORT_PERIODS = ("month", "year")
REPORT_SCOPES = ("province", "agency")

# The measures of a commune's monthly report, compared one by one with the dossiers.
REPORT_MEASURES = ("received", "online", "on_time", "late", "pending")


@dataclass
class IndicatorValue:
    """One value of the report: an indicator for a period, an agency (None = province) and a breakdown."""

    indicator: str
    period: str
    agency_code: str | None
    value: float
    unit: str
    group_code: str | None = None
    dimension: str | None = None
    # Extra keys of this value in the JSON report (reconciliation_gap: `reported`, `counted`);
    # not stored in mart_indicator nor written to CSV.
    detail: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        detail = out.pop("detail") or {}
        if float(self.value).is_integer():
            out["value"] = int(self.value)
        return {**out, **detail}


def data_cutoff(conn: sa.Connection) -> date | None:
    """Last day of the latest month that has received dossiers: the default as-of date."""
    month = conn.execute(sa.text("SELECT max(received_month) FROM fact_dossier")).scalar()
    if not month:
        return None
    year, mon = (int(x) for x in month.split("-"))
    return date(year, mon, calendar.monthrange(year, mon)[1])


def _months(first: str, last: str) -> list[str]:
    return [p.strftime("%Y-%m") for p in pd.period_range(first, last, freq="M")]


def procedure_levels(conn: sa.Connection, as_of: date) -> pd.DataFrame:
    """Procedures in force on `as_of` with the online level that applied that day."""
    sql = sa.text(
        "SELECT procedure_code, agency_code, online_level, decree42_level FROM mart_procedure_level "
        "WHERE published_on <= :d AND (abolished_on IS NULL OR abolished_on > :d) "
        "AND valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)")
    return pd.DataFrame(conn.execute(sql, {"d": as_of}).mappings().all(),
                        columns=["procedure_code", "agency_code", "online_level", "decree42_level"])


def _snapshot(conn: sa.Connection, as_of: date) -> list[IndicatorValue]:
    levels = procedure_levels(conn, as_of)
    period = as_of.isoformat()
    out: list[IndicatorValue] = []
    scopes: list[tuple[str | None, pd.DataFrame]] = [(None, levels)]
    scopes += [(str(agency), part) for agency, part in levels.groupby("agency_code")]
    for agency, part in scopes:
        out.append(IndicatorValue("procedures_total", period, agency, len(part), "procedures"))
        counts = part["online_level"].value_counts()
        for level in sorted(int(c) for c in standards.codes("online_level")):
            out.append(IndicatorValue("procedures_by_level", period, agency, int(counts.get(level, 0)),
                                      "procedures", dimension=f"level_{level}"))
        d42 = part["decree42_level"].fillna("not_online").value_counts()
        for name in ["toan_trinh", "mot_phan", "not_online"]:
            out.append(IndicatorValue("procedures_by_decree42_level", period, agency,
                                      int(d42.get(name, 0)), "procedures", dimension=name))
    return out


def _with_years(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Month rows plus their calendar-year roll-ups (period 'YYYY')."""
    years = frame.assign(period=frame["period"].str[:4]).groupby(keys, dropna=False)[values].sum().reset_index()
    return pd.concat([frame, years], ignore_index=True)


def _online_by_group(conn: sa.Connection) -> list[IndicatorValue]:
    """online_dossiers_by_group: the procedure groups of the standard, every month of the data range."""
    received = pd.read_sql(sa.text(
        "SELECT received_month AS period, procedure_code, channel, dossiers "
        "FROM mart_dossier_received"), conn)
    out: list[IndicatorValue] = []
    if received.empty:
        return out
    # Procedure groups of the standard: every month of the data range, zeros included.
    groups = pd.DataFrame(standards.load_codelist("procedure_groups"))
    months = _months(received["period"].min(), received["period"].max())
    online = received[received["channel"] == 2].merge(groups, on="procedure_code")
    for group_code, members in groups.groupby("group_code"):
        agency = members["agency_code"].iloc[0]
        counts = online[online["group_code"] == group_code].groupby("period")["dossiers"].sum()
        series = pd.DataFrame({"period": months, "value": [int(counts.get(m, 0)) for m in months]})
        series = _with_years(series.assign(k=1), ["period", "k"], ["value"])
        for period, value in zip(series["period"].tolist(), series["value"].tolist(), strict=True):
            out.append(IndicatorValue("online_dossiers_by_group", period, agency, int(value),
                                      "dossiers", group_code=str(group_code)))
    return out


def sql_indicator_values(conn: sa.Connection, definition: IndicatorDef, *,
                         periods: tuple[str, ...] = REPORT_PERIODS,
                         scopes: tuple[str, ...] = REPORT_SCOPES) -> list[IndicatorValue]:
    """One indicator's values from the SELECT generated from its formula (the SQL of `mart_<id>`).

    A ratio's value is rounded here from the numerator and denominator (as the views do), none when
    the denominator is 0.
    """
    formula = definition.definition["formula"]
    sql = build_select(definition.definition, periods=periods, scopes=scopes)
    out: list[IndicatorValue] = []
    for row in conn.execute(sa.text(sql)).mappings():
        if formula["measure"] == "ratio":
            if not row["denominator"]:
                continue
            value = round(float(formula["scale"]) * float(row["numerator"]) / float(row["denominator"]), 2)
        else:
            value = int(row["numerator"])
        agency = row["agency_code"] if row["scope"] == "agency" else None
        out.append(IndicatorValue(definition.id, row["period"], agency, value, definition.unit,
                                  dimension=row["dimension"]))
    return out


# Dossiers counted the way a commune reports them (docs/reconciliation.md), only for the
# commune-months that have a loaded report. Status groups come from dim_dossier_status.
_COUNTED_SQL = """
SELECT f.admin_unit_code AS commune_code, f.received_month AS month, f.procedure_code,
       COUNT(*) AS received,
       SUM(CASE WHEN f.channel = 2 THEN 1 ELSE 0 END) AS online,
       SUM(CASE WHEN s.status_group = 'finished'
                 AND (f.due_date IS NULL OR f.finished_date <= f.due_date) THEN 1 ELSE 0 END) AS on_time,
       SUM(CASE WHEN s.status_group = 'finished' AND f.finished_date > f.due_date
                THEN 1 ELSE 0 END) AS late,
       SUM(CASE WHEN s.status_group = 'finished' THEN 0 ELSE 1 END) AS pending
FROM fact_dossier f
JOIN dim_dossier_status s ON s.code = f.status
WHERE s.is_received
  AND EXISTS (SELECT 1 FROM fact_service_report r
              WHERE r.commune_code = f.admin_unit_code AND r.month = f.received_month)
GROUP BY f.admin_unit_code, f.received_month, f.procedure_code
"""


def reconciliation_gaps(conn: sa.Connection) -> list[IndicatorValue]:
    """Every (commune, month, procedure, measure) where a loaded commune report and the dossiers disagree.

    value = reported − counted; group_code = the procedure; dimension = "<commune code>/<measure>";
    agency_code = the commune's People's Committee (level-3 agency of that admin unit) or None;
    `detail` carries commune_code, month, procedure_code, measure, reported and counted. A procedure
    reported without dossiers, or with dossiers but missing from the report, counts 0 on the
    side that lacks it. A commune-month whose report agrees gives no row.
    """
    keys = ["commune_code", "month", "procedure_code"]
    if not sa.inspect(conn).has_table("fact_service_report"):  # a warehouse not yet at 0003
        return []
    reported = pd.read_sql(sa.text(
        "SELECT commune_code, month, procedure_code, " + ", ".join(REPORT_MEASURES)
        + " FROM fact_service_stat"), conn)
    counted = pd.read_sql(sa.text(_COUNTED_SQL), conn)
    if reported.empty and counted.empty:
        return []
    both = reported.merge(counted, on=keys, how="outer", suffixes=("_reported", "_counted"))
    agencies: dict[str, str] = dict(conn.execute(sa.text(
        "SELECT admin_unit_code, min(agency_code) FROM dim_agency WHERE level = 3 "
        "AND admin_unit_code IS NOT NULL GROUP BY admin_unit_code")).all())
    out: list[IndicatorValue] = []
    for row in both.sort_values(keys).to_dict("records"):
        for measure in REPORT_MEASURES:
            got = row[f"{measure}_reported"]
            want = row[f"{measure}_counted"]
            got = 0 if pd.isna(got) else int(got)
            want = 0 if pd.isna(want) else int(want)
            if got == want:
                continue
            commune = row["commune_code"]
            out.append(IndicatorValue(
                "reconciliation_gap", row["month"], agencies.get(commune), got - want, "dossiers",
                group_code=row["procedure_code"], dimension=f"{commune}/{measure}",
                detail={"commune_code": commune, "month": row["month"], "procedure_code": row["procedure_code"],
                        "measure": measure, "reported": got, "counted": want}))
    return out


def compute_indicators(engine: sa.Engine, *, as_of: date | None = None) -> list[IndicatorValue]:
    """Every indicator of the standard: snapshots as of `as_of` (default the data cut-off), months and years.

    Indicators of kind `sql` run the SELECT generated from their formula in standards/indicators.yaml
    (the SQL of their `mart_<id>` view, for months and years, province and agencies); the others are
    computed here in Python.
    """
    with engine.connect() as conn:
        as_of = as_of or data_cutoff(conn) or date.today()
        out = _snapshot(conn, as_of)
        for definition in INDICATORS.values():
            if definition.kind == "sql":
                out += sql_indicator_values(conn, definition)
        return out + _online_by_group(conn) + reconciliation_gaps(conn)


def filter_values(values: list[IndicatorValue], *, indicator: str | None = None,
                  period: str | None = None, agency: str | None = None) -> list[IndicatorValue]:
    """Rows of one indicator, of periods starting with `period`, of one agency ('province' = None)."""
    out = values
    if indicator:
        out = [v for v in out if v.indicator == indicator]
    if period:
        out = [v for v in out if v.period.startswith(period) or INDICATORS[v.indicator].period == "date"]
    if agency:
        want = None if agency.lower() == "province" else agency
        out = [v for v in out if v.agency_code == want]
    return out


def refresh_marts(engine: sa.Engine) -> int:
    """Materialise every indicator value into `mart_indicator` in one transaction; returns rows written."""
    from warehouse.schema import metadata

    table = metadata.tables["mart_indicator"]
    values = compute_indicators(engine)
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    rows = [{"indicator": v.indicator, "period": v.period, "agency_code": v.agency_code,
             "group_code": v.group_code, "dimension": v.dimension, "value": v.value,
             "unit": v.unit, "refreshed_at": now} for v in values]
    with engine.begin() as conn:
        conn.execute(table.delete())
        if rows:
            conn.execute(table.insert(), rows)
    return len(rows)
