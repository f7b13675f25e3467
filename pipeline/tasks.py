"""Entry points of the Airflow tasks: plain functions taking references and returning small summaries."""

from __future__ import annotations

import logging
from datetime import datetime
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


def _log_progress(stage: str, done: int, total: int | None) -> None:
    if total:
        if done == total or done % 10 == 0:
            log.info("[lienthong] %s %d/%d", stage, done, total)
    else:
        log.info("[lienthong] %s %d", stage, done)


def run_sync(source: str, stream: str, connection: ConnectionSettings, *,
             start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Sync one stream into the warehouse named by WAREHOUSE_URL; returns the batch summary."""
    from pipeline.sync import sync_stream
    from warehouse.db import create_engine, upgrade, warehouse_url

    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    try:
        outcome = sync_stream(source, stream, engine=engine, connection=connection,
                              settings=PipelineSettings(), window=parse_window(start, end),
                              progress=_log_progress)
    finally:
        engine.dispose()
    log.info("[lienthong] %s", outcome.summary())
    summary: dict[str, Any] = {"batch_id": outcome.batch_id, "rows_read": outcome.rows_read,
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


def onestop_connection_ids() -> list[str]:
    """Connection ids of the agencies' one-stop-shop databases (LIENTHONG_ONESTOP_CONNECTIONS)."""
    import os

    return [c.strip() for c in os.environ.get("LIENTHONG_ONESTOP_CONNECTIONS", "").split(",") if c.strip()]


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
