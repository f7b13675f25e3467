"""The window a DAG run of a windowed source syncs: params, its data interval, or incremental."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from connectors.base import Window
from pipeline.sync import cover_watermark_gap
from pipeline.tasks import WindowChoice, choose_window, run_sync, window_from_context
from tests.province import TEST_KEY, connection_for, settings
from tests.province import run_sync as sync_portal
from transforms.timefmt import LOCAL_TZ

HOUR_START = datetime(2016, 3, 1, 10, tzinfo=LOCAL_TZ)
HOUR_END = datetime(2016, 3, 1, 11, tzinfo=LOCAL_TZ)
LOOKBACK = 60


def choose(run_type, start=None, end=None, interval=(HOUR_START, HOUR_END)) -> WindowChoice:
    return choose_window(start=start, end=end, run_type=run_type, data_interval_start=interval[0],
                         data_interval_end=interval[1], lookback_minutes=LOOKBACK)


@pytest.mark.parametrize("run_type", ["manual", "scheduled", "backfill", None])
def test_params_start_and_end_are_the_exact_window_of_any_run(run_type):
    choice = choose(run_type, "2000-01-01T00:00:00+07:00", "2017-09-01T00:00:00")  # naive: Vietnam time
    assert choice == WindowChoice(Window(datetime(2000, 1, 1, tzinfo=LOCAL_TZ), datetime(2017, 9, 1, tzinfo=LOCAL_TZ)),
                                  cover_gap=False, reason="params")


def test_a_scheduled_run_syncs_its_interval_from_the_look_back_and_may_cover_a_gap():
    choice = choose("scheduled")
    assert choice.window == Window(HOUR_START - timedelta(minutes=LOOKBACK), HOUR_END)
    assert choice.cover_gap is True


def test_a_backfill_run_syncs_exactly_its_interval_and_the_same_interval_twice_alike():
    choice = choose("backfill")
    assert choice.window == Window(HOUR_START - timedelta(minutes=LOOKBACK), HOUR_END)
    assert choice.cover_gap is False
    assert choose("backfill") == choice  # the same interval, the same window: the same batch id


def test_an_interval_in_utc_is_the_same_window_in_vietnam_time():
    utc = (HOUR_START.astimezone(UTC), HOUR_END.astimezone(UTC))
    window = choose("scheduled", interval=utc).window
    assert window == choose("scheduled").window
    assert window is not None and window.start.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Ho_Chi_Minh"])
def test_an_interval_of_pendulum_datetimes_as_airflow_passes_them_is_an_aware_window(zone):
    # Airflow's task context holds pendulum DateTimes; `-` on one in a zoneinfo zone drops the zone
    # (a real scheduler's first scheduled run failed on it: "Window.start must be timezone-aware")
    import pendulum

    interval = (pendulum.instance(HOUR_START).in_timezone(zone), pendulum.instance(HOUR_END).in_timezone(zone))
    window = choose("scheduled", interval=interval).window
    assert window == choose("scheduled").window
    assert window is not None and type(window.start) is datetime and window.start.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("run_type,interval", [
    ("manual", (HOUR_START, HOUR_END)),            # `airflow dags trigger` without params: sync what is new
    ("asset_triggered", (HOUR_START, HOUR_END)),
    ("scheduled", (None, None)),                   # no logical date
    ("scheduled", (HOUR_END, HOUR_END)),           # an empty interval (a trigger timetable)
])
def test_other_runs_are_incremental_from_the_watermark(run_type, interval):
    assert choose(run_type, interval=interval) == WindowChoice(None)


def test_half_a_window_in_the_params_is_an_error():
    with pytest.raises(ValueError, match="both start and end"):
        choose("manual", start="2016-01-01")


def test_window_from_context_reads_the_task_context():
    context = {"params": {"start": None, "end": None}, "dag_run": SimpleNamespace(run_type="backfill"),
               "data_interval_start": HOUR_START, "data_interval_end": HOUR_END}
    assert window_from_context(context, LOOKBACK) == choose("backfill")


@pytest.mark.parametrize("watermark,expected_start", [
    (HOUR_START - timedelta(minutes=30), HOUR_START - timedelta(minutes=60)),   # within the look-back: as is
    (HOUR_START + timedelta(minutes=30), HOUR_START - timedelta(minutes=60)),   # ahead (a re-run): as is
    (HOUR_START - timedelta(hours=5), HOUR_START - timedelta(hours=6)),         # runs missed: from the watermark
    (None, datetime(2000, 1, 1, tzinfo=LOCAL_TZ)),                              # nothing loaded yet: from the start
])
def test_a_lagging_watermark_widens_a_scheduled_window_back_to_it(watermark, expected_start):
    window = Window(HOUR_START - timedelta(minutes=LOOKBACK), HOUR_END)
    covered = cover_watermark_gap(window, watermark, settings(lookback_minutes=LOOKBACK))
    assert covered == Window(expected_start, HOUR_END)


def _context(run_type: str, start: datetime, end: datetime) -> dict:
    return {"params": {}, "dag_run": SimpleNamespace(run_type=run_type), "data_interval_start": start,
            "data_interval_end": end}


def test_backfill_runs_replace_their_batches_and_a_scheduled_run_covers_the_gap(sqlite_url, portal, monkeypatch):
    from warehouse.state import get_watermark

    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("LIENTHONG_LOOKBACK_MINUTES", str(LOOKBACK))
    # the whole catalogue, then the dossiers up to the end of 2015: the watermark is then in December 2015
    sync_portal(sqlite_url, portal, streams=["procedures"])
    sync_portal(sqlite_url, portal, streams=["dossiers"], window=Window(datetime(2000, 1, 1, tzinfo=LOCAL_TZ),
                                                                        datetime(2016, 1, 1, tzinfo=LOCAL_TZ)))
    connection = connection_for(portal)
    days = [(datetime(2016, 3, day, tzinfo=LOCAL_TZ), datetime(2016, 3, day + 1, tzinfo=LOCAL_TZ)) for day in (1, 2)]

    def counts() -> tuple[int, int]:
        engine = sa.create_engine(sqlite_url)
        with engine.connect() as conn:
            batches = conn.execute(sa.text("SELECT count(*) FROM ops_batch")).scalar_one()
            dossiers = conn.execute(sa.text("SELECT count(*) FROM fact_dossier")).scalar_one()
        engine.dispose()
        return batches, dossiers

    first = [run_sync("national_portal", "dossiers", connection, context=_context("backfill", *day)) for day in days]
    after_first = counts()
    again = [run_sync("national_portal", "dossiers", connection, context=_context("backfill", *day)) for day in days]
    assert [s["batch_id"] for s in again] == [s["batch_id"] for s in first]
    assert counts() == after_first  # re-running the backfill replaced its batches
    assert [s["window_start"] for s in first] == [(start - timedelta(minutes=LOOKBACK)).isoformat()
                                                   for start, _ in days]
    assert sum(s["rows_read"] for s in first) > 0

    engine = sa.create_engine(sqlite_url)
    watermark = get_watermark(engine, "national_portal", "dossiers")
    engine.dispose()
    assert watermark is not None and watermark.astimezone(LOCAL_TZ) < datetime(2016, 3, 3, tzinfo=LOCAL_TZ)
    # a scheduled hour long after the watermark (runs missed): it syncs from the watermark
    hour = (datetime(2016, 6, 1, 10, tzinfo=LOCAL_TZ), datetime(2016, 6, 1, 11, tzinfo=LOCAL_TZ))
    scheduled = run_sync("national_portal", "dossiers", connection, context=_context("scheduled", *hour))
    assert scheduled["window_start"] == (watermark.astimezone(LOCAL_TZ) - timedelta(minutes=LOOKBACK)).isoformat()
    assert scheduled["window_end"] == hour[1].isoformat()
    assert scheduled["rows_read"] > 0
