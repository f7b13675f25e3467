"""One sync of a source stream as one batch: extract → transform → quality → load."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, TypeVar

import pandas as pd
import sqlalchemy as sa

from connectors.base import Window
from connectors.settings import ConnectionSettings
from pipeline.settings import PipelineSettings
from pipeline.sources import SourcePlan, StreamPlan, source_plan
from transforms.timefmt import LOCAL_TZ

log = logging.getLogger("lienthong.pipeline")
T = TypeVar("T")

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
    from warehouse.load import BatchWriter, without_payloads
    from warehouse.locks import lock_stream, take_load_slot
    from warehouse.pseudonym import require_key_chain
    from warehouse.state import batch_loaded

    declared = source_plan(source)
    plan = declared.streams[stream]
    key = settings.require_pseudonym_key()
    require_key_chain(engine, key)  # a wrong key refuses here, before anything is read
    system = declared.name  # until the connector names it

    def on_page(stream_name: str, page: int, total_pages: int, records: int) -> None:
        pages(stream_name, page, total_pages, records)

    def show_pages(stream_name: str, page: int, total_pages: int, records: int) -> None:
        if progress:
            progress(f"{system}.{stream_name} pages", page, total_pages)

    pages: Callable[[str, int, int, int], None] = show_pages  # a reader process sends them here

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
        references = _references(engine, plan.entity)
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
    with lock, slot or nullcontext(), connector, _bulk_collection(), \
            BatchWriter(engine, system, stream, plan.entity, window.start, window.end, batch_id) as writer:
        require_key_chain(engine, key, record=False)  # and a rotation committed meanwhile, here
        pending: list[tuple[pd.DataFrame, pd.DataFrame | None]] = []

        def check_and_stage() -> None:
            """Validate the chunks read so far at once (GX's cost is mostly per validation), then
            stage their good rows, quarantine the bad ones and stage the good rows' events."""
            nonlocal rows_bad
            frame = pending[0][0] if len(pending) == 1 else pd.concat([f for f, _ in pending], ignore_index=True)
            parts = [e for _, e in pending if e is not None]
            events = None if not parts else parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
            pending.clear()
            checked = gate.split(frame)
            for rule, n in checked.rule_counts.items():
                rule_counts[rule] = rule_counts.get(rule, 0) + n
            if events is not None:
                events = events[events["dossier_code"].isin(set(checked.good["dossier_code"]))]
            rows_bad += len(checked.bad)
            staging.submit(writer.add, without_payloads(checked.good), checked.bad, events)
            log.info("%s.%s: %d rows read and validated so far (%d quarantined in the last %d)",
                     system, stream, rows_read, len(checked.bad), len(frame))

        # The source is read and transformed ahead, in a process of its own where the connector
        # allows it (a second core), else in a thread, while the rows before are validated and
        # staged: the work and the waits on the source and on the warehouse overlap.
        def chunks(on_pages: Callable[[str, int, int, int], None] | None = None) -> Iterator[Any]:
            """The standard chunks; with `on_pages`, in a reading process (its pages go there)."""
            nonlocal pages
            if on_pages is not None:
                connector.after_fork()
                pages = on_pages
            return _standard_chunks(connector, plan, stream, window, key, system)

        apart = settings.read_process and getattr(connector, "reads_apart", False)
        # PostgreSQL stages and merges one gate's rows while the next are validated (a SQLite
        # connection stays in its thread).
        staging = _OneAhead(background=engine.dialect.name == "postgresql")
        with staging, read_ahead(chunks, depth=_READ_AHEAD, apart=apart, on_pages=show_pages,
                                 label=f"{system}.{stream}") as frames:
            # Great Expectations is imported (3 s) while the source is already being read.
            from quality.gate import QualityGate

            gate = QualityGate(plan.entity, references)
            for frame, events in frames:
                rows_read += len(frame)
                newest = frame["updated_at"].max() if "updated_at" in frame.columns else None
                if pd.notna(newest) and (watermark is None or newest > watermark):
                    watermark = newest.to_pydatetime()
                pending.append((frame, events))
                if sum(len(f) for f, _ in pending) >= settings.gate_rows:
                    check_and_stage()
                if progress:
                    progress(f"{system}.{stream} rows", rows_read, None)
            if pending:
                check_and_stage()
            staging.wait()
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


def _standard_chunks(connector: Any, plan: StreamPlan, stream: str, window: Window, key: Any,
                     system: str) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """The stream's records, chunk by chunk, as standard frames (and events), rows numbered on.

    The connector reads the next chunk (its pages: waits on the source) while this one is
    transformed.
    """
    first_row = 0
    with _ReadAhead(connector.read(stream, window), depth=1) as raw:
        for records in raw:
            frame, events = plan.to_frames(records, key=key, first_row=first_row, source_system=system)
            first_row += len(frame)
            yield frame, events


class _OneAhead:
    """Calls run one at a time in a thread of their own, the next submitted while one runs.

    `submit` waits for the call before (raising what it raised), so at most one is in flight; `wait`
    waits for the last. With `background=False` each call runs at once, where it is submitted.
    """

    def __init__(self, *, background: bool) -> None:
        self._executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="lienthong-stage")
                          if background else None)
        self._running: Future[Any] | None = None

    def __enter__(self) -> _OneAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if self._executor is None:
            call(*args)
        else:
            self._running = self._executor.submit(call, *args)

    def wait(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.result()


# Chunks read ahead of the one being validated: enough for the reader to go on while a gate's
# worth of rows is validated and merged, few enough to hold little memory.
_READ_AHEAD = 3


class ReaderDied(RuntimeError):
    """The process reading the source ended without saying why (killed, out of memory)."""


def read_ahead(make: Callable[..., Iterator[T]], *, depth: int, apart: bool, on_pages: Callable[..., None],
               label: str) -> _ReadAhead[T] | _ReadApart[T]:
    """The items of `make()`, made ahead of their use: in a process of its own when `apart` and
    the platform forks (a second core), else in a thread. `make(on_pages)` is called where they are
    made; what it calls `on_pages` with comes back here, to the given `on_pages`."""
    if apart and multiprocessing.current_process().daemon:  # a daemon may not fork a Process
        log.info("reading in a thread, not a process: this process is a daemon")
    elif apart:
        try:
            return _ReadApart(make, depth, on_pages, label)
        except (ValueError, OSError) as exc:  # no fork here: read in a thread
            log.info("reading in a thread, not a process: %s", exc)
    return _ReadAhead(make(), depth)


class _ReadAhead(Generic[T]):
    """The items of an iterator, made in a thread of their own up to `depth` ahead of their use.

    `with _ReadAhead(items, depth=2) as ahead: for item in ahead: ...`. What the iterator raises is
    raised where the items are used, after the items made before it; leaving the `with` early
    stops the thread at its next item and closes the iterator there.
    """

    def __init__(self, items: Iterator[T], depth: int) -> None:
        self._items = items
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._make, name="lienthong-read-ahead", daemon=True)

    def __enter__(self) -> _ReadAhead[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a thread waiting to hand over an item
            with suppress(queue.Empty):
                self._queue.get(timeout=0.1)

    def __iter__(self) -> Iterator[T]:
        return _delivered(self._queue.get)

    def _make(self) -> None:
        try:
            for item in self._items:
                if not self._hand_over(("item", item)):
                    return
            self._hand_over(("end", None))
        except BaseException as exc:  # noqa: BLE001 — handed to the consuming thread, raised there
            self._hand_over(("error", exc))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _hand_over(self, message: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class _ReadApart(Generic[T]):
    """The items of `make()`, made in a forked process and handed back pickled, `depth` ahead.

    The process starts with everything this one had built (the connector, its settings, the key)
    and holds none of this one's locks or connections: it dies with this process (Linux's
    parent-death signal) or when told to, and never closes what it inherited (it ends with
    `os._exit`). What `make` raises is raised here; a process that dies without a word raises
    `ReaderDied`. Calls of its `on_pages` come back as messages, to `on_pages` here.
    """

    def __init__(self, make: Callable[..., Iterator[T]], depth: int, on_pages: Callable[..., None],
                 label: str) -> None:
        context = multiprocessing.get_context("fork")  # ValueError where there is no fork
        self._make = make
        self._label = label
        self._on_pages = on_pages
        self._queue = context.Queue(maxsize=depth)
        self._parent = os.getpid()
        self._process = context.Process(target=self._run, name="lienthong-reader", daemon=True)

    def __enter__(self) -> _ReadApart[T]:
        self._process.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._queue.close()

    def __iter__(self) -> Iterator[T]:
        return _delivered(self._next_message, self._on_pages)

    def _next_message(self) -> tuple[str, Any]:
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive():
                    code = self._process.exitcode
                    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    raise ReaderDied(f"{self._label}: the process reading the source ended ({how}) "
                                     "before the source was read; nothing of the batch is loaded") from None

    def _run(self) -> None:  # in the reading process
        _die_with_parent(self._parent)
        try:
            for item in self._make(lambda *args: self._queue.put(("pages", args))):
                self._queue.put(("item", item))
            self._queue.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 — sent to the parent, raised there
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001 — an exception that cannot travel: its text does
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            self._queue.put(("error", exc))
        finally:
            self._queue.close()
            self._queue.join_thread()  # everything sent before the process ends


def _delivered(receive: Callable[[], tuple[str, Any]], on_pages: Callable[..., None] | None = None) -> Iterator[Any]:
    """The items of a reader's messages, ("item", x) … ("end", None), raising its ("error", exc);
    ("pages", args) go to `on_pages`."""
    while True:
        kind, value = receive()
        if kind == "item":
            yield value
        elif kind == "pages" and on_pages is not None:
            on_pages(*value)
        elif kind == "error":
            raise value
        elif kind == "end":
            return


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), so that nothing it inherited
    (a lock's file, a connection's socket) outlives the run that held it."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


@contextmanager
def _bulk_collection() -> Iterator[None]:
    """Garbage collection tuned for a batch: millions of short-lived records, rows and values.

    Python's cycle collector runs every few hundred new containers and, now and then, walks every
    object alive; here most are long-lived (the libraries, the GX context), so they are frozen out
    of the walks, and the young ones are collected every 50,000 instead of 700. The batch's own
    records form no cycles: they go as they are dropped, whatever the collector does.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def sync_source(source: str | SourcePlan, *, engine: sa.Engine, connection: ConnectionSettings,
                settings: PipelineSettings, window: Window | None = None,
                until: datetime | None = None, progress: Progress | None = None,
                streams: list[str] | None = None) -> list[SyncOutcome]:
    """Every stream of a source, in its declared order."""
    names = streams or list(source_plan(source).streams)
    return [sync_stream(source, name, engine=engine, connection=connection, settings=settings,
                        window=window, until=until, progress=progress) for name in names]
