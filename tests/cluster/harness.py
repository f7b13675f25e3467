"""The DAGs on a real Airflow cluster (issue 12 §2): CeleryExecutor, several processes, this machine.

    python -m tests.cluster.harness [--work DIR] [--keep] [--timeout SECONDS]     (= make cluster-test)

Starts, natively and on loopback, what a deployment runs (docker-compose.yml names the same
services): `airflow api-server`, `scheduler`, `dag-processor` and two `celery worker`s (each with
a host name of its own, `tests/cluster/worker_name.py`), against a new PostgreSQL database for
Airflow's metadata and Redis as the Celery broker (a queue of this run's own); the warehouse is a
new PostgreSQL database too. The sources are the demo's simulated province (portal and LGSP
simulators served by this process, two one-stop SQLite databases, a drop folder). Then, through
Airflow's REST API (a JWT from `/auth/token`):

1. creates the pools (pipeline/pools.py), waits for the DAGs to be parsed without import errors;
2. unpauses `sync_national_portal` and triggers it over the demo's window (the catalogue first:
   dossiers are checked against it), then unpauses and triggers the other syncs at once
   (one-stop, LGSP, files), then `exchange` and `push_national_portal`; `refresh_marts` and the
   push also run on the warehouse's asset events;
3. waits for every run of every DAG to succeed (scheduled runs made by unpausing included);
4. checks that tasks ran on both workers and that the warehouse holds the ground truth's figures;
5. backfills `sync_national_portal` over a few hours of 2017-08-30 with `airflow backfill create`,
   twice (`--reprocess-behavior completed`), and checks that each backfill run synced exactly
   its data interval (with the look-back) and that the dossiers are unchanged by either;
6. stops every process it started, by pid (process group), checks that none is left, and drops
   its databases. Exit 0 when every check held; the logs stay in the work folder on failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
FILLER_DOSSIERS = 1500
WORKERS = ("worker-a", "worker-b")
SYNC_DAGS = ("sync_one_stop", "sync_lgsp", "sync_files")
ALL_DAGS = ("sync_national_portal", *SYNC_DAGS, "refresh_marts", "exchange", "push_national_portal")
RECEIVERS = ("000.00.03.H62", "000.00.04.H62")  # the two agencies of the one-stop databases
# The backfill: hourly intervals of a working morning of the demo's last month (Vietnam time).
BACKFILL = ("2017-08-30T08:00:00+07:00", "2017-08-30T11:00:00+07:00")
TERMINAL = frozenset({"success", "failed"})


class ClusterTestFailed(RuntimeError):
    """A check of the cluster test did not hold; `str()` says which."""


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ── processes ───────────────────────────────────────────────────────────────────────────────────

@dataclass
class Processes:
    """The processes the harness started, each the leader of its own process group."""

    logs: Path
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w", encoding="utf-8")
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.started.append((name, proc))
        say(f"  started {name} (pid {proc.pid}): {' '.join(argv[1:4])}")
        return proc

    def check_alive(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
                raise ClusterTestFailed(f"{name} (pid {proc.pid}) exited with code {proc.returncode}:\n{tail}")

    def stop_all(self, grace: float = 60.0) -> list[str]:
        """Stop every process group in the order given (SIGTERM, then SIGKILL what is left after
        `grace` seconds); one line per process. The api-server is started first and stopped last:
        the workers' tasks report to it."""
        lines = []
        for name, proc in sorted(self.started, key=lambda started: started[0] == "api-server"):
            how = "SIGTERM"
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                how = f"SIGKILL after {grace:g} s"
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            _signal_group(proc.pid, signal.SIGKILL)  # any child left behind in its group
            left = _group_alive(proc.pid)
            lines.append(f"{name} pid {proc.pid}: stopped by {how}, exit {proc.returncode}"
                         f"{'; processes of its group still alive' if left else ''}")
            if left:
                raise ClusterTestFailed(lines[-1])
        self.started.clear()
        return lines


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


# ── Airflow's REST API ──────────────────────────────────────────────────────────────────────────

