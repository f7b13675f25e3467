"""The `lienthong` CLI: one clear line on every error, never a traceback; the report's JSON shape."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from tests.province import TEST_KEY


@pytest.fixture
def cli_env(monkeypatch, sqlite_url, portal):
    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("LIENTHONG_MAX_RETRIES", "1")
    monkeypatch.setenv("LIENTHONG_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", portal.url.replace("http://", "http://demo:demo@"))
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)
    return portal


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lienthong: error:")]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("faults, words", [
    (["html_error"] * 6, "HTML"),
    (["malformed_json"] * 3, "JSON"),
    (["empty_body"] * 3, "empty"),
    (["missing_fields"] * 3, "result"),
])
def test_portal_faults_end_in_one_clear_line(cli_env, capsys, faults, words):
    cli_env.inject(*faults)
    assert main(["sync", "national-portal", "--stream", "procedures"]) == 1
    line = _one_error_line(capsys)
    assert words.lower() in line.lower()
    assert "national_portal" in line


def test_a_portal_that_drips_its_answer_is_cut_at_the_total_deadline(cli_env, capsys, sqlite_url):
    """LIENTHONG_HTTP_TIMEOUT bounds the whole call, not each read: a byte every 0.2 s never ends
    a per-read timeout of 2 s, the total deadline does; the batch fails, nothing of it loaded."""
    import time

    from tests.province import query_rows

    cli_env.inject("drip", "drip")  # the first try and its one retry
    started = time.monotonic()
    assert main(["sync", "national-portal", "--stream", "procedures"]) == 1
    seconds = time.monotonic() - started
    line = _one_error_line(capsys)
    assert "national_portal" in line and "no complete answer within 2 s" in line, line
    assert seconds < 30, seconds  # two calls of 2 s, the backoff between them, the start-up
    assert query_rows(sqlite_url, "SELECT status FROM ops_batch") == [("failed",)]
    assert query_rows(sqlite_url, "SELECT count(*) FROM dim_procedure") == [(0,)]


def test_sync_then_report_json(cli_env, capsys):
    assert main(["sync", "national-portal", "--stream", "procedures"]) == 0
    window = ["--start", "2017-06-01", "--end", "2017-09-01"]
    assert main(["sync", "national-portal", "--stream", "dossiers", *window]) == 0
    out = capsys.readouterr().out
    assert "national_portal.dossiers: read" in out
    assert main(["report", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all({"indicator", "period", "agency_code", "value"} <= set(r) for r in rows)
    assert any(r["agency_code"] is None for r in rows) and any(r["agency_code"] for r in rows)


def test_missing_connection_is_named(cli_env, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_NATIONAL_PORTAL")
    assert main(["sync", "national-portal"]) == 1
    assert "AIRFLOW_CONN_NATIONAL_PORTAL" in _one_error_line(capsys)


def test_missing_pseudonym_key_is_an_error_not_a_default(cli_env, monkeypatch, capsys):
    monkeypatch.delenv("LIENTHONG_PSEUDONYM_KEY")
    monkeypatch.chdir(cli_env.url and "/")  # no .env file to fall back on
    assert main(["sync", "national-portal"]) == 1
    assert "LIENTHONG_PSEUDONYM_KEY" in _one_error_line(capsys)


def test_bad_credentials_are_reported_without_the_password(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", cli_env.url.replace("http://", "http://demo:s3cret@"))
    assert main(["sync", "national-portal"]) == 1
    line = _one_error_line(capsys)
    assert "s3cret" not in line and "demo" in line


def test_unknown_indicator_is_a_clear_error(cli_env, capsys):
    assert main(["db", "upgrade"]) == 0
    assert main(["report", "--indicator", "happiness"]) == 1
    assert "unknown indicator 'happiness'" in _one_error_line(capsys)


def test_unreachable_warehouse_is_one_line(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert main(["db", "upgrade"]) == 1
    assert "warehouse" in _one_error_line(capsys)


def test_pools_are_printed_and_written_as_airflow_pools_import_reads_them(tmp_path, capsys):
    from pipeline.pools import POOLS

    assert main(["pools"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {pool.name: {"slots": pool.slots, "description": pool.description, "include_deferred": False}
                       for pool in POOLS}
    assert all(isinstance(spec["slots"], int) and spec["slots"] >= 1 for spec in printed.values())
    out = tmp_path / "pools.json"
    assert main(["pools", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {len(POOLS)} pools to {out} (then: airflow pools import {out})"
    assert json.loads(out.read_text(encoding="utf-8")) == printed
