"""Entry points of the Airflow tasks: plain functions taking references and returning small summaries."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Window
from connectors.settings import ConnectionSettings
from pipeline.settings import PipelineSettings
from transforms.timefmt import LOCAL_TZ

log = logging.getLogger("lienthong.pipeline")


def parse_window(start: str | None, end: str | None) -> Window | None:
    """A backfill window from ISO-8601 texts (naive means Vietnam time); None when neither is given."""
    if not start and not end:
        return None
    if not (start and end):
        raise ValueError("a backfill needs both start and end")

    def parse(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_TZ)

    window = Window(start=parse(start).astimezone(LOCAL_TZ), end=parse(end).astimezone(LOCAL_TZ))
    if window.end <= window.start:
        raise ValueError(f"backfill window ends ({end}) before it starts ({start})")
    return window


# Runs that Airflow creates for a data interval of the DAG's timetable: the scheduler's (catchup
# included) and `airflow backfill create`'s. Manual and asset-triggered runs have no interval of
# their own to sync.
INTERVAL_RUN_TYPES = frozenset({"scheduled", "backfill"})


@dataclass(frozen=True)
class WindowChoice:
    """What a DAG run syncs. `window` None: incremental, from the watermark minus the look-back to
    now. `cover_gap`: a scheduled interval, to be started earlier when the watermark lags behind it
    (`pipeline.sync.cover_watermark_gap`)."""

    window: Window | None
    cover_gap: bool = False
    reason: str = "incremental"


def _aware(moment: datetime) -> datetime:
    """`moment` as a plain datetime in Vietnam time (naive means Vietnam time). Airflow's context
    gives pendulum DateTimes, whose arithmetic with a zoneinfo zone drops the zone: not kept."""
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_TZ)).astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond,
                    tzinfo=UTC).astimezone(LOCAL_TZ)


def choose_window(*, start: str | None, end: str | None, run_type: str | None,
                  data_interval_start: datetime | None, data_interval_end: datetime | None,
                  lookback_minutes: int) -> WindowChoice:
    """The window of a DAG run of a windowed source, from the run's context values.

    1. Params `start`/`end` (a manual run, e.g. `airflow dags test … --conf`): exactly that window.
    2. A scheduled or backfill run with a data interval: the interval, started the look-back
       earlier (late records of the previous interval); the same interval is the same window, so
       a backfill re-run replaces its batches. A scheduled run may also reach back to a lagging
       watermark (`cover_gap`); a backfill run covers exactly what was asked.
    3. Anything else (a manual run without params): incremental from the watermark.
    """
    window = parse_window(start, end)
    if window is not None:
        return WindowChoice(window, reason="params")
    kind = str(getattr(run_type, "value", run_type) or "")
    if kind in INTERVAL_RUN_TYPES and data_interval_start is not None and data_interval_end is not None:
        begin, finish = _aware(data_interval_start), _aware(data_interval_end)
        if finish > begin:
            return WindowChoice(Window(start=begin - timedelta(minutes=lookback_minutes), end=finish),
                                cover_gap=kind == "scheduled", reason=f"{kind} interval")
    return WindowChoice(None)


def window_from_context(context: Mapping[str, Any], lookback_minutes: int) -> WindowChoice:
    """`choose_window` with the values of an Airflow task context (params, dag_run, data interval)."""
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    return choose_window(start=params.get("start"), end=params.get("end"),
                         run_type=getattr(dag_run, "run_type", None),
                         data_interval_start=context.get("data_interval_start"),
                         data_interval_end=context.get("data_interval_end"),
                         lookback_minutes=lookback_minutes)


def _log_progress(stage: str, done: int, total: int | None) -> None:
    if total:
        if done == total or done % 10 == 0:
            log.info("[lienthong] %s %d/%d", stage, done, total)
    else:
        log.info("[lienthong] %s %d", stage, done)


def run_sync(source: str, stream: str, connection: ConnectionSettings, *,
             start: str | None = None, end: str | None = None,
             context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Sync one stream into the warehouse named by WAREHOUSE_URL; returns the batch summary.

    `context` (the Airflow task context of a windowed source's DAG): its window is chosen by
    `window_from_context`; otherwise `start`/`end` backfill a window, or the sync is incremental.
    """
    from pipeline.sources import source_plan
    from pipeline.sync import sync_stream
    from warehouse.db import create_engine, upgrade, warehouse_url

    settings = PipelineSettings()
    if context is not None:
        choice = window_from_context(context, settings.lookback_minutes)
    else:
        choice = choose_window(start=start, end=end, run_type=None, data_interval_start=None,
                               data_interval_end=None, lookback_minutes=settings.lookback_minutes)
    if source_plan(source).windowed:  # the others read by cursor or by file
        log.info("[lienthong] %s.%s: window by %s", source, stream, choice.reason)
    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    try:
        outcome = sync_stream(source, stream, engine=engine, connection=connection,
                              settings=settings, window=choice.window, cover_gap=choice.cover_gap,
                              progress=_log_progress)
    finally:
        engine.dispose()
    log.info("[lienthong] %s", outcome.summary())
    summary: dict[str, Any] = {"batch_id": outcome.batch_id, "window_start": outcome.window.start.isoformat(),
                               "window_end": outcome.window.end.isoformat(), "rows_read": outcome.rows_read,
                               "rows_loaded": outcome.rows_loaded,
                               "rows_quarantined": outcome.rows_quarantined}
    if outcome.files:
        summary["files"] = outcome.files
    return summary


def drop_files_waiting(connection: ConnectionSettings, stable_seconds: float | None = None) -> list[str]:
    """Names of the files in the drop folder that a file_drop sync would read (the sensor's poke).

    The connector's own choice (`FileDropConnector.files_ready`) for the pipeline's streams: files
    at the top of the folder matching their patterns, except those modified less than
    `stable_seconds` ago (default LIENTHONG_FILE_STABLE_SECONDS), still being written; whether one
    was already loaded is the sync's business (it skips it).
    """
    from pathlib import Path

    from connectors.filedrop import FileDropConnector
    from pipeline.sources import SOURCES

    folder = Path(connection.local_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"file_drop: drop folder {folder} does not exist")
    seconds = PipelineSettings().file_stable_seconds if stable_seconds is None else stable_seconds
    connector = FileDropConnector(folder, stable_seconds=seconds)
    return sorted({path.name for stream in SOURCES["file_drop"].streams for path in connector.files_ready(stream)})


def _connection_ids(variable: str, default: str = "") -> list[str]:
    import os

    text = os.environ.get(variable, "").strip() or default
    return list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))


def onestop_connection_ids() -> list[str]:
    """Connection ids of the agencies' one-stop-shop databases (LIENTHONG_ONESTOP_CONNECTIONS)."""
    return _connection_ids("LIENTHONG_ONESTOP_CONNECTIONS")


def drop_connection_ids() -> list[str]:
    """Connection ids of the agencies' drop folders (LIENTHONG_FILE_DROP_CONNECTIONS, comma-separated;
    default the one connection `file_drop`). Each names its agency in its extra (`?agency=…`)."""
    return _connection_ids("LIENTHONG_FILE_DROP_CONNECTIONS", "file_drop")


def run_refresh_marts() -> dict[str, Any]:
    """Recompute the indicator mart from the warehouse."""
    from reporting.indicators import refresh_marts
    from warehouse.db import create_engine, warehouse_url

    engine = create_engine(warehouse_url())
    try:
        rows = refresh_marts(engine)
    finally:
        engine.dispose()
    log.info("[lienthong] refresh_marts: %d indicator values", rows)
    return {"indicator_values": rows}
