"""Indicator views: dossiers received and finished a month, on time by DATE, quarantine a batch."""

from __future__ import annotations

import sqlalchemy as sa

from tests.warehouse.frames import bad_frame, dossier, dossier_frame, local
from warehouse.load import BatchWriter

OTHER_AGENCY = "000.00.03.H62"


def load(engine, good, bad=None, batch_id="b1"):
    with BatchWriter(engine, "national_portal", "dossiers", "dossier", None, None, batch_id) as w:
        w.add(
            dossier_frame(good) if good else None,
            bad_frame(bad, [["status.in_codelist"]] * len(bad)) if bad else None,
        )
        return w.commit(None)


def query(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.text(sql)))


def test_received_counts_only_received_statuses(engine):
    load(
        engine,
        [
            dossier(1, 0, updated=local(2017, 1, 6), status=1),  # newly registered: not received
            dossier(2, 1, updated=local(2017, 1, 6), status=3),  # not accepted: not received
            dossier(3, 2, updated=local(2017, 1, 6), status=2),
            dossier(4, 3, updated=local(2017, 1, 6), status=10, channel=2),
            dossier(5, 4, updated=local(2017, 1, 6), status=8, channel=2),
            dossier(6, 5, updated=local(2017, 2, 6), status=4, received=local(2017, 2, 1, 7)),
            dossier(
                7,
                6,
                updated=local(2017, 2, 6),
                status=4,
                agency=OTHER_AGENCY,
                received=local(2017, 2, 1, 6, 59),
            ),  # 2017-01-31 23:59 UTC: a February dossier
        ],
    )
    assert query(
        engine, "SELECT received_month, agency_code, channel, dossiers FROM mart_dossier_received"
    ) == [
        ("2017-01", "000.00.04.H62", 1, 1),
        ("2017-01", "000.00.04.H62", 2, 2),
        ("2017-02", "000.00.03.H62", 1, 1),
        ("2017-02", "000.00.04.H62", 1, 1),
    ]


def test_finished_compares_dates_not_times(engine):
    due = local(2017, 3, 10, 8)
    load(
        engine,
        [
            dossier(
                1, 0, updated=local(2017, 3, 20), status=10, due=due, finished=local(2017, 3, 9, 17)
            ),
            # later in the day than the due time, but the same date: on time
            dossier(
                2, 1, updated=local(2017, 3, 20), status=9, due=due, finished=local(2017, 3, 10, 16)
            ),
            # the same local date, although 06:00 local is still 9 March in UTC
            dossier(
                3, 2, updated=local(2017, 3, 20), status=9, due=due, finished=local(2017, 3, 10, 6)
            ),
            dossier(
                4, 3, updated=local(2017, 3, 20), status=7, due=due, finished=local(2017, 3, 11, 7)
            ),
            dossier(
                5, 4, updated=local(2017, 3, 20), status=9, finished=local(2017, 4, 2, 9)
            ),  # no due date
            dossier(
                6, 5, updated=local(2017, 3, 20), status=4, due=due
            ),  # in progress: not finished
        ],
    )
    assert query(
        engine,
        "SELECT finished_month, agency_code, procedure_code, finished, early, on_time, "
        "late FROM mart_dossier_finished",
    ) == [
        ("2017-03", "000.00.04.H62", "1.005190", 4, 1, 2, 1),
        ("2017-04", "000.00.04.H62", "1.005190", 1, 0, 0, 0),
    ]


def test_quarantine_summary_counts_rows_per_batch(engine):
    load(
        engine,
        [dossier(1, 0, updated=local(2017, 1, 6))],
        [dossier(2, 1, updated=local(2017, 1, 6)), dossier(3, 2, updated=local(2017, 1, 6))],
        "b1",
    )
    load(engine, [], [dossier(4, 0, updated=local(2017, 1, 6))], "b2")
    assert query(
        engine, 'SELECT batch_id, source, stream, "rows" FROM mart_quarantine_summary'
    ) == [
        ("b1", "national_portal", "dossiers", 2),
        ("b2", "national_portal", "dossiers", 1),
    ]
