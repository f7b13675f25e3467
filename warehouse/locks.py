"""Stream locks: one run of a source stream at a time on a warehouse, across processes and hosts.

A lock is named by the connector's `source_system` and the stream (`national_portal.dossiers`,
`one_stop:000.00.03.H62.dossiers`): streams of different sources or agencies never wait for each
other. Every kind is released when its holder ends, however it ends (SIGKILL included):

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) keyed by a stable 64-bit
  hash of the name, on a connection of its own held for the batch; the server drops it with the
  session (and probes it with TCP keepalives: a lost host's lock goes within about 2 minutes).
  Its `application_name` says who holds it.
- SQLite file: `flock` on `<database>.locks/<hash>.lock` beside the database file; the kernel drops
  it with the process. The file says who holds it.
- In-memory SQLite: a lock of this process (no other process sees the database).

Load slots (`take_load_slot`) cap how many batches write to the warehouse at once, whatever DAG,
worker or CLI runs them (LIENTHONG_WAREHOUSE_LOAD_SLOTS): slot k of n is a lock of the same kind
named `warehouse load slot k/n`; a run takes the first free one, or waits for one.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

import sqlalchemy as sa

from transforms.timefmt import LOCAL_TZ

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# Server-side TCP keepalive of a PostgreSQL lock's session (seconds; count of probes).
KEEPALIVE = {"tcp_keepalives_idle": "60", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "6"}
_TAG = "lienthong"  # first word of a holder's description, which says it is one of ours


class StreamLocked(RuntimeError):
    """Another run holds the stream's lock: the sync is refused, before it writes anything."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: the process, its host and since when."""

    pid: int
    host: str
    since: datetime

    @classmethod
    def this_process(cls) -> LockHolder:
        return cls(os.getpid(), socket.gethostname(), datetime.now(UTC).replace(microsecond=0))

    def to_text(self) -> str:
        """`lienthong <epoch seconds> <pid> <host>`: short enough for an `application_name`."""
        return f"{_TAG} {int(self.since.timestamp())} {self.pid} {self.host}"

    @classmethod
    def from_text(cls, text: str | None) -> LockHolder | None:
        """The holder `to_text` described, or None when `text` is not such a description."""
        words = (text or "").strip().split("\n", 1)[0].split(" ")
        if len(words) != 4 or words[0] != _TAG or not (words[1].isdigit() and words[2].isdigit()):
            return None
        return cls(int(words[2]), words[3], datetime.fromtimestamp(int(words[1]), UTC))

    def describe(self) -> str:
        """`pid 1234 on host x since 10:02:11` (province time; the date too when not today)."""
        since = self.since.astimezone(LOCAL_TZ)
        shown = f"{since:%H:%M:%S}" if since.date() == datetime.now(LOCAL_TZ).date() \
            else f"{since:%Y-%m-%d %H:%M:%S}"
        return f"pid {self.pid} on host {self.host} since {shown}"


