"""Configured secrets — the portal password of AIRFLOW_CONN_*, the pseudonym keys, the signing key,
a database password — never appear in output, logs, reprs, error messages or the warehouse."""

from __future__ import annotations

import json
import logging
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import pipeline.cli
from connectors.settings import connection_from_env, connection_from_uri
from exchange.keys import generate_keypair, load_signing_key
from pipeline.cli import main
from pipeline.settings import PipelineSettings

PORTAL_PASSWORD = "s3cret-PORTAL-pw-9f1"
WRONG_PASSWORD = "wr0ng-PORTAL-pw-5d0"
PSEUDONYM_KEY = "pseudo-KEY-7c2e41d9b6"
PREVIOUS_KEY = "pseudo-PREV-KEY-3b8a05"
NEW_KEY = "pseudo-NEW-KEY-e4f177"
OTHER_KEY = "pseudo-OTHER-KEY-a90c3e"
DB_PASSWORD = "s3cret-DB-pw-71c"
SECRETS = (PORTAL_PASSWORD, WRONG_PASSWORD, PSEUDONYM_KEY, PREVIOUS_KEY, NEW_KEY, OTHER_KEY, DB_PASSWORD)
AGENCY = "000.00.00.H62"


def _pem_secrets(pem: str) -> list[str]:
    """The PEM and each line of its base64 body (a leak of any of them is a leak of the key)."""
    return [pem.strip(), *(line for line in pem.splitlines() if line and not line.startswith("-----"))]


def leaked(texts: list[str], secrets: list[str]) -> list[tuple[int, str]]:
    """(text number, secret) for every secret found in a text: the finding, never the text."""
    return [(i, secret[:6] + "…") for i, text in enumerate(texts) for secret in secrets if secret in text]


@pytest.fixture
def every_logger_at_debug(monkeypatch, caplog):
    """`-v` configures the CLI's logging; then every logger (httpx, alembic, …) goes to DEBUG too."""
    configure = pipeline.cli._configure_logging

    def configure_all(verbose: bool) -> None:
        configure(verbose)
        for name in ("", "lienthong", "httpx", "httpcore", "alembic", "great_expectations", "sqlalchemy",
                     "warehouse", "exchange", "connectors", "pipeline", "simulators"):
            logging.getLogger(name).setLevel(logging.DEBUG)

    monkeypatch.setattr(pipeline.cli, "_configure_logging", configure_all)
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def signing_pem(tmp_path) -> str:
    private, _ = generate_keypair(tmp_path / "keys", AGENCY, "k1")
    return private.read_text(encoding="ascii")


@pytest.fixture
def secret_env(monkeypatch, tmp_path, signing_pem):
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    monkeypatch.setenv("WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS", PREVIOUS_KEY)
    monkeypatch.setenv("LIENTHONG_SIGNING_KEY", signing_pem)  # the PEM itself, not a path
    monkeypatch.setenv("LIENTHONG_SIGNING_KEY_ID", "k1")
    monkeypatch.setenv("LIENTHONG_MAX_RETRIES", "1")
    monkeypatch.setenv("LIENTHONG_HTTP_TIMEOUT", "5")
    monkeypatch.setenv("LIENTHONG_OUTBOX", str(tmp_path / "outbox"))
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)
    return tmp_path


def _warehouse_texts(url: str) -> list[str]:
    """Every value of every table and view, as text (ops_quarantine payloads, ops_batch errors, …)."""
    engine = sa.create_engine(url)
    texts = []
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for relation in [*inspector.get_table_names(), *inspector.get_view_names()]:
                for row in conn.exec_driver_sql(f'SELECT * FROM "{relation}"'):
                    texts.append(f"{relation}: " + " | ".join(map(str, row)))
    finally:
        engine.dispose()
    return texts