class AirflowApi:
    """The public REST API (`/api/v2`) of the api-server, with a JWT of the simple auth manager."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self._credentials = {"username": username, "password": password}

    def login(self) -> None:
        reply = self.client.post("/auth/token", json=self._credentials)
        reply.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.client.request(method, f"/api/v2{path}", **kwargs)
        if reply.status_code == 401:  # the token expired: a new one, once
            self.login()
            reply = self.client.request(method, f"/api/v2{path}", **kwargs)
        if reply.status_code >= 400:
            raise ClusterTestFailed(f"{method} /api/v2{path} → {reply.status_code}: {reply.text[:500]}")
        return reply.json() if reply.content else None

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1000})["dag_runs"]

    def task_instances(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.call("GET", "/dags/~/dagRuns/~/taskInstances",
                             params={"limit": 100, "offset": len(found)})
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, every: float = 2.0,
             alive: Callable[[], None] | None = None) -> Any:
    """Poll `check` until it returns something truthy; ClusterTestFailed after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if alive:
            alive()
        try:
            result = check()
        except (httpx.HTTPError, ClusterTestFailed) as exc:
            result, last_error = None, str(exc)
        if result:
            return result
        time.sleep(every)
    raise ClusterTestFailed(f"timed out after {timeout:g} s waiting for {what}"
                            f"{f' (last error: {last_error})' if last_error else ''}")


# ── the cluster ─────────────────────────────────────────────────────────────────────────────────

