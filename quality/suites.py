"""Great Expectations suites generated from the standard's JSON Schemas and code lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import great_expectations as gx
from great_expectations.expectations import Expectation

import standards

# Schema types that GX cannot judge column-wise (lists, dicts): the gate checks them in Python.
NESTED_TYPES = frozenset({"array", "object"})


def suite_name(entity: str) -> str:
    """The name of an entity's suite, versioned with the standard."""
    return f"{entity}.standard_v{standards.STANDARD_VERSION}"


def schema_types(prop: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types a schema property allows (`"type"` may be a string or a list)."""
    kind = prop.get("type", [])
    return frozenset([kind] if isinstance(kind, str) else kind)


def is_nested(prop: Mapping[str, Any]) -> bool:
    """Whether a property holds lists or objects (not validated by GX)."""
    return bool(schema_types(prop) & NESTED_TYPES)


def rule_of(expectation: Any) -> str:
    """The rule id an expectation (or its configuration) checks, from its `meta`."""
    return expectation.meta["rule"]


def build_suite(
    entity: str, reference_sets: Mapping[str, Iterable[str]] | None = None
) -> gx.ExpectationSuite:
    """The expectation suite of one entity, generated from its JSON Schema.

    `required` → not null; `pattern` → regex; `minimum` → between; `x-codelist` and `enum` → in
    the code list; `x-references` → in `reference_sets[column]` (only when given; its values are
    the expectation parameter `reference_parameter(column)` of each validation); `x-not-before`
    → column pair A ≥ B and `x-at-most` → B ≥ A, rows missing either value ignored. Every
    expectation carries its rule id in `meta["rule"]` (docs/INTERFACES.md §3). Nested columns
    (arrays, objects) are skipped.
    """
    schema = standards.load_schema(entity)
    references = typed_references(entity, reference_sets or {})
    required = set(schema.get("required", ()))
    expectations = [
        expectation
        for column, prop in schema["properties"].items()
        if not is_nested(prop)
        for expectation in _column_expectations(column, prop, column in required, references)
    ]
    return gx.ExpectationSuite(
        name=suite_name(entity),
        expectations=expectations,
        meta={"entity": entity, "standard_version": standards.STANDARD_VERSION},
    )


def _column_expectations(
    column: str, prop: Mapping[str, Any], required: bool, references: Mapping[str, list]
) -> Iterator[Expectation]:
    expect = gx.expectations
    if required:
        yield expect.ExpectColumnValuesToNotBeNull(column=column, meta=_rule(column, "required"))
    if "pattern" in prop:
        yield expect.ExpectColumnValuesToMatchRegex(
            column=column, regex=prop["pattern"], meta=_rule(column, "pattern")
        )
    if "minimum" in prop:
        yield expect.ExpectColumnValuesToBeBetween(
            column=column, min_value=prop["minimum"], meta=_rule(column, "minimum")
        )
    if "x-codelist" in prop:
        yield expect.ExpectColumnValuesToBeInSet(
            column=column,
            value_set=_typed(standards.codes(prop["x-codelist"]), prop),
            meta=_rule(column, "in_codelist") | {"codelist": prop["x-codelist"]},
        )
    elif "enum" in prop:
        yield expect.ExpectColumnValuesToBeInSet(
            column=column,
            value_set=[v for v in prop["enum"] if v is not None],
            meta=_rule(column, "in_codelist"),
        )
    if column in references:
        # The reference set (a catalogue of thousands of codes) is the gate's to give per chunk:
        # the codes of the set that the chunk holds (`reference_parameter`), not the whole set.
        yield expect.ExpectColumnValuesToBeInSet(
            column=column,
            value_set={"$PARAMETER": reference_parameter(column)},
            meta=_rule(column, "in_catalogue") | {"references": prop["x-references"]},
        )
    if "x-at-most" in prop:  # a count that cannot exceed another (online <= received)
        other = prop["x-at-most"]
        yield expect.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=other,
            column_B=column,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            meta=_rule(column, f"at_most_{other}"),
        )
    if "x-not-before" in prop:
        other = prop["x-not-before"]
        yield expect.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=column,
            column_B=other,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            meta=_rule(column, f"not_before_{other}"),
        )


def reference_parameter(column: str) -> str:
    """The expectation parameter naming the reference set of `column` (`$PARAMETER`)."""
    return f"{column}_references"


def _rule(column: str, check: str) -> dict[str, str]:
    return {"rule": f"{column}.{check}"}


def _typed(values: Iterable[str], prop: Mapping[str, Any]) -> list:
    """Codes as the column holds them: ints for integer columns (nullable Int64), else strings."""
    if "integer" in schema_types(prop):
        return sorted({int(v) for v in values})
    return sorted({str(v) for v in values})


def typed_references(entity: str, reference_sets: Mapping[str, Iterable[str]]) -> dict[str, list]:
    """Reference sets by column, each typed like its column (`ValueError` for a column without
    `x-references`)."""
    props = standards.load_schema(entity)["properties"]
    referencing = sorted(c for c, p in props.items() if "x-references" in p)
    unknown = sorted(set(reference_sets) - set(referencing))
    if unknown:
        raise ValueError(
            f"{entity} has no reference column {', '.join(unknown)} "
            f"(columns with x-references: {', '.join(referencing) or 'none'})"
        )
    return {c: _typed(values, props[c]) for c, values in reference_sets.items()}
