"""Agency history (SCD2 dim_agency_version): seeding keeps versions, as-of lookups, 2025 crosswalk."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

import standards
from warehouse.db import seed_dimensions, upgrade
from warehouse.history import (
    agencies_on,
    agency_on,
    record_agency_history,
    unit_on_scheme,
    units_merged_into,
)
from warehouse.schema import dim_agency, dim_agency_version

DPI = "000.00.04.H62"  # Sở Kế hoạch và Đầu tư
JUSTICE = "000.00.03.H62"


def _versions(conn: sa.Connection, code: str) -> list[dict]:
    t = dim_agency_version
    query = sa.select(t).where(t.c.agency_code == code).order_by(t.c.valid_from)
    return [dict(row) for row in conn.execute(query).mappings()]


def _all_versions(conn: sa.Connection) -> list[tuple]:
    return sorted(tuple(row) for row in conn.execute(sa.select(dim_agency_version)))


def _renamed(code: str, name: str, valid_from: str | None = None) -> list[dict[str, str]]:
    rows = standards.load_codelist("agencies")
    for row in rows:
        if row["agency_code"] == code:
            row["name"] = name
            if valid_from:
                row["valid_from"] = valid_from
    return rows


def test_upgrade_opens_one_version_per_agency(engine):
    with engine.connect() as conn:
        versions = _all_versions(conn)
        agencies = conn.execute(sa.select(sa.func.count()).select_from(dim_agency)).scalar()
        dpi = _versions(conn, DPI)
    assert len(versions) == agencies == len(standards.load_codelist("agencies"))
    # the code list's valid_to (2025-06-30) is the last day in force: the version ends the day after
    assert dpi == [{
        "agency_code": DPI, "valid_from": date(2008, 8, 1), "valid_to": date(2025, 7, 1),
        "name": "Sở Kế hoạch và Đầu tư", "name_en": "Department of Planning and Investment",
        "parent_code": "000.00.00.H62", "level": 2, "admin_unit_code": "26", "is_current": True,
    }]


def test_a_renamed_agency_gets_a_second_version_on_the_seeding_day(engine):
    day = date(2016, 3, 15)
    with engine.begin() as conn:
        change = record_agency_history(conn, _renamed(DPI, "Sở Kế hoạch - Đầu tư"), today=day)
    assert (change.opened, change.closed, change.updated) == (1, 1, 0)
    with engine.connect() as conn:
        old, new = _versions(conn, DPI)
        assert (old["valid_from"], old["valid_to"], old["is_current"]) == (
            date(2008, 8, 1), day, False)
        assert (new["valid_from"], new["valid_to"], new["is_current"]) == (
            day, date(2025, 7, 1), True)
        assert old["name"] == "Sở Kế hoạch và Đầu tư" and new["name"] == "Sở Kế hoạch - Đầu tư"
        # as of a day: the name as it stood then; the change day belongs to the new version
        assert agency_on(conn, DPI, date(2016, 3, 14))["name"] == "Sở Kế hoạch và Đầu tư"
        assert agency_on(conn, DPI, day)["name"] == "Sở Kế hoạch - Đầu tư"
        assert agency_on(conn, DPI, date(2025, 6, 30))["name"] == "Sở Kế hoạch - Đầu tư"
        assert agency_on(conn, DPI, date(2025, 7, 1)) is None  # merged away on 1 July 2025
        assert agency_on(conn, DPI, date(2000, 1, 1)) is None
        other = agency_on(conn, JUSTICE, date(2016, 3, 14))
        assert other["name"] == "Sở Tư pháp"
        on_day = agencies_on(conn, date(2016, 3, 14))
        assert len(on_day) == len(standards.load_codelist("agencies"))
        assert {a["agency_code"]: a["name"] for a in on_day}[DPI] == "Sở Kế hoạch và Đầu tư"
        assert agencies_on(conn, date(2025, 7, 1)) == []


def test_reseeding_the_same_code_list_changes_nothing(engine):
    rows = _renamed(DPI, "Sở Kế hoạch - Đầu tư", valid_from="2016-01-01")
    with engine.begin() as conn:
        record_agency_history(conn, rows, today=date(2017, 1, 1))
    with engine.connect() as conn:
        first = _all_versions(conn)
    with engine.begin() as conn:
        again = record_agency_history(conn, rows, today=date(2018, 6, 1))
    assert (again.opened, again.closed, again.updated) == (0, 0, 0)
    with engine.connect() as conn:
        assert _all_versions(conn) == first
        # the change carried its own date: the versions switch on it, not on the seeding day
        old, new = _versions(conn, DPI)
    assert old["valid_to"] == new["valid_from"] == date(2016, 1, 1)
    # and the whole upgrade (seeding from the unchanged standard) is idempotent as well
    upgrade(engine)
    with engine.connect() as conn:
        before = _all_versions(conn)
    upgrade(engine)
    with engine.connect() as conn:
        assert _all_versions(conn) == before


def test_a_changed_parent_or_unit_opens_a_version_too(engine):
    rows = standards.load_codelist("agencies")
    for row in rows:
        if row["agency_code"] == JUSTICE:
            row["parent_code"], row["admin_unit_code"] = "000.00.01.H62", "243"
    with engine.begin() as conn:
        record_agency_history(conn, rows, today=date(2020, 1, 1))
        old, new = _versions(conn, JUSTICE)
    assert (old["parent_code"], new["parent_code"]) == ("000.00.00.H62", "000.00.01.H62")
    assert (old["admin_unit_code"], new["admin_unit_code"]) == ("26", "243")
    assert old["valid_to"] == new["valid_from"] == date(2020, 1, 1)


def test_an_agency_gone_from_the_code_list_is_closed(engine):
    rows = [row for row in standards.load_codelist("agencies") if row["agency_code"] != JUSTICE]
    # a still-open agency (no valid_to in the code list), then removed
    open_rows = standards.load_codelist("agencies")
    for row in open_rows:
        row["valid_to"] = ""
    with engine.begin() as conn:
        record_agency_history(conn, open_rows, today=date(2019, 1, 1))
        assert _versions(conn, JUSTICE)[-1]["valid_to"] is None
        change = record_agency_history(conn, rows, today=date(2019, 5, 1))
        assert change.closed == 1
        (justice,) = _versions(conn, JUSTICE)
        assert (justice["valid_to"], justice["is_current"]) == (date(2019, 5, 1), False)
        assert agency_on(conn, JUSTICE, date(2019, 4, 30)) is not None
        assert agency_on(conn, JUSTICE, date(2019, 5, 1)) is None
        again = record_agency_history(conn, rows, today=date(2019, 6, 1))
    assert (again.opened, again.closed, again.updated) == (0, 0, 0)


def test_seeding_from_a_modified_standard_keeps_the_history(engine, monkeypatch):
    """db.upgrade's own seeding (not only record_agency_history) maintains the versions."""
    renamed = _renamed(DPI, "Sở Kế hoạch - Đầu tư", valid_from="2016-01-01")
    real = standards.load_codelist
    monkeypatch.setattr(standards, "load_codelist",
                        lambda name: renamed if name == "agencies" else real(name))
    with engine.begin() as conn:
        seed_dimensions(conn, today=date(2016, 2, 1))
        names = [v["name"] for v in _versions(conn, DPI)]
        current = conn.execute(sa.select(dim_agency.c.name)
                               .where(dim_agency.c.agency_code == DPI)).scalar_one()
    assert names == ["Sở Kế hoạch và Đầu tư", "Sở Kế hoạch - Đầu tư"]
    assert current == "Sở Kế hoạch - Đầu tư"  # dim_agency stays the current state