@dataclass
class Cluster:
    work: Path
    env: dict[str, str]
    api: AirflowApi
    processes: Processes
    warehouse_url: str
    truth: dict[str, Any]
    outbox: Path
    timeout: float

    def airflow(self, *args: str, log: str) -> str:
        """An `airflow` CLI command against the cluster's metadata database; its output."""
        airflow = str(Path(sys.executable).with_name("airflow"))
        done = subprocess.run([airflow, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=600)
        (self.processes.logs / f"{log}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            raise ClusterTestFailed(f"`airflow {' '.join(args)}` exited {done.returncode}:\n"
                                    f"{(done.stdout + done.stderr)[-3000:]}")
        return done.stdout

    def run_until_done(self, dag_id: str, run_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in TERMINAL else None

        run = wait_for(f"{dag_id} run {run_id}", finished, timeout=self.timeout, alive=self.processes.check_alive)
        if run["state"] != "success":
            raise ClusterTestFailed(f"{dag_id} run {run_id} ended {run['state']}: {self.failed_tasks(dag_id)}")
        return run

    def failed_tasks(self, dag_id: str) -> list[str]:
        return [f"{ti['task_id']}[{ti['map_index']}] {ti['state']} on {ti.get('hostname')}"
                for ti in self.api.task_instances()
                if ti["dag_id"] == dag_id and ti["state"] not in ("success", "skipped")]

    def quiet(self) -> list[dict[str, Any]]:
        """Wait until no run of any DAG is queued or running (asset-triggered ones included) for
        three polls in a row; every run then."""
        calm = 0

        def settled() -> list[dict[str, Any]] | None:
            nonlocal calm
            runs = [run for dag_id in ALL_DAGS for run in self.api.dag_runs(dag_id)]
            calm = calm + 1 if all(run["state"] in TERMINAL for run in runs) else 0
            return runs if calm >= 3 else None

        return wait_for("every DAG run to end", settled, timeout=self.timeout, alive=self.processes.check_alive)


@contextmanager
def cluster(work: Path, timeout: float) -> Iterator[Cluster]:
    """Everything of the cluster, torn down (processes stopped, databases dropped) on exit."""
    from exchange.keys import generate_keypair
    from simulators.demo import airflow_env, source_uris
    from simulators.generator import generate_province
    from simulators.lgsp import LgspSimulator
    from simulators.portal import PortalSimulator
    from simulators.province import build_sources, lgsp_messages
    from tests.conftest import create_postgres_database
    from warehouse.db import upgrade

    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        meta_url, drop_meta = create_postgres_database(admin_url)
        stack.callback(drop_meta)
        warehouse, drop_warehouse = create_postgres_database(admin_url)
        stack.callback(drop_warehouse)
        say(f"metadata database {make_url(meta_url).database}, warehouse {make_url(warehouse).database}")

        say(f"generating the simulated province ({FILLER_DOSSIERS} filler dossiers) into {work / 'sim'}")
        truth = generate_province(work / "sim", filler_dossiers=FILLER_DOSSIERS)
        sources_dir = work / "sim" / "sources"
        sources = build_sources(work / "sim", sources_dir)
        truth["sources"] = sources
        upgrade(warehouse)

        portal = stack.enter_context(PortalSimulator(data_dir=sources_dir / "portal", username="demo",
                                                     password="demo"))
        lgsp = stack.enter_context(LgspSimulator(lgsp_messages(sources_dir)))
        say(f"portal simulator {portal.url}, LGSP simulator {lgsp.url}")

        keys = work / "keys"
        private, _ = generate_keypair(keys, "000.00.00.H62", "cluster")
        outbox, inbox = work / "outbox", work / "inbox"
        outbox.mkdir()
        inbox.mkdir()
        port = free_port()
        password = secrets.token_urlsafe(16)
        passwords = work / "airflow" / "passwords.json"
        passwords.parent.mkdir(parents=True)
        passwords.write_text(json.dumps({"lienthong": password}), encoding="utf-8")
        airflow_meta = make_url(meta_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        env = airflow_env(source_uris(sources_dir, portal.url, lgsp.url), warehouse, work)
        env.update({
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_meta,
            "AIRFLOW__CELERY__BROKER_URL": os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL),
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_meta}",
            # a queue of this run's own: nothing another run left in the broker is taken
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"lienthong-cluster-{uuid.uuid4().hex[:8]}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "lienthong:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # unpaused through the API
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs / "tasks"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "900",
            "LIENTHONG_PSEUDONYM_KEY": secrets.token_urlsafe(24),
            "LIENTHONG_EXCHANGE_RECEIVERS": ",".join(RECEIVERS),
            "LIENTHONG_SIGNING_KEY": str(private),
            "LIENTHONG_SIGNING_KEY_ID": "cluster",
            "LIENTHONG_OUTBOX": str(outbox),
            "LIENTHONG_EXCHANGE_INBOX": str(inbox),
            "LIENTHONG_LOCK_WAIT_SECONDS": "600",  # a scheduled run and a triggered one take turns
            # the drop is loaded by whichever run of sync_files comes first; the other's sensor
            # finds nothing and soon ends skipped (soft fail), not after 50 minutes
            "LIENTHONG_FILE_POKE_SECONDS": "5",
            "LIENTHONG_FILE_WAIT_SECONDS": "20",
        })
        env.pop("LIENTHONG_DATA_DOCS", None)
        processes = Processes(logs)
        api = AirflowApi(f"http://127.0.0.1:{port}", "lienthong", password)
        the_cluster = Cluster(work, env, api, processes, warehouse, truth, outbox, timeout)
        say("airflow db migrate (metadata on PostgreSQL)")
        the_cluster.airflow("db", "migrate", log="airflow-db-migrate")

        airflow = str(Path(sys.executable).with_name("airflow"))
        stack.callback(lambda: [say(f"  {line}") for line in processes.stop_all()])
        processes.start("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port),
                                       "--workers", "1"], env)
        processes.start("scheduler", [airflow, "scheduler"], env)
        processes.start("dag-processor", [airflow, "dag-processor"], env)
        for name in WORKERS:
            worker_env = dict(env, LIENTHONG_WORKER_NAME=name,
                              AIRFLOW__CORE__HOSTNAME_CALLABLE="tests.cluster.worker_name.hostname")
            processes.start(name, [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h",
                                   "--queues", env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
                                   "--concurrency", "2", "--skip-serve-logs", "--without-mingle",
                                   "--without-gossip"], worker_env)
        stack.callback(api.client.close)
        yield the_cluster


# ── the checks ──────────────────────────────────────────────────────────────────────────────────

