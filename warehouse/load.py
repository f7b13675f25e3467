"""Batch loading: stage standard frames chunk by chunk, then publish them in one transaction."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from warehouse.db import WRITE_LOCK_OPTION, insert_for
from warehouse.schema import (
    BATCH_ID_LENGTH,
    ENTITY_TABLES,
    UtcDateTime,
    dim_online_level,
    dim_procedure,
    dim_procedure_level,
    fact_dossier_event,
    fact_dossier_source,
    fact_service_report,
    fact_service_stat,
    ops_batch,
    ops_quarantine,
    ops_sync_state,
)

log = logging.getLogger(__name__)

ENTITIES = tuple(ENTITY_TABLES)
ENTITY_KEYS = {"dossier": "dossier_code", "procedure": "procedure_code",
               "service_stat": "procedure_code"}  # with commune_code and month (REPORT_KEY)
# A commune's monthly report row is keyed by commune, month and procedure; a report is replaced
# whole, by commune and month (`_replace_reports`).
REPORT_KEY = ("commune_code", "month", "procedure_code")
# Set by the loader, never taken from the frame.
LOADER_COLUMNS = ("batch_id", "loaded_at")
MAX_ERROR_CHARS = 4000
# PostgreSQL's memory for each sort or hash of a batch's statements (its transaction only).
LOAD_WORK_MEM = "256MB"
# A batch loading this many rows analyzes the tables it wrote once committed (`_analyze_targets`).
ANALYZE_AFTER_ROWS = 50_000

# Reconciliation (docs/reconciliation.md): the same dossier from several sources is one
# fact_dossier row. A source's rank is looked up by the part of `source_system` before ':'
# ("one_stop:000.00.03.H62" → "one_stop"); a source not listed ranks 0. The higher rank wins
# whatever the times; within the same rank, the newer `updated_at` wins.
SOURCE_PRECEDENCE: dict[str, int] = {
    "one_stop": 3,         # the agency's one-stop-shop database: the system of record
    "file_drop": 3,        # an agency's own export dropped as a file (Justice CSV): a system of record
    "lgsp": 2,             # the provincial integration bus (LGSP), a relay
    "exchange": 2,         # a signed package of another warehouse (exchange/packages.py), a relay
    "national_portal": 1,  # the national public-service portal, a relay
}
# Entities reconciled by source rank (the procedure catalogue has one authority: newest wins).
RANKED_ENTITIES = ("dossier",)
# Entities merged into the warehouse chunk by chunk (`BatchWriter._merge_chunk`); a commune's
# report replaces its commune-month whole, so service_stat batches are merged at commit.
MERGED_BY_CHUNK = ("dossier", "procedure")


def source_rank(source_system: str | None) -> int:
    """The precedence rank of a `source_system` value (Python twin of `source_rank_sql`)."""
    if not source_system:
        return 0
    return SOURCE_PRECEDENCE.get(source_system.split(":", 1)[0], 0)


def source_rank_sql(column: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """SQL CASE giving the rank of a `source_system` column (the same on SQLite and PostgreSQL)."""
    whens = []
    for prefix, rank in SOURCE_PRECEDENCE.items():
        qualified = sa.func.substr(column, 1, len(prefix) + 1) == prefix + ":"
        whens.append((sa.or_(column == prefix, qualified), rank))
    return sa.case(*whens, else_=0)


@dataclass(frozen=True)
class BatchResult:
    """What one committed batch did (the same numbers as its ops_batch row)."""

    batch_id: str
    source: str
    stream: str
    entity: str
    rows_read: int          # good + bad rows handed to the writer
    rows_loaded: int        # good rows (duplicates of a key included)
    rows_quarantined: int   # bad rows, now in ops_quarantine
    rows_deduplicated: int  # good rows folded into another row of the same key
    checksum: str
    watermark: datetime | None


class BatchWriter:
    """Loads one batch in one transaction: `add()` stages each chunk, `commit()` publishes it.

    ```
    with BatchWriter(engine, source, stream, entity, window_start, window_end, batch_id) as w:
        w.add(good_frame, bad_frame, events_frame)   # per chunk
        result = w.commit(watermark)
    ```
    Good rows are staged in temporary tables (COPY on PostgreSQL), bad rows go to ops_quarantine.
    Dossiers and procedures are merged chunk by chunk, inside the batch's transaction, as each
    `add()` stages them (the warehouse works on one chunk while the pipeline reads the next): each
    dossier's source records go to fact_dossier_source (lineage); the chunk is deduplicated by key
    (dossiers: highest source rank first; then greatest updated_at, then greatest `_row`) and
    upserted into the fact or dimension without ever replacing a newer row by an older one nor a
    dossier by a lower-ranked source's version (SOURCE_PRECEDENCE, docs/reconciliation.md), so a
    later chunk's version of a key wins exactly when it would have within one chunk; the keys it
    won get its events or level history. `commit()` writes the manifest and advances the sync
    state. A `service_stat` batch (communes' monthly reports) is merged at `commit()`: it keeps
    the last row read per (commune, month, procedure) and replaces every loaded row of each
    commune-month it brings, so the latest report wins whole.
    Nothing is visible before `commit()`: anything raised inside the `with` rolls all of it back
    and records the batch as failed. Re-running a batch id replaces its manifest and quarantine
    rows: loads are idempotent.
    """

    def __init__(self, engine: sa.Engine, source: str, stream: str, entity: str,
                 window_start: datetime | None, window_end: datetime | None, batch_id: str) -> None:
        if entity not in ENTITY_TABLES:
            raise ValueError(f"unknown entity {entity!r}: the writer loads {', '.join(ENTITIES)}")
        if not batch_id or len(batch_id) > BATCH_ID_LENGTH:
            raise ValueError(f"batch_id must be 1-{BATCH_ID_LENGTH} characters")
        self.engine = engine
        self.source = source
        self.stream = stream
        self.entity = entity
        self.window_start = window_start
        self.window_end = window_end
        self.batch_id = batch_id
        self.target = ENTITY_TABLES[entity]
        self.key = ENTITY_KEYS[entity]
        self._staging = _StagingTables(self.target, self.key)
        self._conn: sa.Connection | None = None
        self._txn: sa.RootTransaction | None = None
        self._state = "new"  # new → open → committed | aborted
        self._started_at: datetime | None = None
        self._good = 0
        self._bad = 0
        self._event_ord = 0
        self._next_row = 0
        self._reports: dict[tuple[str, str], str | None] = {}  # service_stat: (commune, month) → file
        self._loaded_at: datetime | None = None  # the batch's `loaded_at`, one for all its rows
        self._timed = _StepTimes()

    # ── context manager ──────────────────────────────────────────────────────────────────────

    def __enter__(self) -> BatchWriter:
        if self._state != "new":
            raise RuntimeError("a BatchWriter runs one batch once")
        self._started_at = _utcnow()
        # Visible at once, in its own transaction, so a running batch shows in ops_batch. It reads
        # before it writes: on SQLite it takes the write lock at BEGIN, to wait for another
        # stream's batch (busy timeout) instead of failing on "database is locked".
        with self.engine.execution_options(**{WRITE_LOCK_OPTION: True}).begin() as conn:
            self._abandon_running(conn)
            self._write_manifest(conn, status="running")
        self._conn = self.engine.connect()
        self._conn.execution_options(**{WRITE_LOCK_OPTION: True})
        self._txn = self._conn.begin()
        self._state = "open"
        try:
            if self._conn.dialect.name == "postgresql":
                # sorts and hashes of a chunk's merge in memory, not spilled to disk (default 4 MB)
                self._conn.exec_driver_sql(f"SET LOCAL work_mem = '{LOAD_WORK_MEM}'")
                # a chunk's keys are few beside the warehouse's rows: look them up by index (the
                # default cost, for disks that seek, has the planner scan millions of events)
                self._conn.exec_driver_sql("SET LOCAL random_page_cost = 1.1")
            self._conn.execute(sa.delete(ops_quarantine)
                               .where(ops_quarantine.c.batch_id == self.batch_id))
            self._staging.create(self._conn)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._state != "open":
            return
        self._abort()
        if exc is None:
            error = "the batch was closed without commit()"
        else:
            error = f"{type(exc).__name__}: {exc}"
        if self._good or self._bad:
            error += f" (after staging {self._good} good and {self._bad} bad rows)"
        self._record_failure(error[:MAX_ERROR_CHARS])

    # ── staging ──────────────────────────────────────────────────────────────────────────────

    def add(self, good_frame: pd.DataFrame | None, bad_frame: pd.DataFrame | None = None,
            events_frame: pd.DataFrame | None = None) -> None:
        """Stage one chunk: good rows for the upsert, bad rows into quarantine, dossier events.

        Frames have the standard columns of the entity plus `_row`, `_payload`, `_record_key`
        (bad frames: `failed_rules`); other `_` columns and columns unknown to the table are
        ignored. An events frame replaces the events of the chunk's dossiers that it loads.
        """
        conn = self._open_connection()
        if events_frame is not None and self.entity != "dossier":
            raise ValueError(f"events belong to dossiers, not to {self.entity} batches")
        good = good_frame is not None and len(good_frame) > 0
        if good_frame is not None and good:
            self._stage_good(conn, good_frame, with_events=events_frame is not None)
        if bad_frame is not None and len(bad_frame):
            self._quarantine(conn, bad_frame)
        if good and events_frame is not None and len(events_frame):
            self._stage_events(conn, events_frame)
        if good and self.entity in MERGED_BY_CHUNK:
            self._merge_chunk(conn)

    def add_reports(self, reports: Iterable[tuple[str, str, str | None]]) -> None:
        """Declare the reports this service_stat batch read: (commune_code, month, source file).

        Each one replaces the commune-month's loaded report at commit, even when none of its rows
        is good (an empty report says "no dossiers"; a wholly quarantined one is still the latest).
        Commune-months of the good rows staged are reports of the batch too.
        """
        self._open_connection()
        if self.entity != "service_stat":
            raise ValueError(f"reports belong to service_stat batches, not to {self.entity} batches")
        for commune, month, source_file in reports:
            self._reports[(commune, month)] = source_file

    def _rows_of(self, frame: pd.DataFrame) -> list[int]:
        if "_row" in frame.columns:
            rows = _column_values(frame["_row"], sa.Integer())
            if any(r is None for r in rows):
                raise ValueError("a row without `_row`: every row needs its position in the batch")
        else:
            rows = list(range(self._next_row, self._next_row + len(frame)))
        self._next_row = max(self._next_row, max(rows) + 1)
        return rows

    def _stage_good(self, conn: sa.Connection, frame: pd.DataFrame, *, with_events: bool) -> None:
        table = self._staging.main
        data = {c.name: _frame_column(frame, c)
                for c in table.columns if not c.name.startswith("_")}
        n = len(frame)
        # The standard leaves these to the source; the loader knows them.
        if "source_system" in data:
            data["source_system"] = [v if v is not None else self.source
                                     for v in data["source_system"]]
        if self.entity == "procedure":
            now = _utcnow()
            data["updated_at"] = [v if v is not None else now for v in data["updated_at"]]
        data["_row"] = rows = self._rows_of(frame)
        data["_with_events"] = [1 if with_events else 0] * n
        names = list(data)
        _copy_rows(conn, table, names, list(zip(*(data[name] for name in names), strict=True)))
        _copy_rows(conn, self._staging.row, ["_row"], [(row,) for row in rows])
        _copy_rows(conn, self._staging.digest, ["digest"], [(d,) for d in _digests(frame)])
        if self.entity == "procedure":
            codes = data["procedure_code"]
            levels = frame["levels"].tolist() if "levels" in frame.columns else [None] * n
            level_rows = [lvl for code, row, items in zip(codes, rows, levels, strict=True)
                          for lvl in _level_periods(code, row, items)]
            _copy_rows(conn, self._staging.level, list(_LEVEL_COLUMNS), level_rows)
        self._good += n

    def _quarantine(self, conn: sa.Connection, frame: pd.DataFrame) -> None:
        n = len(frame)
        if "failed_rules" in frame.columns:
            rules = frame["failed_rules"].tolist()
        elif "_errors" in frame.columns:
            rules = frame["_errors"].tolist()
        else:
            rules = [None] * n
        now = _utcnow()
        payloads = _frame_column(frame, ops_quarantine.c.payload, "_payload")
        keys = _frame_column(frame, ops_quarantine.c.record_key, "_record_key")
        rows = [(self.batch_id, self.source, self.stream, key, row, _rules_json(rule), payload, now)
                for key, row, rule, payload
                in zip(keys, self._rows_of(frame), rules, payloads, strict=True)]
        names = ["batch_id", "source", "stream", "record_key", "row_number", "failed_rules",
                 "payload", "created_at"]
        _copy_rows(conn, ops_quarantine, names, rows)
        _copy_rows(conn, self._staging.digest, ["digest"], [(d,) for d in _digests(frame)])
        self._bad += n

    def _stage_events(self, conn: sa.Connection, frame: pd.DataFrame) -> None:
        table = self._staging.event
        data = {c.name: _frame_column(frame, c) for c in table.columns if c.name != "_ord"}
        data["_ord"] = list(range(self._event_ord, self._event_ord + len(frame)))
        self._event_ord += len(frame)
        names = list(data)
        _copy_rows(conn, table, names, list(zip(*(data[name] for name in names), strict=True)))

    # ── commit ───────────────────────────────────────────────────────────────────────────────

    def commit(self, watermark: datetime | None = None) -> BatchResult:
        """Publish the batch in its transaction and return its counts.

        `watermark` is the greatest replication-key value read (tz-aware); the stream's sync
        state moves to it unless it already is later. None keeps the state's watermark.
        """
        conn = self._open_connection()
        watermark = _to_utc(watermark) if watermark is not None else None  # refuses a naive one
        staging, timed = self._staging, self._timed
        with timed("checksum"):
            checksum = self._checksum(conn)
            self._check_rows_unique(conn)
        now = self._batch_time()
        if self.entity in MERGED_BY_CHUNK:
            kept = conn.execute(sa.select(sa.func.count()).select_from(staging.key)).scalar_one()
        else:
            with timed("reports"):
                staging.analyze(conn)
                self._deduplicate(conn)
                kept = conn.execute(sa.select(sa.func.count()).select_from(staging.main)).scalar_one()
                self._replace_reports(conn, now)
        result = BatchResult(
            batch_id=self.batch_id, source=self.source, stream=self.stream, entity=self.entity,
            rows_read=self._good + self._bad, rows_loaded=self._good, rows_quarantined=self._bad,
            rows_deduplicated=self._good - kept, checksum=checksum,
            watermark=watermark,
        )
        if result.rows_read != result.rows_loaded + result.rows_quarantined:
            raise AssertionError(f"batch {self.batch_id}: rows read {result.rows_read} != loaded "
                                 f"{result.rows_loaded} + quarantined {result.rows_quarantined}")
        self._write_manifest(conn, status="loaded", result=result, finished_at=now)
        self._advance_sync_state(conn, result.watermark, now)
        with timed("commit"):
            staging.drop(conn)
            assert self._txn is not None
            self._txn.commit()
        self._close()
        self._state = "committed"
        if result.rows_loaded >= ANALYZE_AFTER_ROWS:
            self._analyze_targets()
        log.info("batch %s (%s/%s): %d read, %d loaded, %d quarantined, %d deduplicated; published in %s",
                 self.batch_id, self.source, self.stream, result.rows_read, result.rows_loaded,
                 result.rows_quarantined, result.rows_deduplicated, timed)
        return result

    def _merge_chunk(self, conn: sa.Connection) -> None:
        """Publish the chunk just staged within the batch's transaction, then empty its tables.

        Lineage, keys kept, deduplication, upsert (the keys won go to `_stg_won`), then the won
        dossiers' events or procedures' levels. What `commit()` used to do for the whole batch at
        once, a chunk at a time: the later chunk's version of a key wins as it would have in one
        chunk, so the outcome is the batch's whatever its chunking.
        """
        staging, timed = self._staging, self._timed
        with timed("analyze"):
            staging.analyze(conn, staging.chunk_tables)
        now = self._batch_time()
        if self.entity == "dossier":
            with timed("lineage"):
                self._record_lineage(conn, now)
        with timed("deduplicate"):
            self._count_keys(conn)
            self._deduplicate(conn)
        with timed("upsert"):
            self._upsert_target(conn, now)
        if self.entity == "dossier":
            with timed("events"):
                self._replace_events(conn)
        elif self.entity == "procedure":
            with timed("levels"):
                self._replace_levels(conn)
        staging.empty(conn, staging.chunk_tables)

    def _analyze_targets(self) -> None:
        """Fresh planner statistics for the tables a large batch wrote (PostgreSQL).

        Autovacuum gets to them within minutes; an incremental sync right after a backfill would
        meanwhile plan with the old counts (a scan of millions of events for a few thousand
        dossiers). Only the owner may analyze a table: another role's ANALYZE is a warning, not an
        error, and a failure here changes nothing of the committed batch.
        """
        if self.engine.dialect.name != "postgresql":
            return
        tables = {"dossier": (self.target, fact_dossier_event, fact_dossier_source),
                  "procedure": (self.target, dim_procedure_level)}.get(self.entity, (self.target,))
        try:
            with self._timed("statistics"), self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in tables:
                    conn.exec_driver_sql(f"ANALYZE {table.name}")
        except sa.exc.SQLAlchemyError as exc:
            log.warning("batch %s: the tables it wrote were not analyzed (%s)", self.batch_id,
                        str(exc).splitlines()[0])

    def _batch_time(self) -> datetime:
        """The batch's `loaded_at`: when its first rows were merged."""
        if self._loaded_at is None:
            self._loaded_at = _utcnow()
        return self._loaded_at

    def _count_keys(self, conn: sa.Connection) -> None:
        """Hold the chunk's keys among the batch's (their count is the rows kept, deduplicated)."""
        main, key = self._staging.main, self._staging.key
        stmt = insert_for(conn)(key).from_select(["key"], sa.select(main.c[self.key]).distinct()
                                                 .where(main.c[self.key].is_not(None)))
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))

    def _checksum(self, conn: sa.Connection) -> str:
        """sha256 over the sorted sha256 digests of every row's payload (good and bad).

        Independent of chunking and row order; the digests are sorted by the database so memory
        stays bounded whatever the batch size.
        """
        digest = self._staging.digest
        total = hashlib.sha256()
        query = (sa.select(digest.c.digest).order_by(digest.c.digest)
                 .execution_options(yield_per=10_000))
        for (value,) in conn.execute(query):
            total.update(bytes(value))
        return total.hexdigest()

    def _check_rows_unique(self, conn: sa.Connection) -> None:
        row = self._staging.row
        clash = conn.execute(sa.select(row.c._row).group_by(row.c._row)
                             .having(sa.func.count() > 1).limit(1)).scalar_one_or_none()
        if clash is not None:
            raise ValueError(f"`_row` {clash} appears twice: `_row` must be unique within a batch")

    def _deduplicate(self, conn: sa.Connection) -> None:
        """Keep one staged row per key: the greatest updated_at, ties to the greatest `_row`.

        Dossiers are first ordered by source rank, so a batch mixing sources keeps the row the
        upsert would keep had they come in separate batches.
        """
        main = self._staging.main
        if self.entity == "service_stat":  # no updated_at: the row read last wins
            partition: list[Any] = [main.c[name] for name in REPORT_KEY]
            order: list[Any] = [main.c._row.desc()]
        else:
            partition = [main.c[self.key]]
            order = []
        if self.entity in RANKED_ENTITIES:
            order.append(source_rank_sql(main.c.source_system).desc())
        if "updated_at" in main.c:
            order += [sa.case((main.c.updated_at.is_(None), 0), else_=1).desc(),
                      main.c.updated_at.desc(), main.c._row.desc()]
        rank = sa.func.row_number().over(partition_by=partition, order_by=order)
        ranked = sa.select(main.c._row, rank.label("rank")).subquery()
        losers = sa.select(ranked.c._row).where(ranked.c.rank > 1)
        conn.execute(sa.delete(main).where(main.c._row.in_(losers)))

    def _upsert_target(self, conn: sa.Connection, now: datetime) -> None:
        main, target = self._staging.main, self.target
        names = [c.name for c in target.columns if c.name not in LOADER_COLUMNS]
        columns = [main.c[name] for name in names] + [sa.literal(self.batch_id, sa.String())]
        if "loaded_at" in target.c:
            columns.append(sa.literal(now, UtcDateTime()))
        loader = [name for name in LOADER_COLUMNS if name in target.c]
        # `WHERE true`: SQLite cannot otherwise tell the SELECT's end from ON CONFLICT.
        select = sa.select(*columns).where(sa.true())
        stmt = insert_for(conn)(target).from_select(names + loader, select)
        newer = stmt.excluded.updated_at >= target.c.updated_at
        if self.entity in RANKED_ENTITIES:
            # Higher rank wins; same rank: the newer (or the same: a re-run) version wins.
            new_rank = source_rank_sql(stmt.excluded.source_system)
            old_rank = source_rank_sql(target.c.source_system)
            newer = sa.or_(new_rank > old_rank, sa.and_(new_rank == old_rank, newer))
        stmt = stmt.on_conflict_do_update(
            index_elements=[self.key],
            set_={name: stmt.excluded[name] for name in names + loader if name != self.key},
            where=newer,
        ).returning(target.c[self.key])
        self._record_won(conn, stmt)

    def _replace_reports(self, conn: sa.Connection, now: datetime) -> None:
        """Replace every loaded row of each commune-month this batch reports (the latest report wins).

        A re-sent report replaces the earlier one whole: a procedure it no longer lists is gone,
        and an empty report leaves the commune-month with no row (but a fact_service_report row).
        """
        main, target, report = self._staging.main, fact_service_stat, fact_service_report
        staged = conn.execute(sa.select(main.c.commune_code, main.c.month, sa.func.max(main.c.source_file))
                              .group_by(main.c.commune_code, main.c.month)).all()
        reports = {(commune, month): source_file for commune, month, source_file in staged}
        reports.update(self._reports)
        if reports:
            keys = [{"c": commune, "m": month} for commune, month in reports]
            conn.execute(sa.delete(report).where(report.c.commune_code == sa.bindparam("c"),
                                                 report.c.month == sa.bindparam("m")), keys)
            conn.execute(sa.insert(report), [
                {"commune_code": commune, "month": month, "source_file": source_file,
                 "batch_id": self.batch_id, "loaded_at": now}
                for (commune, month), source_file in sorted(reports.items())])
        ours = sa.exists().where(report.c.batch_id == self.batch_id,
                                 report.c.commune_code == target.c.commune_code,
                                 report.c.month == target.c.month)
        conn.execute(sa.delete(target).where(ours))
        names = [c.name for c in target.columns if c.name not in LOADER_COLUMNS]
        select = sa.select(*(main.c[name] for name in names),
                           sa.literal(self.batch_id, sa.String()), sa.literal(now, UtcDateTime()))
        conn.execute(sa.insert(target).from_select([*names, *LOADER_COLUMNS], select))

    def _record_lineage(self, conn: sa.Connection, now: datetime) -> None:
        """Upsert one fact_dossier_source row per staged source record (before deduplication).

        A record staged twice keeps its latest version; an older version (a re-run of an old
        batch) never replaces a newer one's batch_id/updated_at.
        """
        main, lineage = self._staging.main, fact_dossier_source
        keys = (main.c.dossier_code, main.c.source_system, main.c.source_record_id)
        rank = sa.func.row_number().over(
            partition_by=keys, order_by=(main.c.updated_at.desc(), main.c._row.desc()))
        ranked = sa.select(*keys, main.c.updated_at, rank.label("rank")).subquery()
        select = sa.select(
            ranked.c.dossier_code, ranked.c.source_system, ranked.c.source_record_id,
            sa.literal(self.batch_id, sa.String()), ranked.c.updated_at,
            sa.literal(now, UtcDateTime()),
        ).where(ranked.c.rank == 1)
        names = ["dossier_code", "source_system", "source_record_id", "batch_id", "updated_at",
                 "loaded_at"]
        stmt = insert_for(conn)(lineage).from_select(names, select)
        stmt = stmt.on_conflict_do_update(
            index_elements=["dossier_code", "source_system", "source_record_id"],
            set_={name: stmt.excluded[name] for name in ("batch_id", "updated_at", "loaded_at")},
            where=stmt.excluded.updated_at >= lineage.c.updated_at,
        )
        conn.execute(stmt)

    def _record_won(self, conn: sa.Connection, upsert: Any) -> None:
        """Run the chunk's upsert and stage the keys it wrote (inserted, or replaced an older
        version), keyed and analyzed: their events or levels are replaced next.

        The upsert's RETURNING names exactly those keys: a key whose row kept a newer version is
        not returned. The target's statistics are stale right after the upsert (autovacuum has not
        seen it): joined to it, the planner would expect a handful of rows and nest loops over
        every staged event (quadratic in the chunk).
        """
        main, won = self._staging.main, self._staging.won
        if conn.dialect.name == "postgresql":
            written = upsert.cte("written")
            select = (sa.select(written.c[self.key], main.c._with_events)
                      .join(main, main.c[self.key] == written.c[self.key]))
            conn.execute(sa.insert(won).from_select(["key", "_with_events"], select))
            conn.exec_driver_sql(f"ANALYZE {won.name}")
            return
        # SQLite has no INSERT inside a WITH: the keys come back, and go in again
        keys = conn.execute(upsert).scalars().all()
        if keys:
            conn.execute(sa.insert(won), [{"key": key} for key in keys])
            flag = sa.select(main.c._with_events).where(main.c[self.key] == won.c.key).limit(1)
            conn.execute(sa.update(won).values(_with_events=flag.scalar_subquery()))

    def _won(self) -> sa.Select:
        """Keys of the chunk whose target row is now the chunk's version (`_record_won`)."""
        return sa.select(self._staging.won.c.key)

    def _replace_events(self, conn: sa.Connection) -> None:
        event, won = self._staging.event, self._staging.won
        replaced = self._won().where(won.c._with_events == 1)
        conn.execute(sa.delete(fact_dossier_event).where(fact_dossier_event.c.dossier_code.in_(replaced)))
        # A dossier sent twice in the chunk brings its steps twice: keep the last staged.
        rank = sa.func.row_number().over(partition_by=(event.c.dossier_code, event.c.seq),
                                         order_by=event.c._ord.desc())
        ranked = sa.select(event, rank.label("rank")).subquery()
        names = ["dossier_code", "seq", "status", "occurred_at", "note"]
        select = (sa.select(*(ranked.c[n] for n in names), sa.literal(self.batch_id, sa.String()))
                  .where(ranked.c.rank == 1, ranked.c.dossier_code.in_(replaced)))
        conn.execute(sa.insert(fact_dossier_event).from_select(names + ["batch_id"], select))

    def _replace_levels(self, conn: sa.Connection) -> None:
        main, level = self._staging.main, self._staging.level
        replaced = self._won()
        conn.execute(sa.delete(dim_procedure_level)
                     .where(dim_procedure_level.c.procedure_code.in_(replaced)))
        select = (sa.select(level.c.procedure_code, level.c.valid_from, level.c.valid_to,
                            level.c.online_level, dim_online_level.c.decree_42_level,
                            level.c.is_current, sa.literal(self.batch_id, sa.String()))
                  .select_from(level.join(main, main.c._row == level.c._row)
                               .outerjoin(dim_online_level,
                                          dim_online_level.c.code == level.c.online_level))
                  .where(level.c.procedure_code.in_(replaced)))
        conn.execute(sa.insert(dim_procedure_level).from_select(
            ["procedure_code", "valid_from", "valid_to", "online_level", "decree42_level",
             "is_current", "batch_id"], select))

    def _abandon_running(self, conn: sa.Connection) -> None:
        """Record as failed the other batches of this stream still `running`: their runs died.

        A run killed outright (SIGKILL, the OOM killer, a lost host) never gets to record its
        batch as failed, so its row would say `running` for ever. A new batch of the stream is
        opened under the stream's lock (warehouse/locks.py, taken by pipeline.sync.sync_stream,
        released by the kernel or the server when its holder dies), so no other batch of the
        stream can still be running: such a row is a dead run's. (A re-run of the same batch id
        replaces its row anyway.)
        """
        stale = sa.and_(ops_batch.c.source == self.source, ops_batch.c.stream == self.stream,
                        ops_batch.c.status == "running", ops_batch.c.batch_id != self.batch_id)
        abandoned = conn.execute(sa.select(ops_batch.c.batch_id).where(stale)).scalars().all()
        if not abandoned:
            return
        conn.execute(sa.update(ops_batch).where(stale).values(
            status="failed", finished_at=self._started_at,
            error=(f"abandoned: still running when batch {self.batch_id} of the stream started "
                   "(its run ended without recording how: killed?)")))
        log.warning("%s/%s: batch(es) %s left running by a run that died, recorded as failed",
                    self.source, self.stream, ", ".join(abandoned))

    def _write_manifest(self, conn: sa.Connection, *, status: str,
                        result: BatchResult | None = None, error: str | None = None,
                        finished_at: datetime | None = None) -> None:
        values = {
            "batch_id": self.batch_id, "source": self.source, "stream": self.stream,
            "entity": self.entity, "window_start": self.window_start, "window_end": self.window_end,
            "status": status,
            "rows_read": result.rows_read if result else 0,
            "rows_loaded": result.rows_loaded if result else 0,
            "rows_quarantined": result.rows_quarantined if result else 0,
            "rows_deduplicated": result.rows_deduplicated if result else 0,
            "checksum": result.checksum if result else None,
            "watermark": result.watermark if result else None,
            "error": error, "started_at": self._started_at, "finished_at": finished_at,
        }
        stmt = insert_for(conn)(ops_batch).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["batch_id"],
            set_={name: stmt.excluded[name] for name in values if name != "batch_id"},
        )
        conn.execute(stmt)

    def _advance_sync_state(self, conn: sa.Connection, watermark: datetime | None,
                            now: datetime) -> None:
        stmt = insert_for(conn)(ops_sync_state).values(
            source=self.source, stream=self.stream, watermark=watermark,
            last_batch_id=self.batch_id, updated_at=now)
        current, new = ops_sync_state.c.watermark, stmt.excluded.watermark
        stmt = stmt.on_conflict_do_update(
            index_elements=["source", "stream"],
            set_={
                # A re-run of an old window never moves the watermark back.
                "watermark": sa.case((sa.or_(current.is_(None), new > current), new),
                                     else_=current),
                "last_batch_id": stmt.excluded.last_batch_id,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        conn.execute(stmt)

    # ── connection lifecycle ─────────────────────────────────────────────────────────────────

    def _open_connection(self) -> sa.Connection:
        if self._state != "open" or self._conn is None:
            raise RuntimeError(f"the batch is {self._state}: use the writer inside `with`, "
                               "add() and commit() before leaving it")
        return self._conn

    def _abort(self) -> None:
        try:
            if self._txn is not None and self._txn.is_active:
                self._txn.rollback()
        finally:
            self._close()
            self._state = "aborted"

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._txn = None

    def _record_failure(self, error: str) -> None:
        try:
            with self.engine.begin() as conn:
                self._write_manifest(conn, status="failed", error=error, finished_at=_utcnow())
        except Exception:  # the batch's own error is the one to raise; this one is only logged
            log.exception("batch %s failed (%s) and could not be recorded as failed",
                          self.batch_id, error)


class _StepTimes:
    """Seconds each step of a commit took, for its log line: `with timed("upsert"): ...`."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps.append((name, time.perf_counter() - started))

    def __str__(self) -> str:
        total = sum(seconds for _, seconds in self.steps)
        return f"{total:.1f} s (" + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.steps) + ")"


# ── staging tables ──────────────────────────────────────────────────────────────────────────────

_LEVEL_COLUMNS = ("procedure_code", "_row", "valid_from", "valid_to", "online_level", "is_current")


class _StagingTables:
    """Temporary tables of one batch (per connection; dropped at commit, gone on rollback)."""

    def __init__(self, target: sa.Table, key: str) -> None:
        md = sa.MetaData()

        def temporary(name: str, *columns: sa.Column[Any]) -> sa.Table:
            return sa.Table(name, md, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")

        columns = [sa.Column(c.name, c.type)
                   for c in target.columns if c.name not in LOADER_COLUMNS]
        self.main = temporary(f"_stg_{target.name}", *columns,
                              sa.Column("_row", sa.BigInteger),
                              sa.Column("_with_events", sa.SmallInteger))
        self.digest = temporary("_stg_digest", sa.Column("digest", sa.LargeBinary))
        self.event = temporary("_stg_dossier_event",
                               *(sa.Column(c.name, c.type) for c in fact_dossier_event.columns
                                 if c.name != "batch_id"),
                               sa.Column("_ord", sa.BigInteger))
        self.level = temporary("_stg_procedure_level",
                               sa.Column("procedure_code", dim_procedure.c.procedure_code.type),
                               sa.Column("_row", sa.BigInteger),
                               sa.Column("valid_from", sa.Date), sa.Column("valid_to", sa.Date),
                               sa.Column("online_level", sa.SmallInteger),
                               sa.Column("is_current", sa.Boolean))
        self.won = temporary("_stg_won", sa.Column("key", target.c[key].type, primary_key=True),
                             sa.Column("_with_events", sa.SmallInteger))
        # The batch's keys (their count is the rows kept) and row numbers (each once in a batch).
        self.key = temporary("_stg_key", sa.Column("key", target.c[key].type, primary_key=True))
        self.row = temporary("_stg_row", sa.Column("_row", sa.BigInteger))
        self.tables = (self.main, self.digest, self.event, self.level, self.won, self.key, self.row)
        # What a chunk merged by `_merge_chunk` leaves, emptied for the next one.
        self.chunk_tables = (self.main, self.event, self.level, self.won)

    def create(self, conn: sa.Connection) -> None:
        for table in self.tables:
            table.create(conn)

    def analyze(self, conn: sa.Connection, tables: tuple[sa.Table, ...] | None = None) -> None:
        # Autovacuum never sees temporary tables: give the planner real row counts.
        if conn.dialect.name == "postgresql":
            for table in tables or self.tables:
                conn.exec_driver_sql(f"ANALYZE {table.name}")

    def empty(self, conn: sa.Connection, tables: tuple[sa.Table, ...]) -> None:
        for table in tables:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"TRUNCATE {table.name}")
            else:
                conn.execute(sa.delete(table))

    def drop(self, conn: sa.Connection) -> None:
        for table in self.tables:
            table.drop(conn)


def _copy_rows(conn: sa.Connection, table: sa.Table, names: list[str], rows: list[tuple]) -> None:
    """Append rows of Python values to a table: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        quote = conn.dialect.identifier_preparer.quote
        sql = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
        driver = conn.connection.driver_connection
        assert driver is not None  # a connection in use holds its driver's (psycopg) connection
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        conn.execute(sa.insert(table), [dict(zip(names, row, strict=True)) for row in rows])


# ── frame → Python values ───────────────────────────────────────────────────────────────────────

def _frame_column(frame: pd.DataFrame, column: sa.Column, name: str | None = None) -> list[Any]:
    """Values of the frame column `name` (default: the table column's name), None when absent."""
    name = name or column.name
    if name in frame.columns:
        return _column_values(frame[name], column.type)
    return [None] * len(frame)


def _null(value: Any) -> bool:
    return (value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, float) and math.isnan(value)))


