"""SQL of the indicator standard: portable SELECTs (SQLite and PostgreSQL) built from standards/indicators.yaml.

Every generated SELECT has the same columns, one row per period, breakdown and dimension value:
`period_kind` (month | quarter | year), `period` ("YYYY-MM", "YYYY-Qn", "YYYY"), `scope`
(province | agency | admin_unit), `agency_code`, `admin_unit_code` (null unless that scope),
`dimension` (null without one), `numerator`, `denominator` (null for a count) and `value` (the
count, or numerator × scale / denominator rounded to 2 places; null when the denominator is 0).

As in warehouse/views.py the SQL uses no date function: periods come from the stored local
months (`received_month`, `finished_month`), and a stored DATE is compared with a period's end by
its month, `SUBSTR(CAST(d AS VARCHAR(10)), 1, 7)` — the ISO text of a date on SQLite (where dates
are stored as that text) and on PostgreSQL (whose date output is ISO under the default DateStyle,
which psycopg requires anyway). "d <= last day of month M" is exactly "month of d <= M".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import standards
from standards import IndicatorDefinitionError
from warehouse.views import View

PERIOD_KINDS = ("month", "quarter", "year")
SCOPES = ("province", "agency", "admin_unit")


def _month_of(expr: str) -> str:
    return f"SUBSTR(CAST({expr} AS VARCHAR(10)), 1, 7)"


@dataclass(frozen=True)
class Base:
    """The rows an indicator counts: tables, how they belong to a period, and their columns."""

    name: str
    doc: str
    tables: str                     # FROM items, with {a}/{b} alias placeholders
    conditions: tuple[str, ...]     # WHERE terms; `p` is the period row (first_month, last_month)
    columns: Mapping[str, str]      # filter/dimension column → SQL expression
    codelists: Mapping[str, frozenset[str]]  # coded columns → the standard's codes

    def sql(self, a: str, b: str) -> tuple[str, list[str], dict[str, str]]:
        """The FROM items, WHERE terms and column expressions with aliases a, b."""
        def fill(text: str) -> str:
            return text.format(a=a, b=b)
        return (fill(self.tables), [fill(c) for c in self.conditions],
                {k: fill(v) for k, v in self.columns.items()})


def _dossier_base(name: str, doc: str, conditions: tuple[str, ...]) -> Base:
    groups = frozenset(r["status_group"] for r in standards.load_codelist("dossier_status"))
    columns = {c: "{a}." + c for c in (
        "dossier_code", "procedure_code", "agency_code", "admin_unit_code", "channel",
        "applicant_type", "status", "paid_online", "fee", "received_date", "received_month",
        "due_date", "finished_date", "finished_month")}
    columns["status_group"] = "{b}.status_group"
    columns["due_month"] = _month_of("{a}.due_date")
    return Base(
        name=name, doc=doc,
        tables="fact_dossier {a} JOIN dim_dossier_status {b} ON {b}.code = {a}.status",
        conditions=conditions, columns=columns,
        codelists={"channel": standards.codes("channel"),
                   "applicant_type": standards.codes("applicant_type"),
                   "status": standards.codes("dossier_status"),
                   "paid_online": standards.codes("paid_online"),
                   "status_group": groups})


_BASES: dict[str, Base] | None = None


def bases() -> dict[str, Base]:
    """The bases an indicator formula may name (standards/indicators.yaml, header)."""
    global _BASES
    if _BASES is None:
        _BASES = {b.name: b for b in (
            _dossier_base("dossiers_received", "received in the period", (
                "{b}.is_received",
                "{a}.received_month >= p.first_month", "{a}.received_month <= p.last_month")),
            _dossier_base("dossiers_finished", "finished in the period", (
                "{b}.status_group = 'finished'",
                "{a}.finished_month >= p.first_month", "{a}.finished_month <= p.last_month")),
            _dossier_base("dossiers_open_at_end", "received and not finished at the period's end", (
                "{b}.is_received", "{a}.received_month <= p.last_month",
                "({b}.status_group <> 'finished' OR {a}.finished_month > p.last_month)")),
            Base(
                name="procedures_at_end", doc="in force on the period's last day, with that day's level",
                tables="dim_procedure {a} JOIN dim_procedure_level {b} "
                       "ON {b}.procedure_code = {a}.procedure_code",
                conditions=(
                    f"{_month_of('{a}.published_on')} <= p.last_month",
                    f"({{a}}.abolished_on IS NULL OR {_month_of('{a}.abolished_on')} > p.last_month)",
                    f"{_month_of('{b}.valid_from')} <= p.last_month",
                    f"({{b}}.valid_to IS NULL OR {_month_of('{b}.valid_to')} > p.last_month)"),
                columns={"procedure_code": "{a}.procedure_code", "agency_code": "{a}.agency_code",
                         "scope": "{a}.scope", "online_level": "{b}.online_level",
                         "decree42_level": "{b}.decree42_level"},
                codelists={"online_level": standards.codes("online_level"),
                           "decree42_level": standards.codes("decree42_level")}),
        )}
    return _BASES


_OPS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_PERIOD_VALUES = {"$period_end": "p.last_month", "$period_start": "p.first_month"}


class _Builder:
    """Translates one indicator's formula; errors name the indicator and the field."""

    def __init__(self, definition: Mapping[str, Any]):
        self.definition = definition
        self.id = definition["id"]

    def fail(self, field: str, problem: str) -> IndicatorDefinitionError:
        return IndicatorDefinitionError(f"indicators.yaml: indicator {self.id!r}: {field}: {problem}")

    def base(self, name: str, field: str) -> Base:
        try:
            return bases()[name]
        except KeyError:
            raise self.fail(field, f"unknown base {name!r} (known: {', '.join(bases())})") from None

    def column(self, base: Base, columns: Mapping[str, str], name: str, field: str) -> str:
        if name not in columns:
            raise self.fail(field, f"base {base.name} has no column {name!r} "
                                   f"(known: {', '.join(sorted(columns))})")
        return columns[name]

    def literal(self, base: Base, column: str, value: Any, field: str) -> str:
        if isinstance(value, str) and value.startswith("$"):
            if value not in _PERIOD_VALUES:
                raise self.fail(field, f"unknown value {value!r} (known: {', '.join(_PERIOD_VALUES)})")
            return _PERIOD_VALUES[value]
        codes = base.codelists.get(column)
        if codes is not None and str(value) not in codes:
            raise self.fail(field, f"{value!r} is not a code of {column} (codes: {', '.join(sorted(codes))})")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.fail(field, f"{value!r}: a value is a whole number or a string")
        if isinstance(value, int):
            return str(value)
        return "'" + value.replace("'", "''") + "'"

    def condition(self, base: Base, columns: Mapping[str, str], item: Mapping[str, Any],
                  field: str) -> str:
        if "any" in item or "all" in item:
            key = "any" if "any" in item else "all"
            parts = [self.condition(base, columns, sub, f"{field}.{key}[{i}]")
                     for i, sub in enumerate(item[key])]
            return "(" + (" OR " if key == "any" else " AND ").join(parts) + ")"
        if "exists" in item:
            return self.exists(columns, item, field)
        column = self.column(base, columns, item["column"], f"{field}.column")
        op = item["op"]
        if op == "is_null":
            return f"{column} IS NULL"
        if op == "not_null":
            return f"{column} IS NOT NULL"
        if "other" in item:
            if op == "in":
                raise self.fail(f"{field}.op", "`in` takes a list `value`, not `other`")
            return f"{column} {_OPS[op]} {self.column(base, columns, item['other'], f'{field}.other')}"
        if op == "in":
            values = ", ".join(self.literal(base, item["column"], v, f"{field}.value[{i}]")
                               for i, v in enumerate(item["value"]))
            return f"{column} IN ({values})"
        return f"{column} {_OPS[op]} {self.literal(base, item['column'], item['value'], f'{field}.value')}"

    def exists(self, outer: Mapping[str, str], item: Mapping[str, Any], field: str) -> str:
        inner = self.base(item["exists"], f"{field}.exists")
        tables, conditions, columns = inner.sql("x", "xs")
        terms = list(conditions)
        for i, name in enumerate(item["match"]):
            terms.append(f"{self.column(inner, columns, name, f'{field}.match[{i}]')} = "
                         f"{self.column(inner, outer, name, f'{field}.match[{i}]')}")
        terms += [self.condition(inner, columns, sub, f"{field}.where[{i}]")
                  for i, sub in enumerate(item["where"])]
        return f"EXISTS (SELECT 1 FROM {tables} WHERE " + " AND ".join(terms) + ")"

    def filters(self, base: Base, columns: Mapping[str, str], name: str) -> str:
        items = self.definition["formula"].get(name)
        if not items:
            return "1"
        parts = [self.condition(base, columns, item, f"formula.{name}[{i}]")
                 for i, item in enumerate(items)]
        return "CASE WHEN " + " AND ".join(parts) + " THEN 1 ELSE 0 END"

    def select(self, periods: Sequence[str], scopes: Sequence[str]) -> str:
        formula = self.definition.get("formula")
        if not formula:
            raise self.fail("formula", "no formula: the indicator is computed in Python")
        base = self.base(formula["base"], "formula.base")
        tables, conditions, columns = base.sql("f", "s")
        measure = formula["measure"]
        key = formula.get("key")
        if key is not None:
            key = self.column(base, columns, key, "formula.key")
        if measure == "count" and key is not None:
            raise self.fail("formula.key", "a count counts rows; use count_distinct for a key")
        dimension = "CAST(NULL AS VARCHAR(64))"
        if "dimension" in formula:
            spec = formula["dimension"]
            raw = self.column(base, columns, spec["column"], "formula.dimension.column")
            prefix, _, suffix = spec["label"].partition("{}")
            dimension = f"CAST({raw} AS VARCHAR(64))"
            if prefix:
                dimension = f"'{prefix}' || {dimension}"
            if suffix:
                dimension = f"{dimension} || '{suffix}'"
            if "null_label" in spec:
                dimension = f"COALESCE({dimension}, '{spec['null_label']}')"
        for scope in scopes:
            if scope != "province" and f"{scope}_code" not in columns:
                raise self.fail("grain.breakdowns", f"base {base.name} has no {scope}_code")
        numerator = self.filters(base, columns, "numerator")
        denominator = self.filters(base, columns, "denominator")
        if measure != "ratio" and "denominator" in formula:
            raise self.fail("formula.denominator", f"a {measure} has no denominator")
        item = key or "1"
        scope_cols = {"province": ("CAST(NULL AS VARCHAR(16))", "CAST(NULL AS VARCHAR(5))"),
                      "agency": ("agency_code", "CAST(NULL AS VARCHAR(5))"),
                      "admin_unit": ("CAST(NULL AS VARCHAR(16))", "admin_unit_code")}

        def total(flag: str) -> str:
            if key is None:
                return f"SUM({flag})"
            return f"COUNT(DISTINCT CASE WHEN {flag} = 1 THEN item END)"

        branches = []
        for scope in scopes:
            agency, unit = scope_cols[scope]
            keys = ["period_kind", "period", "dimension"]
            where = ""
            if scope != "province":
                keys.insert(2, f"{scope}_code")
                where = f"\n  WHERE {scope}_code IS NOT NULL"
            den = total("in_denominator") if measure == "ratio" else "CAST(NULL AS BIGINT)"
            branches.append(
                f"  SELECT period_kind, period, '{scope}' AS scope, {agency} AS agency_code, "
                f"{unit} AS admin_unit_code, dimension,\n"
                f"         {total('in_numerator')} AS numerator, {den} AS denominator\n"
                f"  FROM counted{where}\n  GROUP BY {', '.join(keys)}")
        scale = formula.get("scale", 1)
        value = ("numerator" if measure != "ratio" else
                 f"CASE WHEN denominator > 0 THEN ROUND(numerator * {float(scale)!r} / denominator, 2) END")
        breakdown = []
        if "agency" in scopes:
            breakdown.append(f"{columns['agency_code']} AS agency_code")
        if "admin_unit" in scopes:
            breakdown.append(f"{columns['admin_unit_code']} AS admin_unit_code")
        return (
            "WITH months AS (\n"
            "  SELECT received_month AS m FROM fact_dossier WHERE received_month IS NOT NULL\n"
            "  UNION\n"
            "  SELECT finished_month FROM fact_dossier WHERE finished_month IS NOT NULL\n"
            "),\n"
            f"periods AS (\n{_periods_sql(periods)}\n),\n"
            "counted AS (\n"
            "  SELECT p.period_kind, p.period, " + "".join(f"{b}, " for b in breakdown)
            + f"{dimension} AS dimension,\n"
            f"         {item} AS item, {numerator} AS in_numerator, {denominator} AS in_denominator\n"
            f"  FROM {tables}, periods p\n"
            "  WHERE " + "\n    AND ".join(conditions) + "\n),\n"
            "totals AS (\n" + "\n  UNION ALL\n".join(branches) + "\n)\n"
            "SELECT period_kind, period, scope, agency_code, admin_unit_code, dimension, numerator, "
            f"denominator,\n       {value} AS value\nFROM totals"
        )


