"""The quality gate: validates chunks of standard records and splits each into good and bad rows."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

import standards
from quality import datadocs
from quality.suites import (
    build_suite,
    is_nested,
    reference_parameter,
    rule_of,
    schema_types,
    typed_references,
)

ROW = "_row"
ERRORS = "_errors"
FAILED_RULES = "failed_rules"

# COMPLETE is the only format whose `unexpected_index_list` is not cut at
# `partial_unexpected_count`. With `unexpected_index_column_names`, each entry is a dict
# {<checked column(s)>: value, "_row": id}. Its `unexpected_list` is still cut at 200 values:
# never read that. The index query would only repeat every failing index as one more string.
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW],
    "return_unexpected_index_query": False,
}


class QualityGateError(RuntimeError):
    """A chunk could not be judged (a standard column missing, GX failed on an expectation)."""


@dataclass
class QualityResult:
    """One chunk, split: every row is in exactly one of `good` and `bad`."""

    good: pd.DataFrame  # rows with no failed rule
    bad: pd.DataFrame  # rows with >= 1 failed rule; column `failed_rules` (sorted list[str])
    rule_counts: dict[str, int]  # rows failing each rule
    gx_result: Any  # the GX ExpectationSuiteValidationResult (for Data Docs)


@dataclass(frozen=True)
class _NestedRule:
    """Checks of one list column, done in Python: GX does not look inside lists."""

    column: str
    required: bool  # a null or empty list fails `<column>.required`
    codelists: tuple[tuple[str, frozenset[str]], ...]  # (item field, valid codes): `.in_codelist`


class QualityGate:
    """Validates chunks of one entity against the suite generated from its schema.

    The GX context, data asset and suite are built once here and reused for every chunk.
    """

    def __init__(
        self, entity: str, reference_sets: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.entity = entity
        schema = standards.load_schema(entity)
        self.suite = build_suite(entity, reference_sets)
        self._references = {
            column: frozenset(values)
            for column, values in typed_references(entity, reference_sets or {}).items()
        }
        self._columns = _suite_columns(self.suite)
        self._integer_columns = [
            c for c in self._columns if "integer" in schema_types(schema["properties"][c])
        ]
        self._nested = _nested_rules(schema)

        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self._context.data_sources.add_pandas(f"{entity}_chunks")
        self._batches = source.add_dataframe_asset(entity).add_batch_definition_whole_dataframe(
            "whole_chunk"
        )
        self.suite = self._context.suites.add(self.suite)
        # LIENTHONG_DATA_DOCS=1: every chunk's result is kept for Data Docs (quality/datadocs.py).
        self._results = datadocs.keeper_for(self, self.suite)

    def finish(self) -> None:
        """Build the Data Docs of this gate's validations now (when kept), not when the gate is freed."""
        if self._results is not None:
            datadocs.build_kept(self._results)

    def split(self, frame: pd.DataFrame) -> QualityResult:
        """Split one chunk into good rows and bad rows, each bad row with every rule it broke."""
        rows = _row_ids(frame)
        position = {row: i for i, row in enumerate(rows)}
        checked = self._gx_frame(frame, rows)
        batch = self._batches.get_batch(batch_parameters={"dataframe": checked})
        with warnings.catch_warnings():
            # GX matches patterns with `str.contains`, which warns on every capturing group.
            warnings.filterwarnings("ignore", "This pattern is interpreted as a regular expression")
            gx_result = batch.validate(
                self.suite,
                result_format=RESULT_FORMAT,
                expectation_parameters=self._reference_parameters(checked),
            )
        if self._results is not None:
            self._results.keep(gx_result, (rows[0], rows[-1]) if rows else None)

        found: dict[int, set[str]] = {}  # by position in the chunk
        for result in gx_result.results:
            rule = rule_of(result.expectation_config)
            for row in _unexpected_rows(result, rule):
                found.setdefault(position[row], set()).add(rule)
        for nested in self._nested:
            for i, value in enumerate(frame[nested.column]):
                if broken := _check_nested(nested, value):
                    found.setdefault(i, set()).update(broken)
        reported = (
            frame[ERRORS]
            if ERRORS in frame.columns
            else pd.Series([None] * len(frame), dtype=object)
        )

        failed_rules: list[list[str]] = []
        for i, errors in enumerate(reported.tolist()):
            if i not in found and (errors is None or (type(errors) is list and not errors)):
                failed_rules.append([])  # most rows: nothing found, nothing reported
                continue
            rules = _combine(found.get(i, set()), {str(e) for e in _as_list(errors) or ()})
            failed_rules.append(sorted(rules))
        is_bad = np.fromiter((bool(r) for r in failed_rules), dtype=bool, count=len(frame))

        good = frame[~is_bad]
        bad = frame[is_bad].copy()
        bad[FAILED_RULES] = pd.Series([r for r in failed_rules if r], index=bad.index, dtype=object)
        assert len(good) + len(bad) == len(frame), "the gate lost or duplicated rows"
        counts = Counter(rule for rules in failed_rules for rule in rules)
        return QualityResult(
            good=good, bad=bad, rule_counts=dict(sorted(counts.items())), gx_result=gx_result
        )

    def _reference_parameters(self, checked: pd.DataFrame) -> dict[str, list]:
        """Each reference set as the chunk needs it: the codes of the set that the chunk holds.

        The same verdicts as the whole set (a value is in it or not), at the cost of the chunk's
        distinct codes: GX copies a value set on every use, and a catalogue has thousands.
        """
        parameters = {}
        for column, known in self._references.items():
            try:
                present = known.intersection(checked[column].dropna().unique().tolist())
            except TypeError:  # an unhashable value: it is in no set, the whole set does no harm
                present = known
            parameters[reference_parameter(column)] = sorted(present)
        return parameters

    def _gx_frame(self, frame: pd.DataFrame, rows: list) -> pd.DataFrame:
        """The columns GX checks, blank strings as nulls (the standard treats them alike)."""
        missing = [
            c for c in [*self._columns, *(r.column for r in self._nested)] if c not in frame.columns
        ]
        if missing:
            raise QualityGateError(
                f"{self.entity} chunk lacks standard column(s): {', '.join(missing)}"
            )
        out = pd.DataFrame({c: _blank_to_na(frame[c]) for c in self._columns}).reset_index(
            drop=True
        )
        for column in self._integer_columns:
            values = out[column]
            if not pd.api.types.is_numeric_dtype(values) and values.notna().any():
                raise QualityGateError(
                    f"{self.entity}.{column} holds {values.dtype} values; integer codes must "
                    "come as nullable Int64 (docs/INTERFACES.md §3)"
                )
        out[ROW] = rows
        return out


