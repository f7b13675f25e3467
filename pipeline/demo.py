"""`lienthong demo`: a seeded province behind a simulated national portal, synced through Airflow, reported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VAR = REPO / "var"
# The article's period: the whole history up to the end of August 2017, as one backfill window.
DEMO_WINDOW = {"start": "2000-01-01T00:00:00+07:00", "end": "2017-09-01T00:00:00+07:00"}
_PROGRESS = re.compile(r"\[lienthong\] (.*?)(?:\s+\[lienthong[\w.]*\].*)?$")
_FINISHED = re.compile(r"DagRun Finished: dag_id=(\w+).*?state=(\w+)")


class DemoFailed(RuntimeError):
    """A step of the demo did not succeed."""


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _airflow_env(portal_url: str, warehouse: str, var_dir: Path) -> dict[str, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(portal_url)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(var_dir / "airflow")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW_CONN_NATIONAL_PORTAL": f"http://demo:demo@{parts.hostname}:{parts.port}",
        "WAREHOUSE_URL": warehouse,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "GX_ANALYTICS_ENABLED": "false",
    })
    return env


def _run_airflow(args: list[str], env: dict[str, str], log_path: Path, expect_dag: str | None = None) -> None:
    """Run an `airflow` command, keep its full output in a log file, show our progress lines."""
    airflow = Path(sys.executable).with_name("airflow")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state = None
    with log_path.open("w", encoding="utf-8") as log, subprocess.Popen(
        [str(airflow), *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, encoding="utf-8", errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            progress = _PROGRESS.search(line)
            if progress:
                print(f"    {progress.group(1).strip()}", flush=True)
            finished = _FINISHED.search(line)
            if finished and finished.group(1) == expect_dag:
                state = finished.group(2)
        code = proc.wait()
    if code != 0 or (expect_dag and state != "success"):
        raise DemoFailed(f"`airflow {' '.join(args[:3])}` ended with exit code {code}"
                         f"{f' and DAG state {state}' if expect_dag else ''}; full log: {log_path}")


def run_demo(*, seed: int = 2017, filler_dossiers: int = 20000, use_airflow: bool = True,
             var_dir: Path = VAR) -> int:
    """Generate the province, serve it as the portal, run both DAGs, print the report."""
    from sqlalchemy.engine import make_url

    from pipeline.report import render_report
    from pipeline.settings import DEMO_PSEUDONYM_KEY
    from simulators.generator import generate_province
    from simulators.portal import PortalSimulator
    from warehouse.db import upgrade, warehouse_url

    if not os.environ.get("LIENTHONG_PSEUDONYM_KEY"):
        os.environ["LIENTHONG_PSEUDONYM_KEY"] = DEMO_PSEUDONYM_KEY
        _say("LIENTHONG_PSEUDONYM_KEY not set: using the development key (demo only)")
    warehouse = warehouse_url()
    os.environ["WAREHOUSE_URL"] = warehouse
    shown = make_url(warehouse).render_as_string(hide_password=True)

    started = time.monotonic()
    sim_dir = var_dir / "sim"
    _say(f"generating the simulated province (seed {seed}) into {sim_dir}")
    truth = generate_province(sim_dir, seed=seed, filler_dossiers=filler_dossiers)
    _say(f"  {truth['procedures']['records']:,} procedures, {truth['dossiers']['records_served']:,} "
         f"dossier records with planted defects (ground truth: {sim_dir / 'ground_truth.json'})")
    _say(f"warehouse: {shown} — migrating")
    upgrade(warehouse)

    with PortalSimulator(data_dir=sim_dir, username="demo", password="demo") as portal:
        _say(f"national portal simulator listening on {portal.url}")
        if use_airflow:
            env = _airflow_env(portal.url, warehouse, var_dir)
            logs = var_dir / "logs"
            _say(f"Airflow (AIRFLOW_HOME={env['AIRFLOW_HOME']}): migrating its metadata database")
            _run_airflow(["db", "migrate"], env, logs / "airflow-db-migrate.log")
            _say("airflow dags test sync_national_portal (backfill "
                 f"{DEMO_WINDOW['start'][:10]} → {DEMO_WINDOW['end'][:10]})")
            _run_airflow(["dags", "test", "sync_national_portal", "--conf", json.dumps(DEMO_WINDOW)],
                         env, logs / "sync_national_portal.log", expect_dag="sync_national_portal")
            _say("airflow dags test refresh_marts")
            _run_airflow(["dags", "test", "refresh_marts"], env, logs / "refresh_marts.log",
                         expect_dag="refresh_marts")
        else:
            from connectors.settings import connection_from_uri
            from pipeline.tasks import run_refresh_marts, run_sync

            connection = connection_from_uri(portal.url.replace("http://", "http://demo:demo@"))
            for stream in ("procedures", "dossiers"):
                summary = run_sync("national_portal", stream, connection, **DEMO_WINDOW)
                _say(f"  {stream}: {summary}")
            run_refresh_marts()

    _say(f"done in {time.monotonic() - started:.0f} s; the report:")
    print()
    sys.stdout.write(render_report(fmt="table"))
    return 0
