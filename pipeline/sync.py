"""One sync of a source stream as one batch: extract → transform → quality → load."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd
import sqlalchemy as sa

from connectors.base import Window
from connectors.settings import ConnectionSettings
from pipeline.settings import PipelineSettings
from pipeline.sources import SourcePlan, source_plan
from transforms.timefmt import LOCAL_TZ

log = logging.getLogger("lienthong.pipeline")

# progress(stage, done, total): called as work advances; total may be None when unknown.
Progress = Callable[[str, int, "int | None"], None]


class QualityThresholdExceeded(RuntimeError):
    """A batch quarantined more rows than its source allows."""


@dataclass
class SyncOutcome:
    """What one batch did: its window, counts and the rules that quarantined rows."""

    source: str
    stream: str
    batch_id: str
    window: Window
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_deduplicated: int
    watermark: datetime | None
    rule_counts: dict[str, int] = field(default_factory=dict)
    # File sources: names of the files archived (loaded) and skipped (already loaded), and
    # "<name>: <reason>" of those rejected (moved to rejected/); "waiting", when any, those still
    # being written (left in the drop folder for the next run).
    files: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(self.rule_counts.items()))
        text = (f"{self.source}.{self.stream}: read {self.rows_read}, loaded {self.rows_loaded} "
                f"({self.rows_deduplicated} duplicates merged), quarantined {self.rows_quarantined}"
                + (f" [{rules}]" if rules else ""))
        if self.files:
            # every rejected file is named with its reason; loaded and skipped ones only in part
            listed = "; ".join(
                f"{what} {len(names)}"
                + (f" ({', '.join(names) if what == 'rejected' else _some(names)})" if names else "")
                for what, names in self.files.items())
            return f"{text}; files {listed}"
        return text + f"; window {self.window.start:%Y-%m-%d %H:%M} → {self.window.end:%Y-%m-%d %H:%M}"


def _some(names: list[str], shown: int = 3) -> str:
    """The first few of a list of file names, and how many more, for one summary line."""
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f", … and {len(names) - shown} more"


def _refused_frame(refused: list[tuple[str, int, str]], first_row: int) -> pd.DataFrame:
    """Messages the source refused (hostile, malformed, off-schema) as quarantine rows: never lost."""
    return pd.DataFrame({
        "_row": range(first_row, first_row + len(refused)),
        "_record_key": [message_id for message_id, _, _ in refused],
        "_payload": [json.dumps({"message_id": m, "cursor": c, "reason": r}, ensure_ascii=False)
                     for m, c, r in refused],
        "failed_rules": [["message.refused: " + reason] for _, _, reason in refused],
    })


def batch_id_for(source: str, stream: str, window: Window) -> str:
    """A deterministic batch id: re-running the same window replaces the same batch."""
    text = f"{source}|{stream}|{window.start.isoformat()}|{window.end.isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_window(engine: sa.Engine, source: str, stream: str, settings: PipelineSettings,
                until: datetime | None = None) -> Window:
    """Incremental window: from the stored watermark minus the look-back (or the initial start) to now."""
    from warehouse.state import get_watermark

    watermark = get_watermark(engine, source, stream)
    if watermark is None:
        start = settings.initial_start
    else:
        start = watermark.astimezone(LOCAL_TZ) - timedelta(minutes=settings.lookback_minutes)
    end = (until or datetime.now(LOCAL_TZ)).astimezone(LOCAL_TZ).replace(microsecond=0)
    return Window(start=start.astimezone(LOCAL_TZ), end=end)


def cover_watermark_gap(window: Window, watermark: datetime | None, settings: PipelineSettings) -> Window:
    """A scheduled interval's window, started earlier when the watermark lags behind it.

    `window` already starts a look-back before its data interval, which covers the late records
    of the interval before. When the stream's watermark is older than that start (runs were missed
    or failed, or the source was quiet) the window starts at the watermark minus the look-back, as
    an incremental sync would; with no watermark (nothing ever loaded) at the initial start.
    Otherwise it is returned unchanged, so that a re-run of the same interval is the same batch.
    """
    if watermark is None:
        start = settings.initial_start
    elif watermark >= window.start:  # the look-back before the interval already reaches it
        return window
    else:
        start = watermark.astimezone(LOCAL_TZ) - timedelta(minutes=settings.lookback_minutes)
    return Window(start=min(start, window.start).astimezone(LOCAL_TZ), end=window.end)


def _catalogue_codes(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(sa.text("SELECT procedure_code FROM dim_procedure"))}


def _references(engine: sa.Engine, entity: str) -> dict[str, set[str]]:
    """Reference sets of an entity's `x-references` columns (procedure codes: the catalogue)."""
    import standards

    prop = standards.load_schema(entity)["properties"].get("procedure_code", {})
    return {"procedure_code": _catalogue_codes(engine)} if "x-references" in prop else {}


