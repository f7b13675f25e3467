"""The quality gate: every bad row found with every rule it broke, good rows passed untouched."""

from __future__ import annotations

import random
from datetime import date

import pandas as pd
import pytest

import standards
from quality import QualityGate, QualityGateError, build_suite, rule_of

TZ = "Asia/Ho_Chi_Minh"
CATALOGUE = {"procedure_code": ["1.005190", "1.005191", "2.000488"]}
DOSSIER_CODES = ("channel", "applicant_type", "applicant_id_type", "status", "paid_online")
DOSSIER_TIMES = ("received_at", "due_at", "finished_at", "returned_at", "updated_at")


def at(text: str | None) -> pd.Timestamp | None:
    return pd.Timestamp(text, tz=TZ) if text else None


def dossier_row(i: int, **changes) -> dict:
    """One valid standard dossier row, as the transform makes it, with `changes` applied."""
    row = {
        "dossier_code": f"000.00.04.H62-160105-{i:04d}",
        "procedure_code": "1.005190",
        "agency_code": "000.00.04.H62",
        "admin_unit_code": "08707",
        "procedure_name": "Đăng ký thành lập doanh nghiệp",
        "summary": None,
        "channel": 2,
        "applicant_type": 2,
        "applicant_id_hash": f"{i:064x}",
        "applicant_id_type": 1,
        "received_at": at("2016-01-05 09:00"),
        "due_at": at("2016-01-12 17:00"),
        "finished_at": at("2016-01-11 10:00"),
        "returned_at": None,
        "status": 9,
        "fee": 0.0,
        "paid_online": 0,
        "updated_at": at("2016-01-11 10:00"),
        "source_system": "national_portal",
        "source_record_id": f"000.00.04.H62-160105-{i:04d}",
        "_row": i,
        "_errors": [],
        "_payload": "{}",
        "_record_key": f"000.00.04.H62-160105-{i:04d}",
    }
    row.update(changes)
    return row