def wait_until_ready(c: Cluster) -> None:
    def healthy() -> bool:
        reply = httpx.get(f"{c.api.base_url}/api/v2/monitor/health", timeout=5).json()
        return all(reply.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "dag_processor"))

    started = time.monotonic()
    wait_for("the api-server, the scheduler and the dag-processor to be healthy", healthy,
             timeout=180, alive=c.processes.check_alive)
    for name in WORKERS:
        wait_for(f"{name} to be ready", lambda name=name: " ready." in (c.processes.logs / f"{name}.log").read_text(
            encoding="utf-8", errors="replace"), timeout=180, alive=c.processes.check_alive)
    c.api.login()

    def parsed() -> bool:
        dags = {dag["dag_id"] for dag in c.api.call("GET", "/dags", params={"limit": 100})["dags"]}
        return set(ALL_DAGS) <= dags

    wait_for("every DAG to be parsed", parsed, timeout=180, alive=c.processes.check_alive)
    errors = c.api.call("GET", "/importErrors")
    if errors["total_entries"]:
        raise ClusterTestFailed(f"import errors: {errors['import_errors']}")
    say(f"cluster up in {time.monotonic() - started:.0f} s: {len(ALL_DAGS)} DAGs parsed, no import error, "
        f"workers {', '.join(WORKERS)} ready")


def create_pools(c: Cluster) -> None:
    from pipeline.pools import POOLS

    for pool in POOLS:
        c.api.call("POST", "/pools", json={"name": pool.name, "slots": pool.slots, "description": pool.description,
                                          "include_deferred": False})
    say(f"pools: {', '.join(f'{p.name} ({p.slots})' for p in POOLS)}")


def run_every_dag(c: Cluster) -> None:
    from simulators.demo import DEMO_WINDOW

    started = time.monotonic()
    for dag_id in ALL_DAGS:
        if dag_id in ("refresh_marts", "push_national_portal"):
            c.api.unpause(dag_id)  # asset-scheduled: they follow the syncs' warehouse events
    c.api.unpause("sync_national_portal")
    run_id = c.api.trigger("sync_national_portal", DEMO_WINDOW)
    say(f"sync_national_portal unpaused and triggered ({run_id}): the catalogue before the dossiers")
    c.run_until_done("sync_national_portal", run_id)
    runs = {}
    for dag_id in SYNC_DAGS:
        c.api.unpause(dag_id)
        runs[dag_id] = c.api.trigger(dag_id, DEMO_WINDOW if dag_id == "sync_one_stop" else None)
    say(f"{', '.join(SYNC_DAGS)} unpaused and triggered at once")
    for dag_id, run_id in runs.items():
        c.run_until_done(dag_id, run_id)
    c.api.unpause("exchange")
    finals = {dag_id: c.api.trigger(dag_id) for dag_id in ("exchange", "push_national_portal", "refresh_marts")}
    for dag_id, run_id in finals.items():
        c.run_until_done(dag_id, run_id)
    every = c.quiet()
    by_state = Counter((run["dag_id"], run["run_type"], run["state"]) for run in every)
    for (dag_id, run_type, state), n in sorted(by_state.items()):
        say(f"  {dag_id:22} {run_type:15} {state:8} × {n}")
    failed = [f"{run['dag_id']} {run['dag_run_id']}" for run in every if run["state"] != "success"]
    if failed:
        raise ClusterTestFailed(f"runs that did not succeed: {failed}; tasks: "
                                f"{[t for d in ALL_DAGS for t in c.failed_tasks(d)]}")
    say(f"every run of every DAG succeeded ({len(every)} runs) in {time.monotonic() - started:.0f} s")


def check_workers(c: Cluster) -> None:
    tasks = [ti for ti in c.api.task_instances() if ti["state"] == "success"]
    by_worker = Counter(ti.get("hostname") for ti in tasks)
    say(f"task instances by worker: {dict(sorted(by_worker.items(), key=str))}")
    missing = [name for name in WORKERS if not by_worker.get(name)]
    if missing or set(by_worker) - set(WORKERS):
        raise ClusterTestFailed(f"tasks ran on {dict(by_worker)}; expected both of {WORKERS} and nothing else")
    pools = Counter(ti["pool"] for ti in tasks)
    say(f"task instances by pool: {dict(sorted(pools.items()))}")