def _file_report(connector: Any, archived: list) -> dict[str, list[str]]:
    """What a file connector did with the files: archived, skipped, rejected with reasons, and
    (only when there are) those left waiting, still being written."""
    reasons = getattr(connector, "reasons", {})
    report = {
        "archived": [path.name.split("__", 1)[-1] for path in archived],
        "skipped": [path.name for path in connector.skipped],
        "rejected": [f"{path.name}: {reasons.get(path, 'unreadable')}" for path in connector.rejected],
    }
    if getattr(connector, "waiting", None):
        report["waiting"] = [path.name for path in connector.waiting]
    return report


def sync_stream(source: str | SourcePlan, stream: str, *, engine: sa.Engine, connection: ConnectionSettings,
                settings: PipelineSettings, window: Window | None = None,
                until: datetime | None = None, progress: Progress | None = None,
                cover_gap: bool = False) -> SyncOutcome:
    """Run one stream of a source as one batch and return what it did.

    With `window` the batch covers exactly that window (a backfill; re-running it is idempotent);
    otherwise the window runs from the watermark minus the look-back to `until` (default now).
    `cover_gap` (a scheduled run's data interval as `window`): the window also reaches back to the
    watermark when that lags behind it (`cover_watermark_gap`).
    """
    from quality.gate import QualityGate
    from warehouse.load import BatchWriter
    from warehouse.locks import lock_stream, take_load_slot
    from warehouse.pseudonym import require_key_chain
    from warehouse.state import batch_loaded

    declared = source_plan(source)
    plan = declared.streams[stream]
    key = settings.require_pseudonym_key()
    require_key_chain(engine, key)  # a wrong key refuses here, before anything is read
    system = declared.name  # until the connector names it

    def on_page(stream_name: str, page: int, total_pages: int, records: int) -> None:
        if progress:
            progress(f"{system}.{stream_name} pages", page, total_pages)

    connector = declared.open_connector(connection, settings, on_page)
    if hasattr(connector, "batch_loaded"):  # a file source finishes a stopped run's archiving by it
        connector.batch_loaded = partial(batch_loaded, engine)
    system = connector.source  # e.g. one_stop:000.00.03.H62 — state is kept per agency database
    # One run of a stream at a time (warehouse/locks.py): taken before the window is planned (a run
    # that waited starts from the watermark the other left) and before the batch opens (a refused
    # run writes nothing, not even an ops_batch row); released once the batch has ended.
    lock = lock_stream(engine, system, stream, wait_seconds=settings.lock_wait_seconds)
    try:
        if declared.windowed:
            if window is not None and cover_gap:
                from warehouse.state import get_watermark

                window = cover_watermark_gap(window, get_watermark(engine, system, stream), settings)
            window = window or plan_window(engine, system, stream, settings, until)
        else:  # the source's cursor decides what is new; the window only records when the batch ran
            # (to the microsecond: two runs within a second are two batches, never one replacing the other)
            now = datetime.now(LOCAL_TZ)
            window = Window(start=now, end=now)
        batch_id = batch_id_for(system, stream, window)
        gate = QualityGate(plan.entity, _references(engine, plan.entity))
        # Then a warehouse load slot: at most LIENTHONG_WAREHOUSE_LOAD_SLOTS batches write at once.
        slot = take_load_slot(engine, settings.warehouse_load_slots, wait_seconds=settings.load_slot_wait_seconds)
    except BaseException:
        lock.release()
        raise
    log.info("sync %s.%s batch %s window %s → %s", system, stream, batch_id,
             window.start.isoformat(), window.end.isoformat())
    rows_read = rows_bad = 0
    watermark: datetime | None = None
    rule_counts: dict[str, int] = {}
    with lock, slot or nullcontext(), connector, BatchWriter(engine, system, stream, plan.entity, window.start,
                                                             window.end, batch_id) as writer:
        require_key_chain(engine, key, record=False)  # and a rotation committed meanwhile, here
        for records in connector.read(stream, window):
            frame, events = plan.to_frames(records, key=key, first_row=rows_read, source_system=system)
            rows_read += len(frame)
            newest = frame["updated_at"].max() if "updated_at" in frame.columns else None
            if pd.notna(newest) and (watermark is None or newest > watermark):
                watermark = newest.to_pydatetime()
            checked = gate.split(frame)
            for rule, n in checked.rule_counts.items():
                rule_counts[rule] = rule_counts.get(rule, 0) + n
            if events is not None:
                events = events[events["dossier_code"].isin(set(checked.good["dossier_code"]))]
            rows_bad += len(checked.bad)
            writer.add(checked.good, checked.bad, events)
            log.info("%s.%s: %d rows read so far (%d quarantined in this chunk)",
                     system, stream, rows_read, len(checked.bad))
            if progress:
                progress(f"{system}.{stream} rows", rows_read, None)
        if plan.entity == "service_stat":  # every report read replaces its commune-month, even empty
            writer.add_reports(connector.reports_read())
        refused = getattr(connector, "refused", [])
        if refused:
            writer.add(None, _refused_frame(refused, rows_read), None)
            rows_read += len(refused)
            rows_bad += len(refused)
            rule_counts["message.refused"] = len(refused)
        if rows_read and rows_bad / rows_read > settings.max_quarantine_rate:
            # raised inside the batch: nothing of it is loaded, the batch is recorded as failed
            raise QualityThresholdExceeded(
                f"{system}.{stream}: {rows_bad} of {rows_read} rows failed quality "
                f"(over the {settings.max_quarantine_rate:.1%} threshold of LIENTHONG_MAX_QUARANTINE_RATE)")
        if hasattr(connector, "prepare_files"):  # the files' journal names the batch, before its COMMIT
            connector.prepare_files(batch_id)
        result = writer.commit(watermark)
        gate.finish()  # Data Docs of this batch's validations, when LIENTHONG_DATA_DOCS is on
        # Only once the batch is safely committed: acknowledge the cursor, archive the files read.
        if getattr(connector, "last_cursor", None) is not None:
            connector.ack(connector.last_cursor)
        files: dict[str, list[str]] = {}
        if hasattr(connector, "commit_files"):
            files = _file_report(connector, connector.commit_files())
            for what, names in files.items():
                for name in names:
                    log.info("%s.%s: file %s %s", system, stream, what, name)
    return SyncOutcome(system, stream, batch_id, window, result.rows_read, result.rows_loaded,
                       result.rows_quarantined, result.rows_deduplicated, watermark, rule_counts,
                       files)


def sync_source(source: str | SourcePlan, *, engine: sa.Engine, connection: ConnectionSettings,
                settings: PipelineSettings, window: Window | None = None,
                until: datetime | None = None, progress: Progress | None = None,
                streams: list[str] | None = None) -> list[SyncOutcome]:
    """Every stream of a source, in its declared order."""
    names = streams or list(source_plan(source).streams)
    return [sync_stream(source, name, engine=engine, connection=connection, settings=settings,
                        window=window, until=until, progress=progress) for name in names]