def _column_values(series: pd.Series, type_: sa.types.TypeEngine) -> list[Any]:
    """A frame column as Python values of the column's type (None for every kind of missing).

    The dtypes the transforms give are converted a column at a time (tz-aware times, nullable
    integers, whole amounts, text); anything else value by value.
    """
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    fast = _column_at_once(series, type_)
    if fast is not None:
        return fast
    if isinstance(type_, sa.DateTime):
        convert: Any = _to_utc
    elif isinstance(type_, sa.Date):
        convert = _to_date
    elif isinstance(type_, sa.Boolean):
        convert = bool
    elif isinstance(type_, sa.Integer):
        convert = int
    elif isinstance(type_, sa.Numeric):
        convert = functools.partial(_to_decimal, scale=type_.scale)
    else:
        convert = str
    return [None if _null(v) else convert(v) for v in series.tolist()]


def _column_at_once(series: pd.Series, type_: sa.types.TypeEngine) -> list[Any] | None:
    """`_column_values` of a column whose dtype already holds the column's type; None otherwise."""
    dtype = series.dtype
    if isinstance(type_, sa.DateTime) and isinstance(dtype, pd.DatetimeTZDtype):
        values = series.dt.tz_convert(UTC).array.to_pydatetime()
        return _none_where(values, series)
    if isinstance(type_, sa.Integer) and not isinstance(type_, sa.Boolean) and pd.api.types.is_integer_dtype(dtype):
        return _objects(series)  # Python ints
    if isinstance(type_, sa.Numeric) and pd.api.types.is_float_dtype(dtype):
        numbers = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(numbers)
        held = numbers[finite]
        if not np.array_equal(np.trunc(held), held) or np.abs(held).max(initial=0) >= 2**53:
            return None  # fractions, or beyond what a double holds exactly: the exact path
        whole = np.where(finite, numbers, 0).astype(np.int64).tolist()
        return [int_ if ok else None for int_, ok in zip(whole, finite.tolist(), strict=True)]
    if isinstance(type_, sa.String) and (dtype is np.dtype(object) or isinstance(dtype, pd.StringDtype)):
        values = _objects(series)
        if all(type(v) is str or v is None for v in values):
            return values
        return None
    if isinstance(type_, sa.Date) and dtype is np.dtype(object):
        values = _objects(series)
        if all(type(v) is date or v is None for v in values):
            return values
        return None
    return None