def test_migration_from_0003_fills_the_history_from_dim_agency(warehouse_url):
    upgrade(warehouse_url, revision="0003")  # seeds dim_agency, no history table yet
    upgrade(warehouse_url)
    from warehouse.db import create_engine
    engine = create_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            versions = _all_versions(conn)
            dpi = _versions(conn, DPI)
    finally:
        engine.dispose()
    assert len(versions) == len(standards.load_codelist("agencies"))
    assert [(v["valid_from"], v["valid_to"]) for v in dpi] == [(date(2008, 8, 1), date(2025, 7, 1))]


@pytest.mark.parametrize(("unit", "scheme", "expected"), [
    ("26", "2025", "25"),          # Vĩnh Phúc → Phú Thọ
    ("243", "2025", "25"),         # a district: the level was abolished, its successor the province
    ("08707", "2025", "08707"),    # Phường Tích Sơn → Phường Vĩnh Yên
    ("08710", "2025", "08716"),    # Phường Liên Bảo → Phường Vĩnh Phúc
    ("08710", "legacy", "08710"),
    ("99999", "2025", None),
])
def test_unit_on_scheme(unit, scheme, expected):
    assert unit_on_scheme(unit, scheme) == expected


def test_units_merged_into_is_the_inverse_of_the_2025_crosswalk():
    merged = units_merged_into("08716")
    assert "08710" in merged and len(merged) > 1
    assert all(unit_on_scheme(unit, "2025") == "08716" for unit in merged)
    with pytest.raises(ValueError, match="scheme"):
        unit_on_scheme("26", "1990")