def dossier_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows in the dtypes of the transform: nullable Int64 codes, tz-aware times, float fee."""
    frame = pd.DataFrame(rows)
    for column in DOSSIER_CODES:
        frame[column] = frame[column].astype("Int64")
    for column in DOSSIER_TIMES:
        frame[column] = pd.Series(
            pd.array(list(frame[column]), dtype=pd.DatetimeTZDtype(tz=TZ)), index=frame.index
        )
    frame["fee"] = frame["fee"].astype("float64")
    frame["received_date"] = [t.date() if pd.notna(t) else None for t in frame["received_at"]]
    frame["received_month"] = [
        t.strftime("%Y-%m") if pd.notna(t) else None for t in frame["received_at"]
    ]
    frame["due_date"] = [t.date() if pd.notna(t) else None for t in frame["due_at"]]
    frame["finished_date"] = [t.date() if pd.notna(t) else None for t in frame["finished_at"]]
    return frame


def failed_by_row(result) -> dict[int, list[str]]:
    return dict(zip(result.bad["_row"], result.bad["failed_rules"], strict=True))


@pytest.fixture(scope="module")
def dossier_gate() -> QualityGate:
    return QualityGate("dossier", CATALOGUE)


@pytest.fixture(scope="module")
def procedure_gate() -> QualityGate:
    return QualityGate("procedure")


def test_a_clean_frame_passes_entirely(dossier_gate):
    frame = dossier_frame([dossier_row(i) for i in range(20)])

    result = dossier_gate.split(frame)

    assert result.good.equals(frame)
    assert result.bad.empty and "failed_rules" in result.bad.columns
    assert result.rule_counts == {}
    assert result.gx_result.success


PLANTED = [
    pytest.param({"dossier_code": None}, ["dossier_code.required"], id="missing-code"),
    pytest.param({"dossier_code": "   "}, ["dossier_code.required"], id="blank-code"),
    pytest.param({"dossier_code": "HS-0001"}, ["dossier_code.pattern"], id="code-pattern"),
    pytest.param({"procedure_code": None}, ["procedure_code.required"], id="no-procedure"),
    pytest.param(
        {"procedure_code": "9.999999"},
        ["procedure_code.in_catalogue"],
        id="procedure-not-in-catalogue",
    ),
    pytest.param(
        {"agency_code": "000.00.99.H62"}, ["agency_code.in_codelist"], id="unknown-agency"
    ),
    pytest.param({"agency_code": None}, ["agency_code.required"], id="no-agency"),
    pytest.param(
        {"admin_unit_code": "99999"}, ["admin_unit_code.in_codelist"], id="unknown-admin-unit"
    ),
    pytest.param(
        {"admin_unit_code": "8707"},
        ["admin_unit_code.in_codelist", "admin_unit_code.pattern"],
        id="admin-unit-pattern",
    ),
    pytest.param({"channel": 9}, ["channel.in_codelist"], id="unknown-channel"),
    pytest.param({"channel": None}, ["channel.required"], id="no-channel"),
    pytest.param({"applicant_type": 5}, ["applicant_type.in_codelist"], id="applicant-type"),
    pytest.param({"applicant_type": None}, ["applicant_type.required"], id="no-applicant-type"),
    pytest.param(
        {"applicant_id_hash": "123456789"},
        ["applicant_id_hash.pattern"],
        id="raw-id-instead-of-hash",
    ),
    pytest.param({"applicant_id_type": 3}, ["applicant_id_type.in_codelist"], id="id-type"),
    pytest.param({"received_at": None}, ["received_at.required"], id="no-receipt"),
    pytest.param(
        {"due_at": at("2016-01-04 09:00")},
        ["due_at.not_before_received_at"],
        id="due-before-receipt",
    ),
    pytest.param({"status": 11}, ["status.in_codelist"], id="unknown-status"),
    pytest.param({"status": None}, ["status.required"], id="no-status"),
    pytest.param({"fee": -50000.0}, ["fee.minimum"], id="negative-fee"),
    pytest.param({"paid_online": 2}, ["paid_online.in_codelist"], id="paid-online"),
    pytest.param({"updated_at": None}, ["updated_at.required"], id="no-update-time"),
    pytest.param({"source_system": None}, ["source_system.required"], id="no-source-system"),
    pytest.param({"source_record_id": ""}, ["source_record_id.required"], id="no-source-id"),
    pytest.param(
        {"_errors": ["applicant_id.valid_format"]},
        ["applicant_id.valid_format"],
        id="transform-error-only",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), PLANTED)
def test_each_rule_is_caught_on_a_planted_row(dossier_gate, changes, expected):
    frame = dossier_frame([dossier_row(i, **(changes if i == 2 else {})) for i in range(5)])

    result = dossier_gate.split(frame)

    assert failed_by_row(result) == {2: expected}
    assert list(result.good["_row"]) == [0, 1, 3, 4]
    assert result.rule_counts == dict.fromkeys(expected, 1)


def test_a_row_breaking_two_rules_lists_both(dossier_gate):
    frame = dossier_frame(
        [
            dossier_row(0),
            dossier_row(1, channel=9, fee=-1.0),
            dossier_row(2, agency_code="H62", _errors=["applicant_id.valid_format"]),
        ]
    )

    result = dossier_gate.split(frame)

    assert failed_by_row(result) == {
        1: ["channel.in_codelist", "fee.minimum"],
        2: ["agency_code.in_codelist", "agency_code.pattern", "applicant_id.valid_format"],
    }
    assert result.rule_counts == {
        "agency_code.in_codelist": 1,
        "agency_code.pattern": 1,
        "applicant_id.valid_format": 1,
        "channel.in_codelist": 1,
        "fee.minimum": 1,
    }


def test_nulls_in_optional_columns_are_fine(dossier_gate):
    optional = {
        "admin_unit_code": None,
        "procedure_name": None,
        "summary": "",
        "applicant_id_hash": None,
        "applicant_id_type": None,
        "due_at": None,
        "finished_at": None,
        "returned_at": None,
        "fee": float("nan"),
        "paid_online": None,
    }
    frame = dossier_frame([dossier_row(i, **optional) for i in range(3)])

    result = dossier_gate.split(frame)

    assert len(result.good) == 3 and result.bad.empty


def test_an_unparseable_date_is_not_also_reported_missing(dossier_gate):
    frame = dossier_frame(
        [
            dossier_row(0, received_at=None, _errors=["received_at.valid_datetime"]),
            dossier_row(1, received_at=None),
            dossier_row(2, due_at=None, _errors=["due_at.valid_datetime"]),
            dossier_row(
                3, received_at=None, updated_at=None, _errors=["received_at.valid_datetime"]
            ),
        ]
    )

    result = dossier_gate.split(frame)

    assert failed_by_row(result) == {
        0: ["received_at.valid_datetime"],
        1: ["received_at.required"],
        2: ["due_at.valid_datetime"],
        3: ["received_at.valid_datetime", "updated_at.required"],
    }


def test_a_code_the_transform_could_not_read_is_not_also_reported_missing(dossier_gate):
    frame = dossier_frame([dossier_row(0, channel=None, _errors=["channel.in_codelist"])])

    result = dossier_gate.split(frame)

    assert failed_by_row(result) == {0: ["channel.in_codelist"]}


def test_every_bad_row_of_a_big_chunk_is_identified_past_gxs_200_row_lists(dossier_gate):
    plants = [
        ({"channel": 7}, ["channel.in_codelist"]),
        ({"agency_code": "000.00.98.H62"}, ["agency_code.in_codelist"]),
        ({"procedure_code": "1.999999"}, ["procedure_code.in_catalogue"]),
        ({"fee": -1.0, "status": 0}, ["fee.minimum", "status.in_codelist"]),
        ({"dossier_code": None}, ["dossier_code.required"]),
        (
            {"received_at": None, "_errors": ["received_at.valid_datetime"]},
            ["received_at.valid_datetime"],
        ),
        ({"due_at": at("2015-12-31 08:00")}, ["due_at.not_before_received_at"]),
    ]
    rng = random.Random(20170801)
    bad_rows = set(rng.sample(range(5000), 700))
    expected: dict[int, list[str]] = {}
    rows = []
    for i in range(5000):
        row_id = 100_000 + i  # `_row` is the batch position, not the chunk's
        changes, rules = plants[i % len(plants)] if i in bad_rows else ({}, [])
        if i in bad_rows and i % 3 == 0:  # a third of them broken twice over
            changes, rules = {**changes, "channel": 7}, sorted({*rules, "channel.in_codelist"})
        rows.append(dossier_row(row_id, **changes))
        if rules:
            expected[row_id] = rules
    frame = dossier_frame(rows)
    frame.index = pd.RangeIndex(5000, 0, -1)  # the chunk's own index plays no part

    result = dossier_gate.split(frame)

    assert failed_by_row(result) == expected
    assert len(result.good) == 4300 and len(result.good) + len(result.bad) == len(frame)
    counts: dict[str, int] = {}
    for rules in expected.values():
        for rule in rules:
            counts[rule] = counts.get(rule, 0) + 1
    assert result.rule_counts == dict(sorted(counts.items()))
    assert counts["channel.in_codelist"] > 200  # past GX's partial and 200-value lists
    assert sum(counts.values()) > 700  # the rows broken twice count once per rule
    assert all(n > 0 for n in counts.values()) and len(expected) == 700


def test_the_gate_is_reused_chunk_after_chunk(dossier_gate, procedure_gate):
    first = dossier_gate.split(dossier_frame([dossier_row(i, channel=9) for i in range(3)]))
    other = procedure_gate.split(procedure_frame([procedure_row(0)]))
    second = dossier_gate.split(dossier_frame([dossier_row(i) for i in range(10, 13)]))

    assert first.rule_counts == {"channel.in_codelist": 3}
    assert len(other.good) == 1
    assert len(second.good) == 3 and second.rule_counts == {}


def test_validation_prints_nothing(dossier_gate, capfd):
    dossier_gate.split(dossier_frame([dossier_row(i, fee=-1.0) for i in range(50)]))

    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no progress bars, no GX chatter


def test_a_chunk_lacking_a_standard_column_is_refused(dossier_gate):
    frame = dossier_frame([dossier_row(0)]).drop(columns=["status"])

    with pytest.raises(QualityGateError, match="status"):
        dossier_gate.split(frame)


def test_a_rule_gx_cannot_check_fails_the_chunk_instead_of_passing_it(dossier_gate):
    frame = dossier_frame([dossier_row(0), dossier_row(1)])
    frame["fee"] = pd.Series(["50.000đ", 1.0], dtype=object)

    with pytest.raises(QualityGateError, match="fee.minimum"):
        dossier_gate.split(frame)


def test_duplicate_row_ids_are_refused(dossier_gate):
    frame = dossier_frame([dossier_row(0), dossier_row(0)])

    with pytest.raises(QualityGateError, match="_row"):
        dossier_gate.split(frame)


def test_an_empty_chunk_splits_into_two_empty_frames(dossier_gate):
    result = dossier_gate.split(dossier_frame([dossier_row(0)]).iloc[:0])

    assert result.good.empty and result.bad.empty and result.rule_counts == {}


# --- procedure: list-valued `levels` checked in Python -----------------------------------------


def procedure_row(i: int, **changes) -> dict:
    row = {
        "procedure_code": f"1.{5190 + i:06d}",
        "name": "Đăng ký thành lập doanh nghiệp",
        "field_code": "G01",
        "field_name": "Thành lập và phát triển doanh nghiệp",
        "agency_code": "000.00.04.H62",
        "scope": "province",
        "fee": 100000.0,
        "processing_days": 3,
        "published_on": date(2014, 5, 1),
        "abolished_on": None,
        "levels": [
            {"online_level": 2, "valid_from": date(2014, 5, 1)},
            {"online_level": 3, "valid_from": date(2015, 5, 1)},
        ],
        "updated_at": at("2017-08-01 00:00"),
        "source_system": "national_portal",
        "source_record_id": f"1.{5190 + i:06d}",
        "_row": i,
        "_errors": [],
        "_payload": "{}",
        "_record_key": f"1.{5190 + i:06d}",
    }
    row.update(changes)
    return row


def procedure_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["processing_days"] = frame["processing_days"].astype("Int64")
    frame["fee"] = frame["fee"].astype("float64")
    return frame


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"levels": []}, ["levels.required"]),
        ({"levels": None}, ["levels.required"]),
        ({"levels": [{"online_level": 5, "valid_from": date(2014, 5, 1)}]}, ["levels.in_codelist"]),
        (
            {
                "levels": [
                    {"online_level": 2, "valid_from": date(2014, 5, 1)},
                    {"online_level": None, "valid_from": date(2015, 5, 1)},
                ]
            },
            ["levels.in_codelist"],
        ),
        ({"agency_code": "000.00.99.H62"}, ["agency_code.in_codelist"]),
        ({"scope": "nation"}, ["scope.in_codelist"]),
        ({"scope": None}, ["scope.required"]),
        ({"name": " "}, ["name.required"]),
        ({"procedure_code": "1.5190"}, ["procedure_code.pattern"]),
        ({"processing_days": -1}, ["processing_days.minimum"]),
        (
            {"fee": -1.0, "levels": [{"online_level": 0, "valid_from": date(2014, 5, 1)}]},
            ["fee.minimum", "levels.in_codelist"],
        ),
        (
            {"published_on": None, "levels": [], "_errors": ["published_on.valid_datetime"]},
            ["levels.required", "published_on.valid_datetime"],
        ),
    ],
)
def test_procedure_rules_including_the_level_history(procedure_gate, changes, expected):
    frame = procedure_frame([procedure_row(i, **(changes if i == 1 else {})) for i in range(3)])

    result = procedure_gate.split(frame)

    assert failed_by_row(result) == {1: expected}
    assert list(result.good["_row"]) == [0, 2]
    assert result.rule_counts == dict.fromkeys(expected, 1)


def test_a_clean_procedure_frame_passes_with_optional_nulls(procedure_gate):
    frame = procedure_frame(
        [
            procedure_row(0),
            procedure_row(
                1,
                fee=None,
                processing_days=None,
                field_name=None,
                levels=[{"online_level": "4", "valid_from": "2016"}],
            ),
        ]
    )

    result = procedure_gate.split(frame)

    assert len(result.good) == 2 and result.rule_counts == {}


def test_event_frames_need_no_row_column():
    gate = QualityGate("dossier_event")
    frame = pd.DataFrame(
        {
            "dossier_code": ["000.00.04.H62-160105-0001"] * 3,
            "seq": pd.array([1, 0, 2], dtype="Int64"),
            "status": pd.array([2, 4, 99], dtype="Int64"),
            "occurred_at": [at("2016-01-05 09:00"), at("2016-01-06 09:00"), None],
            "note": [None, "x", None],
        }
    )

    result = gate.split(frame)

    assert list(result.bad["failed_rules"]) == [
        ["seq.minimum"],
        ["occurred_at.required", "status.in_codelist"],
    ]
    assert list(result.good.index) == [0]


# --- the suite is generated from the schema ----------------------------------------------------


@pytest.mark.parametrize("entity", standards.ENTITIES)
def test_the_suite_has_a_rule_for_every_constraint_of_the_schema(entity):
    schema = standards.load_schema(entity)
    rules = {rule_of(e) for e in build_suite(entity).expectations}

    for column, prop in schema["properties"].items():
        if prop.get("type") in ("array", "object"):
            continue  # checked by the gate in Python
        if column in schema["required"]:
            assert f"{column}.required" in rules
        if "pattern" in prop:
            assert f"{column}.pattern" in rules
        if "minimum" in prop:
            assert f"{column}.minimum" in rules
        if "x-codelist" in prop or "enum" in prop:
            assert f"{column}.in_codelist" in rules
        if "x-not-before" in prop:
            assert f"{column}.not_before_{prop['x-not-before']}" in rules


def test_code_sets_come_from_the_code_lists_typed_like_their_columns():
    sets = {
        rule_of(e): e.value_set
        for e in build_suite("dossier").expectations
        if hasattr(e, "value_set")
    }

    assert sets["status.in_codelist"] == sorted(int(c) for c in standards.codes("dossier_status"))
    assert sets["agency_code.in_codelist"] == sorted(standards.codes("agencies"))
    assert "procedure_code.in_catalogue" not in sets  # no catalogue given: nothing to check


def test_a_code_added_to_a_code_list_reaches_the_gate(monkeypatch):
    codes = standards.codes
    monkeypatch.setattr(
        standards, "codes", lambda name: codes(name) | {"4"} if name == "channel" else codes(name)
    )
    frame = dossier_frame([dossier_row(0, channel=4), dossier_row(1, channel=5)])

    result = QualityGate("dossier", CATALOGUE).split(frame)

    assert failed_by_row(result) == {1: ["channel.in_codelist"]}


def test_a_reference_set_for_a_column_without_x_references_is_refused():
    with pytest.raises(ValueError, match="agency_code"):
        build_suite("dossier", {"agency_code": ["000.00.04.H62"]})