def _objects(series: pd.Series) -> list[Any]:
    """A column's values as Python objects, None for every kind of missing."""
    return series.to_numpy(dtype=object, na_value=None).tolist()  # type: ignore[call-overload]


def _none_where(values: Any, series: pd.Series) -> list[Any]:
    """`values` (an array as long as `series`) as a list, None where `series` is missing."""
    out = values.tolist() if hasattr(values, "tolist") else list(values)
    for i in np.flatnonzero(series.isna().to_numpy()).tolist():
        out[i] = None
    return out


def _to_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: frames carry tz-aware times")
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value.astimezone(UTC)


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):  # also a pandas Timestamp
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"expected a date, got {value!r}")


def _to_decimal(value: Any, scale: int | None) -> Decimal:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return number.quantize(Decimal(1).scaleb(-scale)) if scale is not None else number


def _digests(frame: pd.DataFrame) -> list[bytes]:
    """Each row's payload digest: its `_digest` (`without_payloads`), else its `_payload`'s."""
    if "_digest" in frame.columns:
        return frame["_digest"].tolist()
    payloads = frame["_payload"].tolist() if "_payload" in frame.columns else [None] * len(frame)
    return payload_digests(payloads)


def payload_digests(payloads: Iterable[Any]) -> list[bytes]:
    """The sha256 of each payload (of "" for none): what a batch's checksum is made of."""
    return [hashlib.sha256(b"" if _null(p) else str(p).encode("utf-8")).digest() for p in payloads]


