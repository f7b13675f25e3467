"""Procedures: current state in dim_procedure, online-level history as SCD type 2, as-of answers."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from tests.warehouse.frames import local, procedure, procedure_frame
from warehouse.load import BatchWriter
from warehouse.schema import dim_procedure, dim_procedure_level
from warehouse.views import level_on, procedures_by_level

P1, P2, P3 = "1.005190", "2.000488", "1.003725"


def load(engine, rows, batch_id="procedures-1"):
    with BatchWriter(
        engine, "national_portal", "procedures", "procedure", None, None, batch_id
    ) as w:
        w.add(procedure_frame(rows), None)
        return w.commit(None)


def catalogue():
    return [
        procedure(
            P1,
            0,
            updated=local(2017, 8, 1),
            levels=[(3, date(2015, 5, 1)), (2, date(2010, 1, 1)), (4, date(2017, 1, 1))],
        ),
        procedure(
            P2,
            1,
            updated=local(2017, 8, 1),
            published=date(2012, 1, 1),
            abolished=date(2016, 6, 30),
            levels=[(1, date(2012, 1, 1))],
        ),
        procedure(
            P3,
            2,
            updated=local(2017, 8, 1),
            published=date(2016, 1, 1),
            levels=[(2, date(2016, 1, 1))],
        ),
    ]


def levels(engine, code: str) -> list[tuple]:
    t = dim_procedure_level
    query = (
        sa.select(
            t.c.valid_from, t.c.valid_to, t.c.online_level, t.c.decree42_level, t.c.is_current
        )
        .where(t.c.procedure_code == code)
        .order_by(t.c.valid_from)
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_levels_become_scd2_periods(engine):
    result = load(engine, catalogue())
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 3, 0)
    assert levels(engine, P1) == [
        (date(2010, 1, 1), date(2015, 5, 1), 2, None, False),
        (date(2015, 5, 1), date(2017, 1, 1), 3, "mot_phan", False),
        (date(2017, 1, 1), None, 4, "toan_trinh", True),
    ]
    t = dim_procedure
    with engine.connect() as conn:
        p2 = conn.execute(sa.select(t).where(t.c.procedure_code == P2)).mappings().one()
    assert p2["abolished_on"] == date(2016, 6, 30) and p2["published_on"] == date(2012, 1, 1)
    assert (p2["scope"], p2["fee"], p2["batch_id"]) == ("province", 100000, "procedures-1")
    assert p2["updated_at"] == local(2017, 8, 1)


def test_level_on_a_day(engine):
    load(engine, catalogue())
    cases = {
        date(2009, 12, 31): None,  # not yet published
        date(2010, 1, 1): 2,
        date(2015, 4, 30): 2,
        date(2015, 5, 1): 3,  # valid_from is inclusive, valid_to exclusive
        date(2016, 12, 31): 3,
        date(2017, 1, 1): 4,
        date(2025, 1, 1): 4,
    }
    with engine.connect() as conn:
        assert {day: level_on(conn, P1, day) for day in cases} == cases


def test_procedures_by_level_as_of(engine):
    load(engine, catalogue())
    with engine.connect() as conn:
        assert procedures_by_level(conn, date(2015, 12, 31)) == {1: 1, 3: 1}
        assert procedures_by_level(conn, date(2016, 6, 29)) == {1: 1, 2: 1, 3: 1}
        # abolished on 30 June 2016: no longer counted from that day
        assert procedures_by_level(conn, date(2016, 6, 30)) == {2: 1, 3: 1}
        assert procedures_by_level(conn, date(2017, 8, 31)) == {2: 1, 4: 1}
        assert procedures_by_level(conn, date(2017, 8, 31), agency_code="000.00.00.H62") == {}
        assert level_on(conn, P2, date(2016, 6, 30)) is None
        assert level_on(conn, "9.999999", date(2017, 1, 1)) is None


def test_a_newer_catalogue_replaces_the_history_an_older_one_does_not(engine):
    load(engine, catalogue())
    newer = procedure(
        P1, 0, updated=local(2017, 9, 1), levels=[(2, date(2010, 1, 1)), (4, date(2016, 1, 1))]
    )
    load(engine, [newer], batch_id="procedures-2")
    assert levels(engine, P1) == [
        (date(2010, 1, 1), date(2016, 1, 1), 2, None, False),
        (date(2016, 1, 1), None, 4, "toan_trinh", True),
    ]
    older = procedure(P1, 0, updated=local(2017, 7, 1), levels=[(1, date(2010, 1, 1))])
    load(engine, [older], batch_id="procedures-0")
    assert [row[2] for row in levels(engine, P1)] == [2, 4]
    assert levels(engine, P3) == [(date(2016, 1, 1), None, 2, None, True)]  # untouched


def test_a_procedure_sent_twice_keeps_the_newer_history(engine):
    rows = [
        procedure(P1, 0, updated=local(2017, 8, 1), levels=[(2, date(2010, 1, 1))]),
        procedure(P1, 1, updated=local(2017, 8, 2), levels=[(3, date(2011, 1, 1))]),
    ]
    result = load(engine, rows)
    assert result.rows_deduplicated == 1
    assert levels(engine, P1) == [(date(2011, 1, 1), None, 3, "mot_phan", True)]
