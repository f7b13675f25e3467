"""Reconciliation: one dossier from several sources is one fact row chosen by source precedence,
and every contributing source record stays in fact_dossier_source (docs/reconciliation.md)."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from alembic import command

from tests.warehouse.frames import bad_frame, code, dossier, dossier_frame, events_frame, local
from warehouse.db import alembic_config, upgrade
from warehouse.load import SOURCE_PRECEDENCE, BatchWriter, source_rank, source_rank_sql
from warehouse.schema import metadata

WINDOW = (local(2017, 1, 1), local(2017, 2, 1))
ONE_STOP = "one_stop:000.00.03.H62"
# Each source's version of dossier 1: the one-stop version is the OLDEST, LGSP's the newest,
# so only the source rank can make the one-stop version win.
VERSIONS = {
    "national_portal": dict(updated=local(2017, 1, 6, 10), status=4, summary="portal",
                            source_record_id=code(1)),
    ONE_STOP: dict(updated=local(2017, 1, 6, 9), status=9, summary="one-stop",
                   source_record_id="OS-000123"),
    "lgsp": dict(updated=local(2017, 1, 6, 12), status=5, summary="lgsp",
                 source_record_id="LGSP-msg-77"),
}


def load(engine, source: str, rows, *, batch_id: str, bad=None, events=None):
    with BatchWriter(engine, source, "dossiers", "dossier", *WINDOW, batch_id) as writer:
        writer.add(dossier_frame(rows), bad, events)
        return writer.commit(max(r["updated_at"] for r in rows))


def version(source: str, row: int = 0, n: int = 1, **changes):
    fields = {**VERSIONS[source], **changes}
    return dossier(n, row, source_system=source, **fields)


def load_version(engine, source: str, batch_id: str | None = None, **changes):
    return load(engine, source, [version(source, **changes)], batch_id=batch_id or f"b-{source}")


def facts(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT dossier_code, source_system, source_record_id, summary, status, batch_id "
            "FROM fact_dossier ORDER BY dossier_code")).mappings()
        return [dict(row) for row in rows]


def lineage(engine) -> set[tuple]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT dossier_code, source_system, source_record_id, batch_id "
            "FROM fact_dossier_source")).tuples())


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in metadata.tables.items()}


def test_source_rank_mapping():
    assert source_rank(ONE_STOP) == source_rank("one_stop") == SOURCE_PRECEDENCE["one_stop"] == 3
    assert source_rank("lgsp") == 2
    assert source_rank("national_portal") == 1
    assert source_rank("somewhere_else") == source_rank(None) == source_rank("one_stopper") == 0


def test_sql_rank_is_the_python_rank(engine):
    values = [ONE_STOP, "one_stop", "lgsp", "lgsp:x", "national_portal", "one_stopper", "x", "",
              "oneXstop:1"]
    with engine.connect() as conn:
        for value in values:
            got = conn.execute(sa.select(source_rank_sql(sa.literal(value, sa.String())))).scalar()
            assert got == source_rank(value), value


@pytest.mark.parametrize("order", list(itertools.permutations(VERSIONS)),
                         ids=lambda o: ">".join(s.split(":")[0] for s in o))
def test_one_dossier_from_three_sources_in_any_order(engine, order):
    for source in order:
        load_version(engine, source)
    [fact] = facts(engine)
    assert fact == {"dossier_code": code(1), "source_system": ONE_STOP,
                    "source_record_id": "OS-000123", "summary": "one-stop", "status": 9,
                    "batch_id": f"b-{ONE_STOP}"}
    assert lineage(engine) == {
        (code(1), "national_portal", code(1), "b-national_portal"),
        (code(1), ONE_STOP, "OS-000123", f"b-{ONE_STOP}"),
        (code(1), "lgsp", "LGSP-msg-77", "b-lgsp"),
    }


def test_lgsp_beats_the_portal_even_when_older(engine):
    load_version(engine, "lgsp", updated=local(2017, 1, 6, 8))
    load_version(engine, "national_portal", updated=local(2017, 1, 6, 20))
    [fact] = facts(engine)
    assert (fact["source_system"], fact["summary"]) == ("lgsp", "lgsp")


def test_same_rank_the_newer_wins_and_the_older_never_overwrites(engine):
    load_version(engine, "national_portal", "b1", summary="first")
    load_version(engine, "national_portal", "b2", summary="second", updated=local(2017, 1, 7))
    load_version(engine, "national_portal", "b0", summary="stale", updated=local(2017, 1, 5))
    [fact] = facts(engine)
    assert (fact["summary"], fact["batch_id"]) == ("second", "b2")
    # The same source record: one lineage row, pointing at the batch of its latest version.
    assert lineage(engine) == {(code(1), "national_portal", code(1), "b2")}


def test_two_agencies_one_stop_systems_share_a_rank(engine):
    load_version(engine, ONE_STOP, source_record_id="A-1")
    other = "one_stop:000.00.05.H62"
    load(engine, other, [dossier(1, 0, updated=local(2017, 1, 8), source_system=other,
                                 source_record_id="B-1", summary="agency B")], batch_id="b-B")
    [fact] = facts(engine)
    assert (fact["source_system"], fact["summary"]) == (other, "agency B")
    assert {row[1] for row in lineage(engine)} == {ONE_STOP, other}


def test_events_follow_the_winning_source(engine):
    steps = events_frame([(code(1), 1, 2, local(2017, 1, 5, 8, 30), "one-stop step")])
    load(engine, ONE_STOP, [version(ONE_STOP)], batch_id="b-os", events=steps)
    portal_steps = events_frame([(code(1), 1, 2, local(2017, 1, 5, 8, 30), "portal step"),
                                 (code(1), 2, 4, local(2017, 1, 6, 10), "portal step 2")])
    load(engine, "national_portal", [version("national_portal")], batch_id="b-np",
         events=portal_steps)
    with engine.connect() as conn:
        notes = conn.execute(sa.text("SELECT note FROM fact_dossier_event")).scalars().all()
    assert notes == ["one-stop step"]


def test_rerunning_batches_keeps_every_count(engine):
    for source in VERSIONS:
        load_version(engine, source)
    first_counts, first_facts, first_lineage = counts(engine), facts(engine), lineage(engine)
    for source in reversed(list(VERSIONS)):  # re-run every batch, in another order
        load_version(engine, source)
    assert counts(engine) == first_counts
    assert facts(engine) == first_facts
    assert lineage(engine) == first_lineage
    assert first_counts["fact_dossier"] == 1
    assert first_counts["fact_dossier_source"] == 3


def test_one_batch_mixing_sources_ranks_like_separate_batches(engine):
    rows = [version("national_portal", 0), version("lgsp", 1), version(ONE_STOP, 2),
            version("lgsp", 3, n=2), version("national_portal", 4, n=2)]
    result = load(engine, "mixed", rows, batch_id="b-mixed")
    assert result.rows_deduplicated == 3
    by_code = {f["dossier_code"]: f for f in facts(engine)}
    assert by_code[code(1)]["source_system"] == ONE_STOP
    assert by_code[code(2)]["source_system"] == "lgsp"
    assert len(lineage(engine)) == 5  # every source record, the deduplicated ones included


def test_quarantined_rows_write_no_lineage(engine):
    bad = bad_frame([dossier(2, 1, updated=local(2017, 1, 6), source_system="lgsp",
                             source_record_id="LGSP-bad")], [["agency_code.in_codelist"]])
    result = load(engine, "lgsp", [version("lgsp", 0)], batch_id="b-lgsp", bad=bad)
    assert result.rows_quarantined == 1
    assert lineage(engine) == {(code(1), "lgsp", "LGSP-msg-77", "b-lgsp")}
    assert [f["dossier_code"] for f in facts(engine)] == [code(1)]


def test_downgrade_of_0002_drops_lineage_and_upgrade_backfills_it(engine):
    load_version(engine, ONE_STOP)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    assert "fact_dossier_source" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    assert lineage(engine) == {(code(1), ONE_STOP, "OS-000123", f"b-{ONE_STOP}")}