def _suite_columns(suite: gx.ExpectationSuite) -> list[str]:
    columns: dict[str, None] = {}
    for expectation in suite.expectations:
        kwargs = expectation.configuration.kwargs
        for key in ("column", "column_A", "column_B"):
            if key in kwargs:
                columns[kwargs[key]] = None
    return list(columns)


def _nested_rules(schema: Mapping[str, Any]) -> list[_NestedRule]:
    rules = []
    required = set(schema.get("required", ()))
    for column, prop in schema["properties"].items():
        if not is_nested(prop):
            continue
        item_props = prop.get("items", {}).get("properties", {})
        codelists = tuple(
            (field, standards.codes(p["x-codelist"]))
            for field, p in item_props.items()
            if "x-codelist" in p
        )
        rules.append(
            _NestedRule(column, column in required or prop.get("minItems", 0) > 0, codelists)
        )
    return rules


def _check_nested(rule: _NestedRule, value: Any) -> set[str]:
    items = _as_list(value)
    if not items:
        return {f"{rule.column}.required"} if rule.required else set()
    for item in items:
        for field, valid in rule.codelists:
            code = _code_text(item.get(field)) if isinstance(item, Mapping) else None
            if code not in valid:
                return {f"{rule.column}.in_codelist"}
    return set()


def _unexpected_rows(result: Any, rule: str) -> list:
    """The `_row` of every row an expectation found unexpected — all of them, or an error."""
    found = result.result or {}
    if "unexpected_count" not in found:
        raise QualityGateError(f"GX could not check {rule}: {_exception_message(result)}")
    rows = [item[ROW] for item in found.get("unexpected_index_list") or []]
    if len(rows) != found["unexpected_count"]:
        raise QualityGateError(
            f"GX found {found['unexpected_count']} rows failing {rule} but identified {len(rows)}"
        )
    return [r.item() if isinstance(r, np.generic) else r for r in rows]


def _exception_message(result: Any) -> str:
    info = result.exception_info or {}
    if "exception_message" in info:
        return str(info["exception_message"])
    # Metric failures come keyed by metric id, each with its own ExceptionInfo.
    messages = {str(getattr(v, "exception_message", v)) for v in info.values()}
    return "; ".join(sorted(messages)) or "no result and no exception reported"


def _combine(checked: set[str], reported: set[str]) -> set[str]:
    """The gate's findings plus the transform's, without blaming a column twice.

    A column the transform already reported (an unparseable date, a code that is not a number)
    reaches the gate empty; it is not also reported `<column>.required`.
    """
    blamed = {r.partition(".")[0] for r in reported if not r.endswith(".required")}
    return reported | {
        r for r in checked if not (r.endswith(".required") and r.partition(".")[0] in blamed)
    }


def _row_ids(frame: pd.DataFrame) -> list:
    if ROW not in frame.columns:
        return list(range(len(frame)))
    rows = [r.item() if isinstance(r, np.generic) else r for r in frame[ROW]]
    if len(set(rows)) != len(rows):
        raise QualityGateError("the chunk's _row values are not unique")
    return rows


def _blank_to_na(values: pd.Series) -> pd.Series:
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        blank = np.fromiter(
            (isinstance(v, str) and not v.strip() for v in values.tolist()), dtype=bool, count=len(values)
        )
        if blank.any():
            return values.mask(blank)
    return values


def _as_list(value: Any) -> list | None:
    """A list-valued cell as a list; None for a missing cell."""
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    return [value]


def _code_text(value: Any) -> str | None:
    """A code as the code lists spell it (`3`, `3.0`, `"3"` → `"3"`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else None
    if isinstance(value, str):
        return value.strip()
    return None