def _package_texts(outbox: Path) -> list[str]:
    texts = []
    for package in sorted(outbox.glob("*.zip")):
        with zipfile.ZipFile(package) as archive:
            texts += [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
    return texts


def test_no_secret_in_output_logs_or_warehouse(secret_env, every_logger_at_debug, signing_pem, capsys,
                                               province_records, monkeypatch):
    from simulators.portal import PortalSimulator

    procedures, dossiers = province_records
    agency = Counter(d["DonViXuLy"] for d in dossiers).most_common(1)[0][0]
    outputs: list[str] = []

    def run(*argv: str) -> int:
        code = main(["-v", *argv])
        captured = capsys.readouterr()
        outputs.extend([captured.out, captured.err])
        return code

    with PortalSimulator(procedures=procedures, dossiers=dossiers[:1500], username="demo",
                         password=PORTAL_PASSWORD) as portal:
        good = portal.url.replace("http://", f"http://demo:{PORTAL_PASSWORD}@")
        monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", good)
        assert run("sync", "national-portal") == 0
        assert "quarantined" in outputs[-2]

        # refused credentials, a malformed connection URI, faults inside a batch: each one line
        monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", good.replace(PORTAL_PASSWORD, WRONG_PASSWORD))
        assert run("sync", "national-portal") == 1
        assert "credentials rejected" in outputs[-1]
        monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", good.replace(f":{portal.port}", ":port"))
        assert run("sync", "national-portal") == 1
        monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", good)
        portal.inject("http_500", "http_500")  # both attempts of LIENTHONG_MAX_RETRIES=1
        assert run("sync", "national-portal", "--stream", "dossiers", "--start", "2017-01-01",
                   "--end", "2017-02-01") == 1

        # a key that is not the warehouse's, then a rotation to a new key
        monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", OTHER_KEY)
        assert run("sync", "national-portal", "--stream", "procedures") == 1
        assert "key chain" in outputs[-1]
        monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", NEW_KEY)
        monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS", f"{PREVIOUS_KEY},{PSEUDONYM_KEY}")
        assert run("keys", "rotate-pseudonym") == 0
        assert run("sync", "national-portal", "--stream", "dossiers") == 0, outputs[-1]

    # a publish signed with the key, one with an unreadable key
    assert run("publish", "--receiver", agency) == 0
    assert "delivered" in outputs[-2]
    monkeypatch.setenv("LIENTHONG_SIGNING_KEY", signing_pem.replace("\n-----END", "xyz\n-----END"))
    assert run("publish", "--receiver", agency) == 1
    monkeypatch.setenv("LIENTHONG_SIGNING_KEY", signing_pem)

    # a validate of an agency's file
    sample = secret_env / "hoso.json"
    sample.write_text(json.dumps(dossiers[:40], ensure_ascii=False), encoding="utf-8")
    assert run("validate", str(sample)) in (0, 1)

    failed = _warehouse_texts(f"sqlite:///{secret_env / 'warehouse.db'}")
    assert any(text.startswith("ops_batch: ") and "| failed |" in text for text in failed)
    assert any(text.startswith("ops_quarantine: ") and "hmac:" in text for text in failed)
    logs = [every_logger_at_debug.text, *(str(r.args) for r in every_logger_at_debug.records)]
    assert len(every_logger_at_debug.records) > 20
    secrets = [*SECRETS, *_pem_secrets(signing_pem)]
    assert not leaked(outputs, secrets), "in the output"
    assert not leaked(logs, secrets), "in the logs"
    assert not leaked(failed, secrets), "in the warehouse"
    assert not leaked(_package_texts(secret_env / "outbox"), secrets), "in a package"


def test_no_secret_in_the_reprs_of_the_settings(secret_env, signing_pem, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", f"http://demo:{PORTAL_PASSWORD}@127.0.0.1:8765")
    settings = PipelineSettings()
    connection = connection_from_env("national_portal")
    chain = settings.require_pseudonym_key()
    signing = load_signing_key()
    shown = [repr(settings), str(settings), repr(settings.model_dump()), repr(connection), str(connection),
             connection.safe_uri(), repr(chain), str(chain), repr(signing), str(signing)]
    assert connection.get_password() == PORTAL_PASSWORD and len(chain.keys) == 2
    assert not leaked(shown, [*SECRETS, *_pem_secrets(signing_pem)])


@pytest.mark.parametrize("uri", [
    f"http://demo:{PORTAL_PASSWORD}@host:port",
    f"demo:{PORTAL_PASSWORD}@host",
    f'{{"conn_type": "http", "host": "h", "password": "{PORTAL_PASSWORD}", "extra": "{{not json"}}',
])
def test_a_malformed_connection_is_reported_without_its_password(uri, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", uri)
    with pytest.raises(ValueError) as error:
        connection_from_env("national_portal")
    assert PORTAL_PASSWORD not in str(error.value) and PORTAL_PASSWORD not in repr(error.value)


@pytest.mark.postgres
def test_no_database_password_in_output_or_logs(postgres_url, secret_env, every_logger_at_debug, capsys,
                                                monkeypatch):
    """PostgreSQL at trust authentication takes any password: the one in WAREHOUSE_URL is never shown."""
    url = make_url(postgres_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    monkeypatch.setenv("WAREHOUSE_URL", url)
    outputs = []
    for argv in (["db", "upgrade"], ["keys", "rotate-pseudonym", "--dry-run"], ["report", "--format", "json"]):
        main(["-v", *argv])
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    bad = url.replace("127.0.0.1:5432", "127.0.0.1:1")  # a refused connection: its error line
    monkeypatch.setenv("WAREHOUSE_URL", bad)
    assert main(["-v", "db", "upgrade"]) == 1
    outputs.append(capsys.readouterr().err)
    assert "warehouse" in outputs[-1]
    logs = [every_logger_at_debug.text, *(str(r.args) for r in every_logger_at_debug.records)]
    assert not leaked(outputs, [DB_PASSWORD]), "in the output"
    assert not leaked(logs, [DB_PASSWORD]), "in the logs"
    assert connection_from_uri(url).password is not None and DB_PASSWORD not in repr(connection_from_uri(url))



DEMO_PASSWORD = "s3cret-DEMO-portal-pw-2b6"


def test_the_demo_runs_every_dag_and_no_secret_is_in_its_output_logs_or_files(tmp_path):
    """`lienthong demo` through Airflow (`airflow dags test` of every DAG) with a configured key and
    portal password: the report holds the ground truth's figures, and its output, every log and
    file it wrote (Airflow's home, task logs, Data Docs, the province) and the warehouse hold
    neither secret. (The same DAGs on a real CeleryExecutor cluster: `make cluster-test`.)"""
    import os
    import subprocess
    import sys

    var = tmp_path / "var"
    warehouse = tmp_path / "warehouse.db"
    env = {**os.environ, "LIENTHONG_PSEUDONYM_KEY": PSEUDONYM_KEY, "LIENTHONG_DEMO_PORTAL_PASSWORD": DEMO_PASSWORD,
           "WAREHOUSE_URL": f"sqlite:///{warehouse}", "AIRFLOW_HOME": str(var / "airflow"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("LIENTHONG_DEBUG", None)
    demo = subprocess.run([sys.executable, "-m", "pipeline.cli", "-v", "demo", "--filler-dossiers", "300",
                           "--var-dir", str(var)], env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "Procedures in force on 2017-08-31: 1,975" in demo.stdout  # it did run whole
    secrets = [PSEUDONYM_KEY, DEMO_PASSWORD]
    assert leaked([demo.stdout, demo.stderr], secrets) == []
    files = [path for path in [*tmp_path.glob("warehouse.db*"), *var.rglob("*")] if path.is_file()]
    assert len(files) > 100  # logs of every task, Data Docs, the province's files
    found = [(str(path.relative_to(tmp_path)), secret[:6] + "…") for path in files
             for secret in secrets if secret.encode() in path.read_bytes()]
    assert found == []

    # every source's DAG ran (the sync_files sensor found the drop), then refresh_marts; the
    # cross-source duplicates merged and the report mismatches found, as the ground truth says
    import json

    import sqlalchemy as sa

    assert (var / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    truth = json.loads((var / "sim" / "sources" / "ground_truth.json").read_text(encoding="utf-8"))["sources"]
    assert f"; {len(truth['cross_source_duplicates'])} merged from more than one source" in demo.stdout
    gaps = truth["reconciliation"]["expected_gaps"]
    cells = {(g["commune_code"], g["month"]) for g in gaps}
    assert f"Communes' reports vs dossiers: {len(gaps)} differences in {len(cells)} commune-months" in demo.stdout
    engine = sa.create_engine(f"sqlite:///{warehouse}")
    with engine.connect() as conn:
        batches = conn.execute(sa.text("SELECT source, stream, status FROM ops_batch")).all()
        marts = conn.execute(sa.text("SELECT count(*) FROM mart_indicator")).scalar()
    engine.dispose()
    assert {(source.split(":")[0], stream) for source, stream, _ in batches} == {
        ("national_portal", "procedures"), ("national_portal", "dossiers"), ("one_stop", "dossiers"),
        ("lgsp", "dossiers"), ("file_drop", "justice_csv"), ("file_drop", "service_stat")}
    assert {status for _, _, status in batches} == {"loaded"} and marts > 0
