"""Every file of the standard is valid, and the generated code lists match their package."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

import standards
from standards.build import ADMIN_UNIT_COLUMNS, build_admin_units, to_csv


@pytest.mark.parametrize("entity", standards.ENTITIES)
def test_schema_is_valid_json_schema_with_key(entity):
    schema = standards.load_schema(entity)
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == entity
    for column in schema["x-key"]:
        assert column in schema["properties"]
    for column in schema["required"]:
        assert column in schema["properties"], f"{entity}.{column} required but not defined"


@pytest.mark.parametrize("entity", standards.ENTITIES)
def test_codelist_references_exist(entity):
    known = set(standards.codelist_names())
    for name, prop in standards.load_schema(entity)["properties"].items():
        if "x-codelist" in prop:
            assert prop["x-codelist"] in known, f"{entity}.{name} names an unknown code list"


@pytest.mark.parametrize("name", standards.codelist_names())
def test_codelist_codes_are_unique_and_present(name):
    rows = standards.load_codelist(name)
    assert rows, f"{name} is empty"
    if name == "procedure_groups":
        keys = [(r["group_code"], r["procedure_code"]) for r in rows]
    else:
        keys = [next(iter(r.values())) for r in rows]
    assert len(keys) == len(set(keys))
    assert all(k for k in keys)


def _validate_rows(entity: str, rows: list[dict[str, str]]) -> list[str]:
    schema = standards.load_schema(entity)
    validator = Draft202012Validator(schema)
    problems = []
    for row in rows:
        record = {}
        for column, value in row.items():
            prop = schema["properties"].get(column)
            if prop is None:
                continue
            types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            if value == "" and "null" in types:
                record[column] = None
            elif "integer" in types:
                record[column] = int(value)
            else:
                record[column] = value
        problems += [f"{row}: {e.message}" for e in validator.iter_errors(record)]
    return problems


def test_agencies_conform_to_the_agency_schema():
    rows = standards.load_codelist("agencies")
    assert _validate_rows("agency", rows) == []
    codes = {r["agency_code"] for r in rows}
    assert all(r["parent_code"] in codes for r in rows if r["parent_code"])
    # children share the parent's province suffix (QCVN 102 form, read right to left)
    assert all(r["agency_code"].endswith(".H62") for r in rows)
    communes = [r for r in rows if r["level"] == "3"]
    assert len(communes) == 121


def test_admin_units_conform_and_carry_2025_successors():
    rows = standards.load_codelist("admin_units")
    assert _validate_rows("admin_unit", rows) == []
    by_type: dict[str, list] = {}
    for r in rows:
        by_type.setdefault(r["unit_type"], []).append(r)
    assert len(by_type["province"]) == 1 and by_type["province"][0]["successor_code"] == "25"
    assert {r["unit_code"] for r in by_type["district"]} == {
        "243", "244", "246", "247", "248", "249", "251", "252", "253"}
    assert len(by_type["commune"]) == 121
    successors = {r["successor_code"] for r in by_type["commune"]}
    assert "" not in successors
    assert len(successors) == 36  # Vĩnh Phúc's 121 communes became 36 on 1 July 2025


def test_admin_units_file_is_what_the_package_gives():
    """The committed list is regenerated from vietnamadminunits, not typed by hand."""
    committed = (standards.CODELIST_DIR / "admin_units.csv").read_text(encoding="utf-8")
    assert to_csv(build_admin_units(), ADMIN_UNIT_COLUMNS) == committed


def test_status_groups_follow_the_domain():
    groups = standards.status_groups()
    assert groups["in_progress"] == {2, 4}
    assert groups["finished"] == {7, 9, 10}
    assert groups["paused"] == {5, 6, 8}
    assert groups["not_received"] == {1, 3}
    assert groups["received"] == {2, 4, 5, 6, 7, 8, 9, 10}


def test_unknown_items_give_clear_errors():
    with pytest.raises(standards.UnknownStandardItem, match="no schema for 'citizen'"):
        standards.load_schema("citizen")
    with pytest.raises(standards.UnknownStandardItem, match="no code list 'colours'"):
        standards.load_codelist("colours")


def test_procedure_groups_reference_known_agencies():
    agencies = standards.codes("agencies")
    assert all(r["agency_code"] in agencies for r in standards.load_codelist("procedure_groups"))
