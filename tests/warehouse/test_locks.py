"""Stream locks (issue 10 §4): one run of a stream at a time, across processes, on SQLite and PostgreSQL.

The other run is a real process (`HOLDER` below): the lock must hold across processes, which no
lock of this process could show, and be released when that process is killed outright.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.base import Window
from pipeline.settings import PipelineSettings
from tests.province import FULL_WINDOW, TEST_KEY, connection_for, query_rows, settings, table_counts
from warehouse.db import create_engine, upgrade
from warehouse.locks import LockHolder, StreamLocked, lock_key, lock_stream, take_load_slot

REPO = Path(__file__).resolve().parents[2]

# Takes the lock of argv[2] (source) / argv[3] (stream) on the warehouse argv[1], says "held",
# then holds it until its stdin closes (or argv[4] seconds pass) and releases it.
HOLDER = """
import sys, select
from warehouse.db import create_engine
from warehouse.locks import lock_stream
engine = create_engine(sys.argv[1])
with lock_stream(engine, sys.argv[2], sys.argv[3]):
    print("held", flush=True)
    select.select([sys.stdin], [], [], float(sys.argv[4]))
print("released", flush=True)
"""
# The same for one of the warehouse's load slots: argv[2] is "slots:<n>", argv[3] is ignored.
SLOT_HOLDER = HOLDER.replace("import lock_stream", "import take_load_slot").replace(
    "lock_stream(engine, sys.argv[2], sys.argv[3])", "take_load_slot(engine, int(sys.argv[2][6:]), wait_seconds=0)")


class Holder:
    """Another process holding a stream's lock."""

    def __init__(self, url: str, source: str, stream: str, hold_seconds: float = 120) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        script = SLOT_HOLDER if source.startswith("slots:") else HOLDER
        self.process = subprocess.Popen([sys.executable, "-c", script, url, source, stream, str(hold_seconds)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "held", f"the holder did not take the lock: {line!r}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        assert self.process.stdout.readline().strip() == "released"
        assert self.process.wait(30) == 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def warehouse(warehouse_url):
    upgrade(warehouse_url)
    engine = create_engine(warehouse_url)
    yield warehouse_url, engine
    engine.dispose()


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(url: str, source: str, stream: str, hold_seconds: float = 120) -> Holder:
        started.append(Holder(url, source, stream, hold_seconds))
        return started[-1]

    yield start
    for holder in started:
        holder.close()


def test_a_second_run_of_the_stream_is_refused_in_one_line_naming_the_holder(warehouse, holders):
    url, engine = warehouse
    holder = holders(url, "national_portal", "dossiers")
    with pytest.raises(StreamLocked) as refused:
        lock_stream(engine, "national_portal", "dossiers")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("national_portal.dossiers is already being synced by another run "
                              f"(pid {holder.pid} on host ")
    assert message.endswith("; try again when it ends")


def test_other_streams_and_other_agencies_do_not_wait(warehouse, holders):
    url, engine = warehouse
    holders(url, "one_stop:000.00.03.H62", "dossiers")
    with lock_stream(engine, "one_stop:000.00.04.H62", "dossiers"), \
            lock_stream(engine, "one_stop:000.00.03.H62", "procedures"), \
            lock_stream(engine, "national_portal", "dossiers"):
        pass
    with pytest.raises(StreamLocked):
        lock_stream(engine, "one_stop:000.00.03.H62", "dossiers")


def test_a_run_that_waits_takes_the_lock_when_the_holder_ends(warehouse, holders):
    url, engine = warehouse
    holders(url, "national_portal", "dossiers", hold_seconds=1.5)  # releases by itself
    started = time.monotonic()
    with lock_stream(engine, "national_portal", "dossiers", wait_seconds=60):
        waited = time.monotonic() - started
    assert 0.5 < waited < 30


def test_a_run_that_waits_too_long_is_refused_saying_how_long(warehouse, holders):
    url, engine = warehouse
    holders(url, "national_portal", "procedures")
    with pytest.raises(StreamLocked, match=r"is still being synced by another run \(pid \d+ .*\) after waiting 1 s"):
        lock_stream(engine, "national_portal", "procedures", wait_seconds=1)


def test_the_lock_of_a_killed_run_is_free_at_once(warehouse, holders):
    url, engine = warehouse
    holder = holders(url, "national_portal", "dossiers")
    holder.kill()  # SIGKILL: no release ran; the kernel (flock) or the server (session) drops the lock
    deadline = time.monotonic() + 10  # PostgreSQL notices the closed socket within moments
    while True:
        try:
            with lock_stream(engine, "national_portal", "dossiers"):
                break
        except StreamLocked:
            assert time.monotonic() < deadline, "the killed run's lock was never released"
            time.sleep(0.2)


def test_a_released_lock_can_be_taken_again_in_the_same_process(warehouse):
    _, engine = warehouse
    for _ in range(3):
        with lock_stream(engine, "lgsp", "dossiers"):
            with pytest.raises(StreamLocked):  # not re-entrant: a second run in this process waits too
                lock_stream(engine, "lgsp", "dossiers")


def test_the_warehouse_load_slots_cap_concurrent_batches_across_processes(warehouse, holders):
    url, engine = warehouse
    first = holders(url, "slots:2", "-")
    with take_load_slot(engine, 2, wait_seconds=0) as mine:  # the other slot
        assert mine is not None and mine.name == "warehouse load slot 2/2"
        with pytest.raises(StreamLocked, match=r"^all 2 warehouse load slots are in use after waiting 1 s "
                                               r"\(LIENTHONG_WAREHOUSE_LOAD_SLOTS\); try again later$"):
            take_load_slot(engine, 2, wait_seconds=1)
    second = holders(url, "slots:2", "-")  # takes the slot this process left
    first.kill()  # a killed holder's slot is free at once
    with take_load_slot(engine, 2, wait_seconds=0) as again:
        assert again is not None and again.name == "warehouse load slot 1/2"
    second.release()


def test_a_batch_waits_for_a_free_load_slot(warehouse, holders):
    url, engine = warehouse
    holders(url, "slots:1", "-", hold_seconds=1.5)  # releases by itself
    started = time.monotonic()
    with take_load_slot(engine, 1, wait_seconds=60):
        assert 0.5 < time.monotonic() - started < 30
    assert take_load_slot(engine, 0, wait_seconds=0) is None  # 0: no cap


def test_a_sync_takes_a_load_slot_for_its_batch(warehouse, holders, portal):
    url, engine = warehouse
    from pipeline.sync import sync_stream

    holders(url, "slots:1", "-")
    before = table_counts(url)
    with pytest.raises(StreamLocked, match="all 1 warehouse load slots are in use"):
        sync_stream("national_portal", "procedures", engine=engine, connection=connection_for(portal),
                    settings=settings(warehouse_load_slots=1, load_slot_wait_seconds=0.5), window=FULL_WINDOW)
    assert table_counts(url) == before  # refused before its batch opened
    # and the stream's lock was let go: with a free slot the same sync runs
    outcome = sync_stream("national_portal", "procedures", engine=engine, connection=connection_for(portal),
                          settings=settings(warehouse_load_slots=2), window=FULL_WINDOW)
    assert outcome.rows_loaded > 0


def test_lock_keys_are_stable_and_distinct():
    assert lock_key("national_portal.dossiers") == lock_key("national_portal.dossiers")
    names = [f"one_stop:000.00.{n:02d}.H62.dossiers" for n in range(100)]
    assert len({lock_key(name) for name in names}) == len(names)
    assert all(-(2**63) <= lock_key(name) < 2**63 for name in names)


def test_a_holder_description_reads_back():
    holder = LockHolder.this_process()
    assert LockHolder.from_text(holder.to_text()) == holder
    assert LockHolder.from_text("psql") is None
    assert LockHolder.from_text(None) is None


# ── the CLI beside another run ────────────────────────────────────────────────────────────────


def _sync_env(monkeypatch, url: str, portal) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", portal.url.replace("http://", "http://demo:demo@"))
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)


WINDOW_ARGS = ["--start", FULL_WINDOW.start.isoformat(), "--end", FULL_WINDOW.end.isoformat()]


def test_the_cli_beside_a_running_sync_is_refused_and_writes_nothing(warehouse, holders, portal, monkeypatch,
                                                                      capsys):
    from pipeline.cli import main

    url, _ = warehouse
    _sync_env(monkeypatch, url, portal)
    holder = holders(url, "national_portal", "procedures")
    before = table_counts(url)
    assert main(["sync", "national-portal", "--stream", "procedures", *WINDOW_ARGS]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("lienthong: error:")]
    assert lines == [f"lienthong: error: national_portal.procedures is already being synced by another run "
                     f"(pid {holder.pid} on host {os.uname().nodename} since {lines[0].split(' since ')[1]}"]
    assert table_counts(url) == before  # not even an ops_batch row
    assert portal.calls == []  # refused before the source was asked anything


def test_two_runs_at_once_load_once(warehouse_url, portal, province, holders):
    """Two CLI processes sync the same streams at once, the second waiting: the ground truth, once."""
    _, truth = province
    upgrade(warehouse_url)
    # Held a moment by a third process, so that both runs are sure to meet a lock (on a busy machine
    # one run could otherwise finish before the other starts); then they race for it.
    holders(warehouse_url, "national_portal", "procedures", hold_seconds=8)
    env = {**os.environ, "PYTHONPATH": str(REPO), "WAREHOUSE_URL": warehouse_url,
           "LIENTHONG_PSEUDONYM_KEY": TEST_KEY, "LIENTHONG_LOCK_WAIT_SECONDS": "300",
           "AIRFLOW_CONN_NATIONAL_PORTAL": portal.url.replace("http://", "http://demo:demo@")}
    env.pop("LIENTHONG_DEBUG", None)
    argv = [sys.executable, "-m", "pipeline.cli", "sync", "national-portal", *WINDOW_ARGS]
    runs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
        assert "Traceback" not in err and "database is locked" not in err, err
    assert any("being synced by another run" in err for _, err in results), results  # they did meet
    counts = table_counts(warehouse_url)
    assert counts["fact_dossier"] == truth["dossiers"]["expected_loaded_distinct"]
    assert counts["ops_quarantine"] == truth["dossiers"]["expected_quarantined"]
    assert counts["dim_procedure"] == truth["procedures"]["records"]
    batches = query_rows(warehouse_url, "SELECT stream, status, count(*) FROM ops_batch GROUP BY stream, status "
                                        "ORDER BY stream, status")
    # a backfill window names its batch: the second run re-ran the same batch, after the first
    assert [tuple(row) for row in batches] == [("dossiers", "loaded", 1), ("procedures", "loaded", 1)]


def test_a_sync_that_waits_runs_when_the_other_ends(warehouse, holders, portal):
    """LIENTHONG_LOCK_WAIT_SECONDS: the sync waits for the other run, then syncs as usual."""
    from pipeline.sync import sync_stream

    url, engine = warehouse
    settings = PipelineSettings(pseudonym_key=TEST_KEY, lock_wait_seconds=60)
    connection = connection_for(portal)
    sync_stream("national_portal", "procedures", engine=engine, connection=connection, settings=settings,
                window=Window(FULL_WINDOW.start, FULL_WINDOW.end))
    holders(url, "national_portal", "dossiers", hold_seconds=1)
    outcome = sync_stream("national_portal", "dossiers", engine=engine, connection=connection, settings=settings,
                          until=FULL_WINDOW.end)
    assert outcome.rows_loaded > 0
    with engine.connect() as conn:
        running = conn.execute(sa.text("SELECT count(*) FROM ops_batch WHERE status = 'running'")).scalar_one()
    assert running == 0