def check_figures(c: Cluster) -> None:
    from reporting.report import render_report
    from warehouse.db import create_engine

    engine = create_engine(c.warehouse_url)
    try:
        report = render_report(fmt="table", engine=engine)
        with engine.connect() as conn:
            dossiers = conn.execute(sa.text("SELECT count(*) FROM fact_dossier")).scalar_one()
            batches = conn.execute(sa.text("SELECT source, stream, status FROM ops_batch")).all()
    finally:
        engine.dispose()
    assert isinstance(report, str)
    sources = c.truth["sources"]
    gaps = sources["reconciliation"]["expected_gaps"]
    expected = {
        "procedures": "Procedures in force on 2017-08-31: 1,975 — level 1–2: 1,968, level 3: 5, level 4: 2",
        "merged": f"; {len(sources['cross_source_duplicates'])} merged from more than one source",
        "gaps": f"Communes' reports vs dossiers: {len(gaps)} differences in "
                f"{len({(g['commune_code'], g['month']) for g in gaps})} commune-months",
    }
    missing = [f"{what}: {text!r}" for what, text in expected.items() if text not in report]
    if missing:
        raise ClusterTestFailed("the warehouse's report lacks " + "; ".join(missing) + f"\n{report}")
    loaded = c.truth["dossiers"]["expected_loaded_distinct"]
    if dossiers != loaded:
        raise ClusterTestFailed(f"fact_dossier holds {dossiers:,} dossiers; the ground truth says {loaded:,}")
    streams = {(source.split(":")[0], stream) for source, stream, _ in batches}
    if not {("national_portal", "procedures"), ("national_portal", "dossiers"), ("one_stop", "dossiers"),
            ("lgsp", "dossiers"), ("file_drop", "justice_csv"), ("file_drop", "service_stat")} <= streams:
        raise ClusterTestFailed(f"batches of every stream expected, found {sorted(streams)}")
    if {status for *_, status in batches} != {"loaded"}:
        raise ClusterTestFailed(f"batches not loaded: {[b for b in batches if b[2] != 'loaded']}")
    packages = sorted(p.name for p in c.outbox.glob("*.zip"))
    if len(packages) != len(RECEIVERS):
        raise ClusterTestFailed(f"one exchange package per receiver expected in the outbox, found {packages}")
    say(f"warehouse figures hold: {expected['procedures']}; {dossiers:,} dossiers = the ground truth; "
        f"{len(sources['cross_source_duplicates'])} merged across sources; {len(gaps)} report gaps; "
        f"{len(batches)} batches, all loaded; {len(packages)} exchange packages")


