"""Warehouse connections and upgrades: URL, engines per dialect, Alembic to head, code lists."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

import standards
from warehouse.history import record_agency_history
from warehouse.locks import lock_key
from warehouse.schema import CODELIST_TABLES, dim_agency_version, dim_dossier_status

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
# How long a SQLite writer waits for the write lock. A batch holds it from its opening to its
# commit (warehouse/load.py), so a batch of another stream waits for a whole batch: minutes, not
# seconds, or two streams synced at once on one file end in "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 600_000

# Execution option a writer sets on its connection so SQLite takes the write lock at BEGIN
# (BEGIN IMMEDIATE): two writers then queue on the busy timeout instead of deadlocking when
# both try to upgrade a read lock. PostgreSQL ignores it.
WRITE_LOCK_OPTION = "warehouse_write_lock"

# Concurrent upgrades run one after the other: in a process (Alembic's context is one per
# process), and on PostgreSQL across processes, behind this transaction-level advisory lock.
_UPGRADING = threading.Lock()
UPGRADE_LOCK_KEY = lock_key("warehouse upgrade")


def warehouse_url() -> str:
    """The warehouse URL: `WAREHOUSE_URL`, else the repository's SQLite file `var/warehouse.db`."""
    url = os.environ.get("WAREHOUSE_URL", "").strip()
    if url:
        return url
    var = REPO_DIR / "var"
    var.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{var / 'warehouse.db'}"


def create_engine(url: str | URL | None = None) -> sa.Engine:
    """An engine for the warehouse: PostgreSQL through psycopg 3, or SQLite in WAL mode.

    SQLite connections get a busy timeout, WAL journaling, foreign-key enforcement (as PostgreSQL
    does) and real transactions: pysqlite's own transaction handling skips DDL and SAVEPOINTs, so
    SQLAlchemy emits BEGIN itself and every `engine.begin()` is one atomic SQLite transaction.
    """
    url = make_url(url or warehouse_url())
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        elif url.get_driver_name() != "psycopg":
            raise ValueError(f"the warehouse loads PostgreSQL with psycopg 3 (COPY); "
                             f"use postgresql+psycopg://, not {url.drivername}://")
        return sa.create_engine(url, pool_pre_ping=True)
    if backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine, in_memory=url.database in (None, "", ":memory:"))
        return engine
    raise ValueError(f"unsupported warehouse database {backend!r}: use PostgreSQL or SQLite")


def _configure_sqlite(engine: sa.Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook below emits BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before it returns, power cut or not. The pipeline acknowledges
            # the LGSP cursor and archives drop files after its commits, so a commit that a power cut
            # could undo (NORMAL) would lose what the source no longer serves. A batch is one
            # transaction: one fsync more per batch.
            cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_LOCK_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def insert_for(connection: sa.Connection) -> Callable[[sa.Table], Any]:
    """The dialect's INSERT construct, which has `.on_conflict_do_update` (PostgreSQL, SQLite)."""
    name = connection.dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise ValueError(f"no upsert for dialect {name!r}")


@contextmanager
def connection_of(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """The given connection, or a new one from the given engine (closed afterwards)."""
    if isinstance(bind, sa.Connection):
        yield bind
    else:
        with bind.connect() as connection:
            yield connection


def alembic_config() -> Config:
    """Alembic configuration of the warehouse migrations (works from any working directory)."""
    return Config(str(ALEMBIC_INI))


def upgrade(target: str | URL | sa.Engine | None = None, revision: str = "head") -> None:
    """Migrate the warehouse to `revision` and upsert the code-list dimensions, in one transaction.

    Idempotent: a second call changes nothing and writes nothing, so it does not wait for a batch
    another run holds open (which on SQLite holds the write lock). Upgrades at once run in turn.
    """
    engine = target if isinstance(target, sa.Engine) else create_engine(target)
    try:
        with _UPGRADING:
            try:
                _upgrade(engine, revision)
            except sa.exc.OperationalError as exc:
                if engine.dialect.name != "sqlite" or "database is locked" not in str(exc.orig):
                    raise
                # Something to write while another writer holds the lock, which a transaction that
                # has read cannot wait for: again, taking the lock at BEGIN (waits: busy timeout).
                _upgrade(engine.execution_options(**{WRITE_LOCK_OPTION: True}), revision)
    finally:
        if engine is not target:
            engine.dispose()


def _upgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(UPGRADE_LOCK_KEY)))
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        seed_dimensions(connection)


def seed_dimensions(connection: sa.Connection, *, today: date | None = None) -> None:
    """Upsert the code-list dimensions, agencies and admin units from the standard.

    Rows already equal are not touched; rows no longer in the standard are kept (facts may
    still refer to them). The agencies' history (`dim_agency_version`) follows the code list:
    a changed agency gets a new version, one gone from the list is closed on `today` (default:
    the province's today; `warehouse/history.py`).
    """
    received = standards.status_groups()["received"]
    for name, table in CODELIST_TABLES.items():
        rows = [_codelist_row(table, row) for row in standards.load_codelist(name)]
        if table is dim_dossier_status:
            for row in rows:
                row["is_received"] = row["code"] in received
        upsert_rows(connection, table, rows)
    if sa.inspect(connection).has_table(dim_agency_version.name):  # not before revision 0004
        record_agency_history(connection, standards.load_codelist("agencies"), today=today)


def upsert_rows(connection: sa.Connection, table: sa.Table,
                rows: Iterable[Mapping[str, Any]]) -> None:
    """INSERT … ON CONFLICT (primary key) DO UPDATE of the rows that are new or differ.

    Rows already stored as given are not written at all: on SQLite any write waits for the write
    lock, which a running batch holds.
    """
    rows = list(rows)
    if not rows:
        return
    key = [c.name for c in table.primary_key.columns]
    others = [c.name for c in table.columns if c.name not in key and c.name in rows[0]]
    stored = {tuple(row[:len(key)]): tuple(row[len(key):])
              for row in connection.execute(sa.select(*(table.c[name] for name in [*key, *others])))}
    rows = [row for row in rows
            if stored.get(tuple(row[name] for name in key)) != tuple(row[name] for name in others)]
    if not rows:
        return
    stmt = insert_for(connection)(table)
    if others:
        stmt = stmt.on_conflict_do_update(
            index_elements=key,
            set_={name: stmt.excluded[name] for name in others},
            where=sa.or_(*(table.c[name].is_distinct_from(stmt.excluded[name]) for name in others)),
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)
    connection.execute(stmt, rows)


def _codelist_row(table: sa.Table, row: Mapping[str, str]) -> dict[str, Any]:
    """A code-list CSV row converted to the table's column types ("" = NULL)."""
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.name not in row:
            continue
        text = row[column.name].strip()
        if text == "":
            out[column.name] = None
        elif isinstance(column.type, sa.Boolean):
            out[column.name] = text.lower() in ("true", "1", "yes")
        elif isinstance(column.type, sa.Integer):
            out[column.name] = int(text)
        elif isinstance(column.type, sa.Date):
            out[column.name] = date.fromisoformat(text)
        else:
            out[column.name] = text
    return out
