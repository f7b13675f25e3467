"""`lienthong demo`: a seeded province behind every simulated source, synced through Airflow, reported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import sqlalchemy as sa

    from connectors.base import Window
    from pipeline.settings import PipelineSettings
    from pipeline.sync import Progress, SyncOutcome

REPO = Path(__file__).resolve().parent.parent
VAR = REPO / "var"
# The article's period: the whole history up to the end of August 2017, as one backfill window.
DEMO_WINDOW = {"start": "2000-01-01T00:00:00+07:00", "end": "2017-09-01T00:00:00+07:00"}
ONESTOP_CONNECTIONS = ("onestop_doj", "onestop_dpi")  # the two agencies' one-stop-shop databases
# The DAGs in the order the demo runs them; `--conf` of the windowed ones is DEMO_WINDOW.
DEMO_DAGS = (("sync_national_portal", True), ("sync_one_stop", True), ("sync_lgsp", False),
             ("sync_files", False), ("refresh_marts", False))
_PROGRESS = re.compile(r"\[lienthong\] (.*?)(?:\s+\[lienthong[\w.]*\].*)?$")
_FINISHED = re.compile(r"DagRun Finished: dag_id=(\w+).*?state=(\w+)")


class DemoFailed(RuntimeError):
    """A step of the demo did not succeed."""


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def source_uris(sources_dir: Path, portal_url: str, lgsp_url: str, portal_password: str = "demo") -> dict[str, str]:
    """Connection id → URI of every simulated source (`AIRFLOW_CONN_<ID>` values)."""
    onestop = sources_dir / "onestop"
    return {
        "national_portal": portal_url.replace("http://", f"http://demo:{quote(portal_password, safe='')}@", 1),
        "onestop_doj": f"sqlite:///{onestop / 'doj.sqlite'}?mapping=onestop_variant_a",
        "onestop_dpi": f"sqlite:///{onestop / 'dpi.sqlite'}?mapping=onestop_variant_b",
        "lgsp": lgsp_url,
        "file_drop": f"file://{sources_dir / 'drop'}",
    }


# The sources in load order (the portal's catalogue first: dossiers are checked against it), each
# with the connection ids it is read through.
SOURCE_ORDER = (
    ("national_portal", ("national_portal",)),
    ("one_stop", ONESTOP_CONNECTIONS),
    ("lgsp", ("lgsp",)),
    ("file_drop", ("file_drop",)),
)


def sync_all_sources(uris: dict[str, str], engine: sa.Engine, settings: PipelineSettings, window: Window | None,
                     progress: Progress | None = None) -> list[SyncOutcome]:
    """Every source through `pipeline.sync.sync_source` in `SOURCE_ORDER`; the outcomes.

    `window` bounds the windowed sources (portal, one-stop); the others read what is new.
    """
    from connectors.settings import connection_from_uri
    from pipeline.sync import sync_source

    outcomes: list[SyncOutcome] = []
    for source, conn_ids in SOURCE_ORDER:
        for conn_id in conn_ids:
            outcomes += sync_source(source, engine=engine, connection=connection_from_uri(uris[conn_id]),
                                    settings=settings, window=window, progress=progress)
    return outcomes


def airflow_env(uris: dict[str, str], warehouse: str, var_dir: Path) -> dict[str, str]:
    """The environment of the demo's `airflow` commands: the DAGs folder, every source's
    `AIRFLOW_CONN_<ID>`, the warehouse; Airflow's own settings are left as they are."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(var_dir / "airflow")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "LIENTHONG_ONESTOP_CONNECTIONS": ",".join(ONESTOP_CONNECTIONS),
        "WAREHOUSE_URL": warehouse,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "GX_ANALYTICS_ENABLED": "false",
        # the demo wrote its drop files itself, complete: no wait for them to settle
        "LIENTHONG_FILE_STABLE_SECONDS": os.environ.get("LIENTHONG_FILE_STABLE_SECONDS", "0"),
    })
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": uri for conn_id, uri in uris.items()})
    return env