def dossier_digest(url: str) -> tuple[int, str]:
    """Count and MD5 of every dossier's values (less the load columns, batch_id and loaded_at)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            columns = [row[0] for row in conn.execute(sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'fact_dossier' "
                "AND column_name NOT IN ('batch_id', 'loaded_at') ORDER BY ordinal_position"))]
            values = " || '|' || ".join(f"coalesce({c}::text, '∅')" for c in columns)
            count, digest = conn.execute(sa.text(
                f"SELECT count(*), md5(string_agg({values}, E'\\n' ORDER BY dossier_code)) FROM fact_dossier")).one()
    finally:
        engine.dispose()
    return int(count), str(digest)


def backfill_twice(c: Cluster) -> None:
    from pipeline.settings import PipelineSettings
    from transforms.timefmt import LOCAL_TZ

    lookback = timedelta(minutes=PipelineSettings().lookback_minutes)
    before = dossier_digest(c.warehouse_url)
    start, end = (datetime.fromisoformat(moment) for moment in BACKFILL)
    # --to-date is inclusive: the last interval starts at `end` less an hour and ends at `end`
    intervals = [(start + timedelta(hours=h), start + timedelta(hours=h + 1))
                 for h in range(int((end - start) / timedelta(hours=1)))]
    for attempt in (1, 2):
        began = datetime.now().astimezone()
        known = {backfill["id"] for backfill in c.api.call("GET", "/backfills",
                                                            params={"dag_id": "sync_national_portal"})["backfills"]}
        c.airflow("backfill", "create", "--dag-id", "sync_national_portal",
                  "--from-date", start.isoformat(), "--to-date", (end - timedelta(hours=1)).isoformat(),
                  "--reprocess-behavior", "completed", "--max-active-runs", "2", log=f"backfill-{attempt}")

        def completed(known: set[int] = known) -> bool:
            backfills = c.api.call("GET", "/backfills", params={"dag_id": "sync_national_portal"})["backfills"]
            new = [backfill for backfill in backfills if backfill["id"] not in known]
            return bool(new) and all(backfill["completed_at"] for backfill in new)

        wait_for(f"backfill {attempt} of sync_national_portal to complete", completed, timeout=c.timeout,
                 alive=c.processes.check_alive)
        runs = [run for run in c.api.dag_runs("sync_national_portal") if run["run_type"] == "backfill"]
        got = sorted((datetime.fromisoformat(run["data_interval_start"]).astimezone(LOCAL_TZ),
                      datetime.fromisoformat(run["data_interval_end"]).astimezone(LOCAL_TZ)) for run in runs)
        if got != intervals:
            raise ClusterTestFailed(f"backfill {attempt}: runs of intervals {got}; asked for {intervals}")
        bad = [f"{run['dag_run_id']} {run['state']}" for run in runs if run["state"] != "success"
               or datetime.fromisoformat(run["end_date"]) < began]
        if bad:
            raise ClusterTestFailed(f"backfill {attempt}: runs not (re)run successfully: {bad}; "
                                    f"{c.failed_tasks('sync_national_portal')}")
        windows = backfill_windows(c.warehouse_url, intervals, lookback)
        after = dossier_digest(c.warehouse_url)
        if after != before:
            raise ClusterTestFailed(f"backfill {attempt} changed the dossiers: {before} → {after}")
        say(f"backfill {attempt} (airflow backfill create … --reprocess-behavior completed): {len(runs)} runs "
            f"{intervals[0][0]:%Y-%m-%d %H:%M}…{intervals[-1][1]:%H:%M} (+07), each one batch of its data "
            f"interval from the look-back ({windows}); dossiers unchanged ({after[0]:,} rows, md5 "
            f"{after[1][:12]}) in {(datetime.now().astimezone() - began).total_seconds():.0f} s")


def backfill_windows(url: str, intervals: list[tuple[datetime, datetime]], lookback: timedelta) -> str:
    """Check that each interval has exactly one loaded `national_portal.dossiers` batch of window
    [start − look-back, end] (re-running it replaces that batch: same id); rows read per batch."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT window_start, window_end, status, rows_read FROM ops_batch "
                "WHERE source = 'national_portal' AND stream = 'dossiers'")).all()
    finally:
        engine.dispose()
    read = []
    for start, end in intervals:
        mine = [r for r in rows if _same(r[0], start - lookback) and _same(r[1], end)]
        if len(mine) != 1 or mine[0][2] != "loaded":
            raise ClusterTestFailed(f"interval {start} → {end}: batches {mine}; expected one loaded batch of "
                                    f"{start - lookback} → {end}")
        read.append(int(mine[0][3]))
    return f"rows read {', '.join(map(str, read))}"


def _same(value: Any, moment: datetime) -> bool:
    stored = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (stored if stored.tzinfo else stored.replace(tzinfo=UTC)) == moment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.harness", description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) after a success")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each step (default 900)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="lienthong-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    ok = False
    try:
        with cluster(work, args.timeout) as c:
            wait_until_ready(c)
            create_pools(c)
            run_every_dag(c)
            check_workers(c)
            check_figures(c)
            backfill_twice(c)
            c.quiet()  # the runs the backfills' asset events started, too
            say("stopping every process started, by pid")
        ok = True
    except ClusterTestFailed as exc:
        print(f"cluster test FAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("cluster test interrupted", file=sys.stderr)
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    outcome = "passed" if ok else f"failed; logs in {work / 'logs'}"
    say(f"cluster test {outcome} in {time.monotonic() - began:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