def lock_key(name: str) -> int:
    """A stable signed 64-bit key of a lock name (what `pg_try_advisory_lock(bigint)` takes)."""
    digest = hashlib.sha256(f"{_TAG} stream lock {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Lock(Protocol):
    def try_acquire(self) -> bool: ...
    def holder(self) -> LockHolder | None: ...
    def release(self) -> None: ...


class StreamLock:
    """A held stream lock: `release()` it, or leave the `with` block it is used in."""

    def __init__(self, name: str, lock: _Lock) -> None:
        self.name = name
        self._lock: _Lock | None = lock

    def release(self) -> None:
        """Let the next run of the stream take the lock (a second call does nothing)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def __enter__(self) -> StreamLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_stream(engine: sa.Engine, source: str, stream: str, *, wait_seconds: float = 0) -> StreamLock:
    """Take the lock of `source`'s `stream` on the warehouse of `engine`, or raise StreamLocked.

    While another run holds it, wait up to `wait_seconds` (polling), then refuse in one line
    naming the holder. The lock is held until released, or until this process ends.
    """
    name = f"{source}.{stream}"
    lock = _lock_for(engine, name)
    try:
        deadline = time.monotonic() + wait_seconds
        waiting = False
        while not lock.try_acquire():
            holder = lock.holder()
            if time.monotonic() >= deadline:
                raise StreamLocked(_refusal(name, holder, wait_seconds))
            if not waiting:
                waiting = True
                log.warning("%s is being synced by another run%s: waiting up to %g s for it",
                            name, f" ({holder.describe()})" if holder else "", wait_seconds)
            time.sleep(max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
    except BaseException:
        lock.release()
        raise
    log.info("%s: lock taken", name)
    return StreamLock(name, lock)


def take_load_slot(engine: sa.Engine, slots: int, *, wait_seconds: float) -> StreamLock | None:
    """Take one of the warehouse's `slots` load slots, waiting up to `wait_seconds` for one to
    free; None when `slots` is 0 (no cap). Raises StreamLocked when none frees in time."""
    if slots <= 0:
        return None
    locks: dict[str, _Lock | None] = {f"warehouse load slot {k}/{slots}": None for k in range(1, slots + 1)}
    held: StreamLock | None = None
    try:
        deadline = time.monotonic() + wait_seconds
        waiting = False
        while held is None:
            for name in locks:
                slot = locks[name] or _lock_for(engine, name)
                locks[name] = slot
                if slot.try_acquire():
                    held = StreamLock(name, slot)
                    break
            else:
                if time.monotonic() >= deadline:
                    raise StreamLocked(f"all {slots} warehouse load slots are in use after waiting "
                                       f"{wait_seconds:g} s (LIENTHONG_WAREHOUSE_LOAD_SLOTS); try again later")
                if not waiting:
                    waiting = True
                    log.warning("all %d warehouse load slots are in use: waiting up to %g s for one",
                                slots, wait_seconds)
                time.sleep(max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
    finally:
        for name, unused in locks.items():
            if unused is not None and (held is None or name != held.name):
                unused.release()
    log.info("%s taken", held.name)
    return held


def _refusal(name: str, holder: LockHolder | None, waited: float) -> str:
    who = f" ({holder.describe()})" if holder else ""
    if waited > 0:
        return f"{name} is still being synced by another run{who} after waiting {waited:g} s; try again when it ends"
    return f"{name} is already being synced by another run{who}; try again when it ends"


def _lock_for(engine: sa.Engine, name: str) -> _Lock:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return _AdvisoryLock(engine, lock_key(name))
    if dialect == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return _ProcessLock(name)
        path = Path(database).resolve()
        unsigned = lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF
        return _FileLock(path.with_name(path.name + ".locks") / f"{unsigned:016x}.lock", name)
    raise ValueError(f"no stream lock on {dialect!r} warehouses (PostgreSQL or SQLite)")


class _AdvisoryLock:
    """A session-level advisory lock on a connection of its own, out of the pool."""

    _HOLDER = sa.text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = :high AND l.objid::bigint = :low")

    def __init__(self, engine: sa.Engine, key: int) -> None:
        self.key = key
        self._engine = engine
        self._conn: sa.Connection | None = None
        self._held = False

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            # Autocommit: no transaction idles. Then out of the pool: closing it ends the session
            # (and whatever it holds), and no later user of a pooled connection inherits the lock.
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.detach()
            # A holder whose host is lost (not only its process) sends no FIN: the server would
            # keep its session, and the lock, until the kernel's keepalive default (2 hours).
            # These make the server probe the idle session and drop it within about 2 minutes.
            for name, value in KEEPALIVE.items():
                conn.execute(sa.select(sa.func.set_config(name, value, False)))
            self._conn = conn
        return self._conn

    def _say_holder(self, conn: sa.Connection) -> None:
        conn.execute(sa.select(sa.func.set_config("application_name",
                                                  LockHolder.this_process().to_text(), False)))

    def try_acquire(self) -> bool:
        conn = self._connection()
        self._say_holder(conn)
        self._held = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(self.key))).scalar())
        return self._held

    def holder(self) -> LockHolder | None:
        unsigned = self.key & 0xFFFF_FFFF_FFFF_FFFF
        rows = self._connection().execute(self._HOLDER, {"high": unsigned >> 32,
                                                         "low": unsigned & 0xFFFF_FFFF})
        return next(filter(None, (LockHolder.from_text(name) for (name,) in rows)), None)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._held:  # at once: the session's end after close() is not waited for
                conn.execute(sa.select(sa.func.pg_advisory_unlock(self.key)))
        except sa.exc.DBAPIError:  # the session is gone, and its lock with it
            log.warning("advisory lock %d: unlock failed, the session's end releases it", self.key,
                        exc_info=True)
        finally:
            self._held = False
            conn.close()


class _FileLock:
    """`flock` on a file beside the SQLite database, which names the holder while it is held."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._fd: int | None = None
        self._held = False

    def try_acquire(self) -> bool:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._held = True
        # The file is never removed: a run that opened it before would lock a file no one sees.
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{LockHolder.this_process().to_text()}\n{self.name}\n".encode(), 0)
        return True

    def holder(self) -> LockHolder | None:
        if self._fd is None:
            return None
        return LockHolder.from_text(os.pread(self._fd, 4096, 0).decode("utf-8", "replace"))

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._held:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._held = False
            os.close(fd)


class _ProcessLock:
    """A lock of this process, for an in-memory SQLite warehouse no other process can open."""

    _guard = threading.Lock()
    _locks: dict[str, threading.Lock] = {}
    _holders: dict[str, LockHolder] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        with self._guard:
            self._lock = self._locks.setdefault(name, threading.Lock())
        self._held = False

    def try_acquire(self) -> bool:
        self._held = self._lock.acquire(blocking=False)
        if self._held:
            self._holders[self.name] = LockHolder.this_process()
        return self._held

    def holder(self) -> LockHolder | None:
        return self._holders.get(self.name)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._holders.pop(self.name, None)
            self._lock.release()
