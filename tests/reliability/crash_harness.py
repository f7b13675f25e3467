"""Crash-recovery harness (issue 10 §3): SIGKILL the sync at named points, re-run it, compare the warehouse.

    python -m tests.reliability.crash_harness [--db sqlite|postgresql|both] [--sources portal,one-stop,lgsp,files]
                                              [--points TEXT] [--work DIR] [--doc docs/reliability.md]

For each database and source: a base warehouse (migrated; with the portal's procedure catalogue
for the sources whose dossiers are checked against it), a reference warehouse from one
uninterrupted run of the source's sync command on a copy of the base, then one trial per kill
point (tests/reliability/points.py): a fresh copy of the base and of the source's state (drop
folder; LGSP cursor), the sync killed at the point (crash_child), the invariants of the killed
state checked (no LGSP message acknowledged and no drop file archived that is not loaded), the
same command re-run uninterrupted, and the warehouse compared with the reference
(tests/reliability/snapshot.py): no batch left `running`, every table equal, the drop folder and
the archive as the reference left them, the LGSP cursor acknowledged as far. One line per trial,
then `points survived / tried` per source and database.

The sources are the simulated province of tests/reliability/inputs.py: the portal simulator and
the LGSP feed served by this process on loopback, two one-stop SQLite databases and a drop folder.
The runs are the CLI's (`lienthong sync …` through `pipeline.cli.main`), in processes forked by
crash_child's server. Windowed sources run a fixed backfill window (`WINDOW`), so a re-run has the
killed batch's id; LGSP and the file drop are not windowed (their batches are named after the time
they run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.reliability.crash_child import KillPoint
from tests.reliability.inputs import Inputs, build_inputs
from tests.reliability.points import POINTS, Point, targets
from tests.reliability.snapshot import Snapshot, differences, take_snapshot

REPO = Path(__file__).resolve().parents[2]
WINDOW = ("2000-01-01T00:00:00+07:00", "2017-09-01T00:00:00+07:00")
KEY = "reliability-harness-key"
CHUNK_SIZE = 150  # records per chunk: two chunks for the portal's dossiers and the LGSP feed
PAGE_SIZE = 50  # portal records per page
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ONESTOP = ("onestop_doj", "onestop_dpi")
DOC_BEGIN, DOC_END = "<!-- crash-harness:begin -->", "<!-- crash-harness:end -->"


@dataclass(frozen=True)
class Source:
    """A source as the harness runs it: its sync command and the base warehouse it starts from."""

    name: str
    argv: tuple[str, ...]
    catalogue: bool  # the base holds the portal's procedure catalogue
    system: str  # `source_system` of its dossiers (lineage)


SOURCES = {
    "portal": Source("portal", ("sync", "national-portal", "--start", WINDOW[0], "--end", WINDOW[1]), False,
                     "national_portal"),
    "one-stop": Source("one-stop", ("sync", "one-stop", "--start", WINDOW[0], "--end", WINDOW[1]), True,
                       "one_stop"),
    "lgsp": Source("lgsp", ("sync", "lgsp"), True, "lgsp"),
    "files": Source("files", ("sync", "files"), True, "file_drop"),
}
CATALOGUE = ("sync", "national-portal", "--stream", "procedures", "--start", WINDOW[0], "--end", WINDOW[1])


# ── runs: the CLI in a forked child ─────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class RunResult:
    code: int | None
    signal: int | None
    log: Path

    @property
    def killed(self) -> bool:
        return self.signal == 9

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " / ".join(text[-lines:])


class RunServer:
    """crash_child's fork server: one process that imported the pipeline once, forking a child per run."""

    def __init__(self, cwd: Path) -> None:
        env = {**_base_env(), "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_child", "--serve"], cwd=cwd, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the crash_child server did not start")

    def run(self, argv: Sequence[str], env: dict[str, str], log: Path, kill: KillPoint | None = None,
            count: Sequence[str] = (), counts_file: Path | None = None) -> RunResult:
        request = {"argv": list(argv), "env": env, "log": str(log), "kill": str(kill) if kill else None,
                   "count": list(count), "counts_file": str(counts_file) if counts_file else None}
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return RunResult(answer["code"], answer["signal"], log)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update({"GX_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)})
    return env


# ── warehouses: a base per database, copied per trial ──────────────────────────────────────────

class Warehouses(Protocol):
    name: str

    def create(self, label: str) -> str: ...
    def clone(self, base: str, label: str) -> str: ...
    def drop(self, url: str) -> None: ...
    def close(self) -> None: ...


class SqliteWarehouses:
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def create(self, label: str) -> str:
        path = self.folder / f"{label}.db"
        self._remove(path)
        return f"sqlite:///{path}"

    @staticmethod
    def _remove(path: Path) -> None:
        """The database file, its WAL and shared-memory files, and the stream locks beside it."""
        for leftover in path.parent.glob(path.name + "*"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()

    def clone(self, base: str, label: str) -> str:
        url = self.create(label)
        source, copy = (sqlite3.connect(str(make_url(u).database)) for u in (base, url))
        try:
            source.backup(copy)  # a consistent copy, WAL included
        finally:
            source.close()
            copy.close()
        return url

    def drop(self, url: str) -> None:
        self._remove(Path(str(make_url(url).database)))

    def close(self) -> None:
        pass


class PostgresWarehouses:
    name = "postgresql"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.prefix = f"lienthong_crash_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        with self.admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create(self, label: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{label}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
        self.created.append(name)
        return self._url(name)

    def clone(self, base: str, label: str) -> str:
        return self.create(label, template=make_url(base).database)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(self._url(name))
        self.admin.dispose()


# ── the state a source keeps outside the warehouse ─────────────────────────────────────────────

@dataclass
class Outside:
    """What the run left outside the warehouse: the drop folder and the LGSP cursor."""

    drop: list[str] = field(default_factory=list)  # names left in the drop folder (top level)
    archive: list[str] = field(default_factory=list)  # names in drop/archive
    acked: int | None = None


class Services:
    """The simulated sources, served by this process on loopback, and a fresh state per run."""

    def __init__(self, inputs: Inputs, work: Path, stack: ExitStack) -> None:
        from simulators.lgsp import LgspSimulator
        from simulators.portal import PortalSimulator
        from simulators.province import lgsp_messages

        self.inputs = inputs
        self.work = work
        self.portal = stack.enter_context(PortalSimulator(data_dir=inputs.sources / "portal",
                                                          username="demo", password="demo"))
        self.lgsp = stack.enter_context(LgspSimulator(lgsp_messages(inputs.sources)))

    def fresh(self, label: str) -> Path:
        """A fresh drop folder for one run, and the LGSP cursor back at the start."""
        drop = self.work / "drop" / label
        if drop.exists():
            shutil.rmtree(drop)
        shutil.copytree(self.inputs.drop, drop)
        self.lgsp.acked = 0
        return drop

    def env(self, warehouse: str, drop: Path) -> dict[str, str]:
        onestop = self.inputs.sources / "onestop"
        return {
            **_base_env(),
            "WAREHOUSE_URL": warehouse,
            "LIENTHONG_PSEUDONYM_KEY": KEY,
            "LIENTHONG_CHUNK_SIZE": str(CHUNK_SIZE),
            # each chunk validated and staged on its own, so a batch has several (points "2nd split")
            "LIENTHONG_GATE_ROWS": str(CHUNK_SIZE),
            # the source read in a thread: a kill point counts and kills in this process (the
            # reading process of the default mode: tests/pipeline/test_read_apart.py)
            "LIENTHONG_READ_PROCESS": "0",
            "LIENTHONG_PAGE_SIZE": str(PAGE_SIZE),
            "LIENTHONG_MAX_RETRIES": "1",
            "LIENTHONG_HTTP_TIMEOUT": "20",
            "LIENTHONG_DB_ROLES": "0",
            "LIENTHONG_FILE_STABLE_SECONDS": "0",  # the drop is copied whole before the run
            "LIENTHONG_ONESTOP_CONNECTIONS": ",".join(ONESTOP),
            "AIRFLOW_CONN_NATIONAL_PORTAL": self.portal.url.replace("http://", "http://demo:demo@", 1),
            "AIRFLOW_CONN_ONESTOP_DOJ": f"sqlite:///{onestop / 'doj.sqlite'}?mapping=onestop_variant_a",
            "AIRFLOW_CONN_ONESTOP_DPI": f"sqlite:///{onestop / 'dpi.sqlite'}?mapping=onestop_variant_b",
            "AIRFLOW_CONN_LGSP": self.lgsp.url,
            "AIRFLOW_CONN_FILE_DROP": f"file://{drop}",
        }

    def outside(self, drop: Path) -> Outside:
        archive = drop / "archive"
        return Outside(
            drop=sorted(p.name for p in drop.iterdir() if p.name not in ("archive", "rejected")),
            archive=sorted(p.name for p in archive.iterdir()) if archive.is_dir() else [],
            acked=self.lgsp.acked)


# ── trials ──────────────────────────────────────────────────────────────────────────────────────

@dataclass
class Reference:
    snapshot: Snapshot
    outside: Outside
    counts: dict[str, int]


@dataclass
class Verdict:
    db: str
    source: str
    point: Point
    resolved: KillPoint | None
    problems: list[str]
    seconds: float

    @property
    def survived(self) -> bool:
        return not self.problems


class Harness:
    """Runs the trials of one database: bases, references, kill points."""

    def __init__(self, warehouses: Warehouses, services: Services, server: RunServer, work: Path) -> None:
        self.warehouses = warehouses
        self.services = services
        self.server = server
        self.logs = work / "logs" / warehouses.name
        self.logs.mkdir(parents=True, exist_ok=True)
        self._bases: dict[bool, str] = {}
        self._serial = 0

    def _log(self, label: str) -> Path:
        self._serial += 1
        path = self.logs / f"{self._serial:04d}-{label}.log"
        path.unlink(missing_ok=True)
        return path

    def base(self, catalogue: bool) -> str:
        """The migrated warehouse (with the portal's procedure catalogue when asked), built once."""
        if catalogue not in self._bases:
            url = self.warehouses.create("base_catalogue" if catalogue else "base")
            drop = self.services.fresh("base")
            env = self.services.env(url, drop)
            argv: tuple[str, ...] = CATALOGUE if catalogue else ("db", "upgrade")
            result = self.server.run(argv, env, self._log("base"))
            if result.code != 0:
                raise RuntimeError(f"building the base warehouse failed: {result.tail()}")
            self._bases[catalogue] = url
        return self._bases[catalogue]

    @contextmanager
    def copy(self, source: Source, label: str) -> Iterator[tuple[str, Path, dict[str, str]]]:
        url = self.warehouses.clone(self.base(source.catalogue), label)
        drop = self.services.fresh(label)
        try:
            yield url, drop, self.services.env(url, drop)
        finally:
            self.warehouses.drop(url)

    def reference(self, source: Source) -> Reference:
        """An uninterrupted run on a copy of the base: the warehouse to equal, and every target's calls."""
        counts_file = self.logs / f"counts-{source.name}.json"
        with self.copy(source, f"ref_{_label(source.name)}") as (url, drop, env):
            result = self.server.run(source.argv, env, self._log(f"reference-{source.name}"),
                                     count=targets(source.name), counts_file=counts_file)
            if result.code != 0:
                raise RuntimeError(f"the reference run of {source.name} failed: {result.tail()}")
            return Reference(_snapshot(url), self.services.outside(drop),
                             json.loads(counts_file.read_text(encoding="utf-8")))

    def control(self, source: Source, reference: Reference) -> list[str]:
        """A second uninterrupted run must equal the reference: the comparison itself is deterministic."""
        with self.copy(source, f"ctl_{_label(source.name)}") as (url, drop, env):
            result = self.server.run(source.argv, env, self._log(f"control-{source.name}"))
            if result.code != 0:
                return [f"control run failed: {result.tail()}"]
            return (differences(reference.snapshot, _snapshot(url))
                    + _outside_differences(reference.outside, self.services.outside(drop)))

    def trial(self, source: Source, point: Point, reference: Reference) -> Verdict:
        started = time.monotonic()
        kill = point.resolve(reference.counts)
        if kill is None:
            return Verdict(self.warehouses.name, source.name, point, None,
                           [f"never reached: {reference.counts.get(point.target, 0)} calls in an uninterrupted run"],
                           time.monotonic() - started)
        problems: list[str] = []
        with self.copy(source, f"trial_{_label(source.name)}") as (url, drop, env):
            crash = self.server.run(source.argv, env, self._log(f"crash-{source.name}"), kill=kill)
            if not crash.killed:
                problems.append(f"the run was not killed (exit {crash.code}): {crash.tail()}")
            problems += self._killed_state(source, url, drop)
            rerun = self.server.run(source.argv, env, self._log(f"rerun-{source.name}"))
            if rerun.code != 0:
                problems.append(f"the re-run failed (exit {rerun.code}, signal {rerun.signal}): {rerun.tail()}")
            after = _snapshot(url)
            if after.running:
                problems.append(f"batches left running: {', '.join(after.running)}")
            problems += differences(reference.snapshot, after)
            problems += _outside_differences(reference.outside, self.services.outside(drop))
        return Verdict(self.warehouses.name, source.name, point, kill, problems, time.monotonic() - started)

    def _killed_state(self, source: Source, url: str, drop: Path) -> list[str]:
        """Right after the kill: nothing acknowledged or archived that the warehouse does not hold."""
        problems = []
        engine = _engine(url)
        try:
            with engine.connect() as conn:
                loaded = {row[0] for row in conn.execute(sa.text(
                    "SELECT dossier_code FROM fact_dossier_source WHERE source_system = :s "
                    "UNION SELECT record_key FROM ops_quarantine WHERE source = :s"), {"s": source.system})}
                reports = {f"{c}/{m}" for c, m, _ in conn.execute(sa.text(
                    "SELECT commune_code, month, source_file FROM fact_service_report"))}
        finally:
            engine.dispose()
        if source.name == "lgsp":
            acked = self.services.lgsp.acked
            unloaded = [code for codes in self.services.inputs.message_codes[:acked] for code in codes
                        if code not in loaded]
            if unloaded:
                problems.append(f"cursor {acked} acknowledged with {len(unloaded)} of its dossiers not loaded "
                                f"(e.g. {unloaded[0]})")
        if source.name == "files" and (drop / "archive").is_dir():
            for path in sorted((drop / "archive").iterdir()):
                name = path.name.split("__", 1)[-1]
                keys = set(self.services.inputs.file_keys.get(name, []))
                if keys - loaded - reports:
                    problems.append(f"{name} archived but {len(keys - loaded - reports)} of its records not loaded")
        return problems


def _label(name: str) -> str:
    return name.replace("-", "_")


def _engine(url: str) -> sa.Engine:
    from warehouse.db import create_engine

    return create_engine(url)


def _snapshot(url: str) -> Snapshot:
    engine = _engine(url)
    try:
        return take_snapshot(engine)
    finally:
        engine.dispose()


def _outside_differences(expected: Outside, actual: Outside) -> list[str]:
    problems = []
    if actual.drop != expected.drop:
        problems.append(f"drop folder holds {actual.drop}, expected {expected.drop}")
    if actual.archive != expected.archive:
        problems.append(f"archive holds {sorted(set(actual.archive) ^ set(expected.archive))} "
                        "unlike the reference")
    if actual.acked != expected.acked:
        problems.append(f"LGSP cursor acknowledged {actual.acked}, expected {expected.acked}")
    return problems


# ── the whole run ───────────────────────────────────────────────────────────────────────────────

@dataclass
class Figure:
    db: str
    source: str
    survived: int
    tried: int


def chosen_points(sources: Sequence[str], points: str | None = None,
                  selection: dict[str, Sequence[str]] | None = None) -> dict[str, list[Point]]:
    """The points of each source to try: those whose text contains `points`, and (with `selection`)
    only those named there, per source, by their text (`TARGET:when:N`, as `points.POINTS` writes them).

    Raises ValueError for a selected point no source has (a typo would otherwise test nothing).
    """
    for name, texts in (selection or {}).items():
        unknown = sorted(set(texts) - {str(p) for p in POINTS.get(name, ())})
        if unknown:
            raise ValueError(f"{name} has no kill point {', '.join(unknown)}")
    return {name: [p for p in POINTS[name]
                   if (points is None or points in str(p))
                   and (selection is None or str(p) in selection.get(name, ()))]
            for name in sources}


def run_harness(dbs: Sequence[str], sources: Sequence[str], *, work: Path, points: str | None = None,
                selection: dict[str, Sequence[str]] | None = None, control: bool = True,
                postgres_url: str | None = None, echo: Any = print) -> tuple[list[Verdict], list[Figure]]:
    """Every trial of `sources` on `dbs`; the verdicts and the figure per source and database.

    The points tried are `chosen_points(sources, points, selection)`. `control` first checks that
    a second uninterrupted run equals the reference. `echo` gets one line per trial.
    """
    chosen = {name: found for name, found in chosen_points(sources, points, selection).items() if found}
    if not chosen:
        raise ValueError("no kill point matches: nothing to try")
    inputs = build_inputs(work / "inputs")
    verdicts: list[Verdict] = []
    figures: list[Figure] = []
    with ExitStack() as stack:
        server = RunServer(work)
        stack.callback(server.close)
        services = Services(inputs, work, stack)
        for db in dbs:
            warehouses: Warehouses
            if db == "sqlite":
                warehouses = SqliteWarehouses(work / "warehouses")
            else:
                warehouses = PostgresWarehouses(postgres_url or os.environ.get("TEST_POSTGRES_URL",
                                                                                DEFAULT_POSTGRES_URL))
            try:
                harness = Harness(warehouses, services, server, work)
                for name, tried in chosen.items():
                    source = SOURCES[name]
                    reference = harness.reference(source)
                    if control:
                        mismatch = harness.control(source, reference)
                        if mismatch:
                            raise RuntimeError(f"{db} {name}: two uninterrupted runs differ, the comparison "
                                               f"cannot judge: {mismatch}")
                    survived = 0
                    for n, point in enumerate(tried, start=1):
                        verdict = harness.trial(source, point, reference)
                        verdicts.append(verdict)
                        survived += verdict.survived
                        echo(_line(verdict, n, len(tried)))
                    figures.append(Figure(db, name, survived, len(tried)))
            finally:
                warehouses.close()
    return verdicts, figures


def _line(verdict: Verdict, n: int, total: int) -> str:
    what = "survived" if verdict.survived else "FAILED: " + "; ".join(verdict.problems)
    return (f"[{n:2d}/{total}] {verdict.db:<10} {verdict.source:<8} {verdict.point.stage:<12} "
            f"{verdict.resolved or verdict.point!s:<62} {what} ({verdict.seconds:.1f} s)")


def figure_lines(figures: Sequence[Figure]) -> list[str]:
    lines = ["points survived / tried"]
    lines += [f"  {f.source:<9} {f.db:<10} {f.survived:3d} / {f.tried}" for f in figures]
    survived, tried = sum(f.survived for f in figures), sum(f.tried for f in figures)
    lines.append(f"  {'all':<9} {'':<10} {survived:3d} / {tried}")
    return lines


def machine() -> str:
    """One line on where the figure was made."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def write_doc(path: Path, command: str, figures: Sequence[Figure], verdicts: Sequence[Verdict],
              postgres: str | None, seconds: float) -> None:
    """Replace the harness's block of `path` (between its markers) with this run's figure."""
    on = f"{machine()}, PostgreSQL {postgres}" if postgres else machine()
    block = [DOC_BEGIN, "", f"Produced by `{command}` on {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
             f"in {seconds / 60:.1f} min.", "", f"Machine: {on}.", "", "```", *figure_lines(figures), "```", ""]
    failed = [v for v in verdicts if not v.survived]
    if failed:
        block += ["Points that did not survive:", ""]
        block += [f"- {v.db} {v.source} `{v.resolved or v.point}`: {_doc_text('; '.join(v.problems))}"
                  for v in failed]
        block.append("")
    block += ["Kill points (N-th call of the run; negative: counted from the last call of an uninterrupted "
              "run):", "", "| source | stage | function | when | N | what is half done |",
              "|---|---|---|---|---|---|"]
    for source, points in POINTS.items():
        block += [f"| {source} | {p.stage} | `{p.target}` | {p.when} | {p.nth} | {p.note} |" for p in points]
    block += ["", DOC_END]
    text = path.read_text(encoding="utf-8") if path.exists() else f"{DOC_BEGIN}\n{DOC_END}\n"
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1]
    path.write_text(head + "\n".join(block) + tail, encoding="utf-8")


def _doc_text(text: str, limit: int = 300) -> str:
    """A problem line as one Markdown line: no tabs, no pipes, cut at `limit` characters."""
    text = " ".join(text.replace("|", "/").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def postgres_version(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash_harness",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help=f"comma-separated, of {', '.join(SOURCES)} (default: all)")
    parser.add_argument("--points", help="only the points whose text contains this")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--doc", type=Path, help="update the figure in this file (docs/reliability.md)")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the second uninterrupted run that checks the comparison is deterministic")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        parser.error(f"unknown source(s) {', '.join(unknown)}")
    if not any(chosen_points(sources, args.points).values()):
        parser.error(f"no kill point of {', '.join(sources)} contains {args.points!r}")
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    postgres_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    started = time.monotonic()
    with ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lienthong-crash-")))
        work.mkdir(parents=True, exist_ok=True)
        verdicts, figures = run_harness(dbs, sources, work=work, points=args.points,
                                        control=not args.no_control, postgres_url=postgres_url,
                                        echo=lambda line: print(line, flush=True))
    seconds = time.monotonic() - started
    for line in figure_lines(figures):
        print(line)
    print(f"in {seconds / 60:.1f} min")
    if args.doc:
        command = "python -m tests.reliability.crash_harness " + " ".join(argv if argv is not None else sys.argv[1:])
        write_doc(args.doc, command.strip(), figures, verdicts,
                  postgres_version(postgres_url) if "postgresql" in dbs else None, seconds)
    return 0 if all(v.survived for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
