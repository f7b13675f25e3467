"""One-stop-shop databases and the LGSP feed through the same pipeline as the portal."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from pipeline.cli import main
from tests.pipeline.test_sync import LATE_WINDOW
from tests.province import TEST_KEY, run_sync, table_counts

DOJ = "000.00.03.H62"
DPI = "000.00.04.H62"


def _clean_dossiers(province, agency: str, n: int, since: str = "20170601000000") -> list[dict]:
    from simulators.generator import load_records

    data_dir, truth = province
    bad = set(truth["expected_rules"]) | set(truth["defects"]["duplicate_record"]["keys"])
    out = []
    for record in load_records(data_dir / "dossiers.jsonl"):
        if record["DonViXuLy"] == agency and record["MaHoSo"] not in bad and record["NgayCapNhat"] >= since:
            out.append(record)
            if len(out) == n:
                break
    return out


@pytest.fixture
def env(monkeypatch, sqlite_url, portal):
    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", portal.url.replace("http://", "http://demo:demo@"))
    run_sync(sqlite_url, portal, window=None, streams=["procedures"])  # the catalogue first
    return sqlite_url


def test_one_stop_database_on_mariadb_merges_with_the_portal(env, mysql_url, province, portal, monkeypatch, capsys):
    from simulators.onestop import create_onestop_database

    dossiers = _clean_dossiers(province, DOJ, 300)
    create_onestop_database(mysql_url, "a", dossiers)
    uri = sa.engine.make_url(mysql_url).set(drivername="mysql").render_as_string(hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_ONESTOP_DOJ", f"{uri}?mapping=onestop_variant_a")
    assert main(["sync", "one-stop", "--connection", "onestop_doj",
                 "--start", "2000-01-01", "--end", "2017-09-01"]) == 0
    assert f"one_stop:{DOJ}.dossiers: read 300, loaded 300" in capsys.readouterr().out
    assert table_counts(env)["fact_dossier"] == 300

    # the same dossiers again from the national portal: merged, never counted twice
    (portal_dossiers,) = run_sync(env, portal, streams=["dossiers"], window=LATE_WINDOW)
    counts = table_counts(env)
    assert counts["fact_dossier"] == portal_dossiers.rows_loaded - portal_dossiers.rows_deduplicated
    # each merged dossier lists both its source records; the agency's own system wins (docs/reconciliation.md)
    engine = sa.create_engine(env)
    with engine.connect() as conn:
        lineage = conn.execute(sa.text(
            "SELECT dossier_code, count(*) FROM fact_dossier_source GROUP BY dossier_code HAVING count(*) > 1")).all()
        winners = conn.execute(sa.text("SELECT source_system FROM fact_dossier WHERE dossier_code IN :c").bindparams(
            sa.bindparam("c", expanding=True)), {"c": [d["MaHoSo"] for d in dossiers]}).scalars().all()
    engine.dispose()
    assert {code for code, _ in lineage} == {d["MaHoSo"] for d in dossiers}
    assert set(winners) == {f"one_stop:{DOJ}"}


def test_lgsp_feed_loads_valid_messages_and_quarantines_a_hostile_one(env, province, capsys, monkeypatch):
    from simulators.lgsp import LgspSimulator, build_message, build_xxe_message

    dossiers = _clean_dossiers(province, DPI, 200)
    messages = [build_message(dossiers[:100], "000.00.00.G22", "000.00.00.H62", message_id="m-1"),
                build_xxe_message(),
                build_message(dossiers[100:], "000.00.00.G22", "000.00.00.H62", message_id="m-3")]
    with LgspSimulator(messages) as feed:
        monkeypatch.setenv("AIRFLOW_CONN_LGSP", feed.url)
        assert main(["sync", "lgsp"]) == 0
        out = capsys.readouterr().out
        assert "lgsp.dossiers: read 201, loaded 200" in out and "quarantined 1" in out
        assert feed.acked == 3
        assert main(["sync", "lgsp"]) == 0  # nothing new after the acknowledged cursor
        assert "lgsp.dossiers: read 0" in capsys.readouterr().out
    engine = sa.create_engine(env)
    with engine.connect() as conn:
        (rules,) = conn.execute(sa.text("SELECT failed_rules FROM ops_quarantine")).one()
        systems = conn.execute(sa.text("SELECT DISTINCT source_system FROM fact_dossier")).scalars().all()
    engine.dispose()
    assert json.loads(rules) == ["message.refused: external entity declared"]
    assert systems == ["lgsp"]