def run_airflow(args: list[str], env: dict[str, str], log_path: Path, expect_dag: str | None = None) -> None:
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
    """Generate the province, serve every source, run the DAGs, print the report."""
    from sqlalchemy.engine import make_url

    from pipeline.settings import DEMO_PSEUDONYM_KEY
    from reporting.report import render_report
    from simulators.generator import generate_province
    from simulators.lgsp import LgspSimulator
    from simulators.portal import PortalSimulator
    from simulators.province import build_sources, lgsp_messages
    from warehouse.db import upgrade, warehouse_url

    if not os.environ.get("LIENTHONG_PSEUDONYM_KEY"):
        os.environ["LIENTHONG_PSEUDONYM_KEY"] = DEMO_PSEUDONYM_KEY
        _say("LIENTHONG_PSEUDONYM_KEY not set: using the development key (demo only)")
    warehouse = warehouse_url()
    os.environ["WAREHOUSE_URL"] = warehouse
    # Great Expectations Data Docs of the batches' validations, linked from the HTML report
    os.environ.setdefault("LIENTHONG_DATA_DOCS", "1")
    os.environ.setdefault("LIENTHONG_GX_DIR", str(var_dir / "gx"))
    shown = make_url(warehouse).render_as_string(hide_password=True)

    started = time.monotonic()
    sim_dir = var_dir / "sim"
    _say(f"generating the simulated province (seed {seed}) into {sim_dir}")
    truth = generate_province(sim_dir, seed=seed, filler_dossiers=filler_dossiers)
    _say(f"  {truth['procedures']['records']:,} procedures, {truth['dossiers']['records_served']:,} "
         f"dossier records with planted defects (ground truth: {sim_dir / 'ground_truth.json'})")
    sources_dir = sim_dir / "sources"
    sources = build_sources(sim_dir, sources_dir, seed=seed)
    records = sources["records"]
    _say(f"  split over the sources in {sources_dir}: portal {records['national_portal']:,}, "
         f"one-stop databases {records['one_stop:000.00.03.H62']:,} + {records['one_stop:000.00.04.H62']:,}, "
         f"LGSP {records['lgsp']:,} in {sources['lgsp_messages']} messages, Justice CSV "
         f"{sum(records['file_drop.justice_csv'].values()):,}, {sources['reconciliation']['reports']} commune "
         f"reports; {len(sources['cross_source_duplicates'])} cross-source duplicates and "
         f"{len(sources['reconciliation']['planted'])} report mismatches planted")
    _say(f"warehouse: {shown} — migrating")
    upgrade(warehouse)

    # The simulated portal's password: LIENTHONG_DEMO_PORTAL_PASSWORD, "demo" when unset.
    password = os.environ.get("LIENTHONG_DEMO_PORTAL_PASSWORD") or "demo"
    with (PortalSimulator(data_dir=sources_dir / "portal", username="demo", password=password) as portal,
          LgspSimulator(lgsp_messages(sources_dir)) as lgsp):
        _say(f"national portal simulator on {portal.url}, LGSP simulator on {lgsp.url}")
        uris = source_uris(sources_dir, portal.url, lgsp.url, password)
        if use_airflow:
            env = airflow_env(uris, warehouse, var_dir)
            logs = var_dir / "logs"
            _say(f"Airflow (AIRFLOW_HOME={env['AIRFLOW_HOME']}): migrating its metadata database")
            run_airflow(["db", "migrate"], env, logs / "airflow-db-migrate.log")
            from pipeline.pools import pools_json

            pools = var_dir / "pools.json"
            pools.write_text(pools_json(), encoding="utf-8")
            run_airflow(["pools", "import", str(pools)], env, logs / "airflow-pools.log")
            for dag_id, windowed in DEMO_DAGS:
                args = ["dags", "test", dag_id]
                if windowed:
                    args += ["--conf", json.dumps(DEMO_WINDOW)]
                    _say(f"airflow dags test {dag_id} (backfill {DEMO_WINDOW['start'][:10]} → "
                         f"{DEMO_WINDOW['end'][:10]})")
                else:
                    _say(f"airflow dags test {dag_id}")
                run_airflow(args, env, logs / f"{dag_id}.log", expect_dag=dag_id)
        else:
            from pipeline.settings import PipelineSettings
            from pipeline.tasks import parse_window, run_refresh_marts
            from warehouse.db import create_engine

            engine = create_engine(warehouse)
            try:
                # the demo wrote its drop files itself, complete: no wait for them to settle
                for outcome in sync_all_sources(uris, engine, PipelineSettings(file_stable_seconds=0),
                                                parse_window(DEMO_WINDOW["start"], DEMO_WINDOW["end"])):
                    _say(f"  {outcome.summary()}")
            finally:
                engine.dispose()
            run_refresh_marts()

    _say(f"done in {time.monotonic() - started:.0f} s; the report:")
    print()
    report = render_report(fmt="table")
    assert isinstance(report, str)  # the text formats render to str; only xlsx is bytes
    sys.stdout.write(report)
    return 0