def _periods_sql(periods: Sequence[str]) -> str:
    year = "SUBSTR(m, 1, 4)"
    mm = "SUBSTR(m, 6, 2)"

    def by_quarter(labels: tuple[str, str, str, str]) -> str:
        return (f"{year} || CASE WHEN {mm} <= '03' THEN '{labels[0]}' WHEN {mm} <= '06' THEN "
                f"'{labels[1]}' WHEN {mm} <= '09' THEN '{labels[2]}' ELSE '{labels[3]}' END")

    parts = {
        "month": "  SELECT 'month' AS period_kind, m AS period, m AS first_month, m AS last_month "
                 "FROM months",
        "quarter": f"  SELECT 'quarter', {by_quarter(('-Q1', '-Q2', '-Q3', '-Q4'))},\n"
                   f"         {by_quarter(('-01', '-04', '-07', '-10'))},\n"
                   f"         {by_quarter(('-03', '-06', '-09', '-12'))} FROM months",
        "year": f"  SELECT 'year', {year}, {year} || '-01', {year} || '-12' FROM months",
    }
    return "\n  UNION\n".join(parts[p] for p in PERIOD_KINDS if p in periods)


def sql_grain(definition: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The period kinds and breakdowns of an indicator that SQL gives (not `date`)."""
    grain = definition["grain"]
    return (tuple(p for p in PERIOD_KINDS if p in grain["periods"]),
            tuple(s for s in SCOPES if s in grain["breakdowns"]))


def build_select(definition: Mapping[str, Any], *, periods: Iterable[str] | None = None,
                 scopes: Iterable[str] | None = None) -> str:
    """The SELECT of one indicator with a formula, for the given period kinds and breakdowns
    (default: its grain's). Raises IndicatorDefinitionError for a formula naming an unknown
    base, column or code."""
    grain_periods, grain_scopes = sql_grain(definition)
    periods = tuple(p for p in PERIOD_KINDS if p in (grain_periods if periods is None else set(periods)))
    scopes = tuple(s for s in SCOPES if s in (grain_scopes if scopes is None else set(scopes)))
    builder = _Builder(definition)
    if not periods:
        raise builder.fail("grain.periods", "no month, quarter or year to build SQL for")
    if not scopes:
        raise builder.fail("grain.breakdowns", "no breakdown to build SQL for")
    return builder.select(periods, scopes)


def view_name(indicator_id: str) -> str:
    return f"mart_{indicator_id}"


def indicator_views(definitions: Iterable[Mapping[str, Any]] | None = None) -> tuple[View, ...]:
    """A `mart_<id>` view per indicator with a formula (standards/indicators.yaml by default)."""
    definitions = standards.load_indicators() if definitions is None else definitions
    out = []
    for d in definitions:
        if not d.get("formula"):
            continue
        doc = (f"Indicator {d['id']} ({d['name_en']}, {d['unit']}), generated from "
               f"standards/indicators.yaml: {' '.join(d['description'].split())}")
        out.append(View(name=view_name(d["id"]), doc=doc, select=build_select(d)))
    return tuple(out)