def without_payloads(frame: pd.DataFrame) -> pd.DataFrame:
    """Good rows as the writer needs them: each payload's digest (`_digest`) instead of the payload.

    A good row's payload (the source record, masked) only goes into the batch's checksum; kept
    whole, it is most of a row's memory while the rows wait to be staged.
    """
    if "_payload" not in frame.columns:
        return frame
    return frame.drop(columns="_payload").assign(_digest=payload_digests(frame["_payload"].tolist()))


def _rules_json(rules: Any) -> str:
    """failed_rules as a JSON list of rule ids."""
    if isinstance(rules, str):
        rules = [rules]
    elif not isinstance(rules, Iterable):  # None, NaN, pd.NA
        rules = []
    return json.dumps([str(rule) for rule in rules])


def _level_periods(code: str | None, row: int, items: Any) -> list[tuple]:
    """A procedure's `levels` list → SCD2 periods (valid_to = next valid_from; the last is open)."""
    if not isinstance(items, Iterable) or isinstance(items, (str, Mapping)):
        return []
    by_start: dict[date, int] = {}
    for item in items:
        start, level = item.get("valid_from"), item.get("online_level")
        if _null(start) or _null(level):
            raise ValueError(f"procedure {code}: level {item!r} lacks valid_from or online_level")
        by_start[_to_date(start)] = int(level)  # the same start twice: the later entry wins
    starts = sorted(by_start)
    return [(code, row, start, starts[i + 1] if i + 1 < len(starts) else None, by_start[start],
             i + 1 == len(starts))
            for i, start in enumerate(starts)]


def _utcnow() -> datetime:
    return datetime.now(UTC)
