"""The source read in a process of its own (LIENTHONG_READ_PROCESS, the default): the same batch
as read in a thread, and nothing of a killed run outlives it.

The sync forks a reading process for the portal and one-stop connectors (`reads_apart`), which
inherits everything the run had opened: the stream's lock (a file lock on SQLite, a session on
PostgreSQL) among them. A reading process that dies fails the batch in one line; a run killed
outright takes its reading process with it, so its lock is free for the next run at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.province import TEST_KEY, query_rows

REPO = Path(__file__).resolve().parents[2]
WINDOW = ["--start", "2016-01-01", "--end", "2017-09-01"]


@pytest.fixture
def cli_env(monkeypatch, sqlite_url, portal):
    env = {"WAREHOUSE_URL": sqlite_url, "LIENTHONG_PSEUDONYM_KEY": TEST_KEY, "LIENTHONG_PAGE_SIZE": "200",
           "LIENTHONG_CHUNK_SIZE": "400", "LIENTHONG_GATE_ROWS": "800",
           "AIRFLOW_CONN_NATIONAL_PORTAL": portal.url.replace("http://", "http://demo:demo@")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["sync", "national-portal", "--stream", "procedures"]) == 0
    return portal


def _loaded(url: str) -> list:
    return query_rows(url, "SELECT count(*), count(DISTINCT batch_id), max(updated_at) FROM fact_dossier") + \
        query_rows(url, "SELECT count(*) FROM fact_dossier_event") + \
        query_rows(url, "SELECT count(*) FROM ops_quarantine") + \
        query_rows(url, "SELECT rows_read, rows_loaded, rows_quarantined, rows_deduplicated, checksum "
                        "FROM ops_batch WHERE stream = 'dossiers' AND status = 'loaded'")


def test_a_batch_read_apart_is_the_batch_read_in_a_thread(cli_env, sqlite_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIENTHONG_READ_PROCESS", "1")
    assert main(["sync", "national-portal", "--stream", "dossiers", *WINDOW]) == 0
    apart = _loaded(sqlite_url)
    monkeypatch.setenv("WAREHOUSE_URL", thread_url := f"sqlite:///{tmp_path / 'thread.db'}")
    monkeypatch.setenv("LIENTHONG_READ_PROCESS", "0")
    assert main(["sync", "national-portal", "--stream", "procedures"]) == 0
    assert main(["sync", "national-portal", "--stream", "dossiers", *WINDOW]) == 0
    assert apart[0][0] > 5000  # several chunks, several gates
    assert _loaded(thread_url) == apart
    # the reading process's page progress is shown by the sync's, as it reads
    assert "national_portal.dossiers pages:" in capsys.readouterr().err


def _sync_process(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sync", "national-portal", "--stream",
                             "dossiers", *WINDOW], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _reader_of(pid: int, timeout: float = 60) -> int:
    """The reading process the sync `pid` forked, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError(f"sync {pid} forked no reading process within {timeout} s")


def test_a_reading_process_that_dies_fails_the_batch_in_one_line(cli_env, sqlite_url):
    cli_env.inject(*["slow"] * 4)  # the first pages take seconds: the reader is caught reading
    sync = _sync_process({})
    os.kill(_reader_of(sync.pid), signal.SIGKILL)
    out, err = sync.communicate(timeout=120)
    assert sync.returncode == 1, (out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("lienthong: error:")]
    assert len(lines) == 1 and "the process reading the source ended" in lines[0], err
    assert query_rows(sqlite_url, "SELECT status FROM ops_batch WHERE stream = 'dossiers'") == [("failed",)]
    assert query_rows(sqlite_url, "SELECT count(*) FROM fact_dossier") == [(0,)]
    # the next run loads the window whole, once
    assert main(["sync", "national-portal", "--stream", "dossiers", *WINDOW]) == 0
    loaded = query_rows(sqlite_url, "SELECT rows_read, rows_loaded FROM ops_batch WHERE status = 'loaded' "
                                    "AND stream = 'dossiers'")
    assert len(loaded) == 1 and loaded[0][0] > 5000
    assert query_rows(sqlite_url, "SELECT count(*) FROM fact_dossier") == \
        query_rows(sqlite_url, "SELECT count(DISTINCT dossier_code) FROM fact_dossier_source")


def test_a_killed_run_takes_its_reading_process_and_lock_with_it(cli_env, sqlite_url):
    cli_env.inject(*["slow"] * 4)
    sync = _sync_process({})
    reader = _reader_of(sync.pid)
    sync.send_signal(signal.SIGKILL)
    sync.wait(timeout=30)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{reader}").exists() and time.monotonic() < deadline:
        with open(f"/proc/{reader}/stat") as stat:  # a zombie is dead, waiting to be reaped
            if stat.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        assert not Path(f"/proc/{reader}").exists(), "the reading process outlived its run"
    # the stream's lock went with them: the next run starts at once and loads the window
    started = time.monotonic()
    assert main(["sync", "national-portal", "--stream", "dossiers", *WINDOW]) == 0
    assert time.monotonic() - started < 120
    # the same window is the same batch: the killed run's `running` row is replaced by the loaded one
    assert query_rows(sqlite_url, "SELECT status FROM ops_batch WHERE stream = 'dossiers'") == [("loaded",)]
