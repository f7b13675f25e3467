"""Throughput benchmark (issue 11): the pipeline against a raw COPY, pandas `to_sql` and target-postgres.

    python -m tests.benchmarks.bench [--n 100000 1000000] [--with-1e7] [--doc docs/benchmarks.md]
                                     [--postgres-url URL] [--mariadb-url URL] [--work DIR]
                                     [--baseline-max N] [--paths portal,one-stop] [--one-stop-max N]

For each N: a generated province (simulators/generator.py) is scaled to N dossier records served
by the portal simulator (`ScaledListing`: copies of the base under fresh dossier codes, only the
base in memory). Then, on PostgreSQL and with the CLI's `lienthong sync` in a child process (its
peak memory: the PSS of it and the reading process it forks, summed, sampled every 0.1 s, or its
own VmHWM if larger; `run_sync`):

1. national-portal path: the catalogue (untimed), then a full sync of the dossiers over HTTP;
2. the rows it loaded into `fact_dossier`, exported once, are loaded again by a raw psycopg COPY
   (`cursor.copy`, `write_row`) into an empty `CREATE TABLE … (LIKE fact_dossier INCLUDING ALL)`,
   by pandas `DataFrame.to_sql` (method=None, pandas' default, and method="multi") into another,
   and by MeltanoLabs target-postgres (its own venv, `.venv-bench`, pins in
   tests/benchmarks/bench-constraints.txt) fed them as Singer SCHEMA/RECORD messages on stdin;
3. 1% of the dossiers change at the portal (a new NgayCapNhat): an incremental sync;
4. one-stop path: the same N dossiers in a MariaDB one-stop database (variant a), a fresh
   warehouse with the portal's catalogue, a full sync, then 1% changed (UPDATE … ngay_cap_nhat)
   and an incremental sync.

It prints a table per N and, with --doc, writes them with the machine's description between the
markers of the document (the hand-written analysis around them is kept). The databases it creates
(PostgreSQL `lienthong_bench`, MariaDB `lienthong_bench_onestop` by default) are dropped at the end.
Figures are never asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
BENCH_VENV = REPO / ".venv-bench"
BENCH_CONSTRAINTS = Path(__file__).with_name("bench-constraints.txt")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lienthong_bench"
DEFAULT_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/lienthong_bench_onestop"
KEY = "benchmark-pseudonym-key"
SEED = 2017
CHANGED_EVERY = 100  # 1% of the dossiers change for the incremental sync
EXPORT_CHUNK = 10_000
DOC_BEGIN, DOC_END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Run:
    """One `lienthong sync` child process."""

    seconds: float
    peak_rss_mb: float
    rows_read: int
    rows_loaded: int
    rows_quarantined: int


@dataclass
class Figures:
    """Everything measured at one N."""

    n: int
    base: int = 0
    portal: Run | None = None
    portal_incremental: Run | None = None
    onestop: Run | None = None
    onestop_incremental: Run | None = None
    copy_rows: int = 0
    copy_seconds: float = 0.0
    baselines: dict[str, tuple[int, float]] = field(default_factory=dict)  # name → (rows, s)
    load: str = ""


# ── the sources ────────────────────────────────────────────────────────────────────────────────

def base_province(work: Path, filler: int) -> tuple[list[dict], list[dict]]:
    """A generated province (procedures, dossiers in serving order), cached under `work`."""
    from simulators.generator import generate_province, load_records

    folder = work / f"province-{SEED}-{filler}"
    if not (folder / "ground_truth.json").is_file():
        generate_province(folder, seed=SEED, filler_dossiers=filler)
    return list(load_records(folder / "procedures.jsonl")), list(load_records(folder / "dossiers.jsonl"))


def filler_for(n: int) -> int:
    """Filler dossiers of the base: enough for N within the listing's 100 copies of a record."""
    return 20_000 if n <= 3_000_000 else 120_000


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """The database of `url` (PostgreSQL or MariaDB), created for the run and dropped after it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        admin, name, options, force = "postgres", f'"{parsed.database}"', "", " WITH (FORCE)"
    else:
        admin, name, options, force = "mysql", f"`{parsed.database}`", " CHARACTER SET utf8mb4", ""
    engine = sa.create_engine(parsed.set(database=admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}{options}")
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        engine.dispose()


def empty_database(url: str) -> None:
    """Every table of the database at `url` dropped."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)
    engine.dispose()


def reset_warehouse(url: str) -> None:
    """An empty, migrated warehouse (the public schema dropped and made again)."""
    from warehouse.db import upgrade

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    upgrade(url)


# ── the pipeline, in a child process ───────────────────────────────────────────────────────────

# The child's own peak RSS: VmHWM of its address space, read as it ends. (`ru_maxrss` of a child
# also counts the pages of the parent it was forked from, before exec: the bench's listing.)
CHILD = """
import pathlib, sys
from pipeline.cli import main
out = pathlib.Path(sys.argv.pop(1))
try:
    code = main(sys.argv[1:])
finally:
    status = pathlib.Path("/proc/self/status").read_text().splitlines()
    out.write_text(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
sys.exit(code)
"""


def run_sync(args: Sequence[str], env: dict[str, str], url: str, log: Path) -> Run:
    """`lienthong sync ARGS` in a child process: wall time, peak RSS, and its batch's counts.

    The peak memory is the larger of the sync process's own peak RSS (VmHWM) and the most its
    process tree held at once: the proportional set sizes (PSS: a page the forked reading process
    still shares with the sync counts half in each) of the sync and its reading process, summed,
    sampled every 0.1 s.
    """
    peak = log.with_name("peak_rss_kb")
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ lienthong sync {' '.join(args)}\n")
        out.flush()
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(peak), "sync", *args],
                                 cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        tree_peak = 0
        while child.poll() is None:
            tree_peak = max(tree_peak, tree_pss_kb(child.pid))
            time.sleep(0.1)
        code = child.returncode
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"lienthong sync {' '.join(args)} failed ({code}); see {log}")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        read, loaded, quarantined = conn.execute(sa.text(
            "SELECT rows_read, rows_loaded, rows_quarantined FROM ops_batch "
            "ORDER BY finished_at DESC LIMIT 1")).one()
    engine.dispose()
    return Run(seconds, max(int(peak.read_text()), tree_peak) / 1024, read, loaded, quarantined)


def tree_pss_kb(pid: int) -> int:
    """The memory a process and its descendants hold now (their PSS summed), in kB; 0 once ended."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # ended meanwhile
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
        pending += [int(child) for child in children]
    return total


def child_env(url: str, portal_url: str, mariadb_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIENTHONG_", "AIRFLOW_CONN_"))}
    env.update({
        "PYTHONPATH": str(REPO), "WAREHOUSE_URL": url, "LIENTHONG_PSEUDONYM_KEY": KEY,
        "AIRFLOW_CONN_NATIONAL_PORTAL": portal_url.replace("http://", "http://demo:demo@"),
    })
    if mariadb_url:
        db = make_url(mariadb_url)
        env["AIRFLOW_CONN_ONESTOP_BENCH"] = (f"mysql://{db.username}@{db.host}:{db.port}/{db.database}"
                                             "?mapping=onestop_variant_a")
    return env


# ── the same rows, loaded other ways ───────────────────────────────────────────────────────────

def export_rows(url: str, path: Path) -> tuple[list[str], list[str], int]:
    """fact_dossier's rows (the pipeline's normalised output) as pickled chunks of tuples."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    total = 0
    with psycopg.connect(conninfo) as conn, path.open("wb") as out:
        described = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'fact_dossier' ORDER BY ordinal_position").fetchall()
        names = [name for name, _ in described]
        with conn.cursor(name="export") as cursor:
            cursor.itersize = EXPORT_CHUNK
            cursor.execute(f"SELECT {', '.join(names)} FROM fact_dossier")
            while chunk := cursor.fetchmany(EXPORT_CHUNK):
                pickle.dump(chunk, out, protocol=pickle.HIGHEST_PROTOCOL)
                total += len(chunk)
    return names, [kind for _, kind in described], total


def chunks_of(path: Path, limit: int | None = None) -> Iterator[list[tuple]]:
    seen = 0
    with path.open("rb") as f:
        while limit is None or seen < limit:
            try:
                chunk = pickle.load(f)
            except EOFError:
                return
            if limit is not None:
                chunk = chunk[: limit - seen]
            seen += len(chunk)
            yield chunk


def empty_copy(conninfo: str, table: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (LIKE fact_dossier INCLUDING ALL)")


def time_copy(url: str, names: list[str], rows: Path) -> tuple[int, float]:
    """Raw COPY of the rows from Python into an empty copy of fact_dossier: the limit."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    empty_copy(conninfo, "bench_copy")
    n = 0
    with psycopg.connect(conninfo) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY bench_copy ({', '.join(names)}) FROM STDIN") as copy:
            for chunk in chunks_of(rows):
                for row in chunk:
                    copy.write_row(row)
                n += len(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return n, seconds


def time_to_sql(url: str, names: list[str], kinds: list[str], rows: Path, method: str | None,
                limit: int) -> tuple[int, float]:
    """pandas `DataFrame.to_sql` of the rows (a frame per chunk) into an empty copy of fact_dossier."""
    import pandas as pd

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    table = "bench_to_sql"
    empty_copy(conninfo, table)
    engine = sa.create_engine(url)
    # method="multi" puts every value of a chunk in one statement: PostgreSQL takes 65535 at most
    chunksize = 65535 // len(names) if method == "multi" else None
    n = 0
    started = time.perf_counter()
    for chunk in chunks_of(rows, limit):
        frame = pd.DataFrame.from_records(chunk, columns=names)
        # as a user's frame holds amounts (Decimal objects would be sent as text)
        frame = frame.astype({name: "float64" for name, kind in zip(names, kinds, strict=True)
                              if kind == "numeric"})
        frame.to_sql(table, engine, if_exists="append", index=False, method=method, chunksize=chunksize)
        n += len(chunk)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()
    return n, seconds


_SINGER_TYPES = {"integer": "integer", "smallint": "integer", "bigint": "integer",
                 "numeric": "number", "boolean": "boolean", "date": "string",
                 "timestamp with time zone": "string", "timestamp without time zone": "string"}


def _singer_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def singer_messages(names: list[str], kinds: list[str], rows: Path, out: Path, limit: int) -> int:
    """The rows as a Singer stream (SCHEMA, RECORD…, keyed by dossier_code) in a file."""
    properties = {}
    for name, kind in zip(names, kinds, strict=True):
        prop: dict[str, Any] = {"type": [_SINGER_TYPES.get(kind, "string"), "null"]}
        if kind.startswith("timestamp"):
            prop["format"] = "date-time"
        elif kind == "date":
            prop["format"] = "date"
        properties[name] = prop
    n = 0
    with out.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"type": "SCHEMA", "stream": "dossier", "key_properties": ["dossier_code"],
                            "schema": {"type": "object", "properties": properties}}) + "\n")
        for chunk in chunks_of(rows, limit):
            for row in chunk:
                record = {name: _singer_value(v) for name, v in zip(names, row, strict=True)}
                f.write(json.dumps({"type": "RECORD", "stream": "dossier", "record": record},
                                   ensure_ascii=False) + "\n")
            n += len(chunk)
    return n


def bench_venv() -> Path:
    """`.venv-bench` with target-postgres (and pyinstrument), from bench-constraints.txt."""
    target = BENCH_VENV / "bin" / "target-postgres"
    if not target.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        "-r", str(BENCH_CONSTRAINTS)], check=True)
    return target


def time_target_postgres(url: str, messages: Path, work: Path) -> float:
    """MeltanoLabs target-postgres reading the Singer stream on stdin (its defaults otherwise)."""
    db = make_url(url)
    config = work / "target-postgres.json"
    config.write_text(json.dumps({"host": db.host, "port": db.port or 5432, "user": db.username,
                                  "password": db.password or "", "database": db.database,
                                  "default_target_schema": "bench_singer"}))
    target = bench_venv()
    with messages.open("rb") as stdin, (work / "target-postgres.log").open("w") as log:
        started = time.perf_counter()
        subprocess.run([str(target), "--config", str(config)], stdin=stdin, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
        seconds = time.perf_counter() - started
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA bench_singer CASCADE")
    engine.dispose()
    return seconds


# ── one N ──────────────────────────────────────────────────────────────────────────────────────

def bench_n(n: int, *, url: str, mariadb_url: str | None, work: Path, baseline_max: int,
            paths: set[str], log: Path) -> Figures:
    from simulators.onestop import create_onestop_database
    from simulators.portal import PortalSimulator, ScaledListing
    from transforms.timefmt import LOCAL_TZ, format_portal_time

    figures = Figures(n)
    procedures, dossiers = base_province(work, filler_for(n))
    listing = ScaledListing(dossiers, n)
    figures.base = len(dossiers)
    del dossiers
    with PortalSimulator(procedures=procedures, dossiers=listing) as portal:
        env = child_env(url, portal.url, mariadb_url)
        reset_warehouse(url)
        run_sync(["national-portal", "--stream", "procedures"], env, url, log)
        if "portal" in paths:
            say(f"N={n:,}: portal full sync")
            figures.portal = run_sync(["national-portal", "--stream", "dossiers"], env, url, log)
            rows = work / f"rows-{n}.pickle"
            names, kinds, exported = export_rows(url, rows)
            say(f"N={n:,}: COPY of {exported:,} rows")
            figures.copy_rows, figures.copy_seconds = time_copy(url, names, rows)
            limit = min(baseline_max, exported)
            for method in (None, "multi"):
                say(f"N={n:,}: to_sql method={method} ({limit:,} rows)")
                figures.baselines[f"to_sql method={method}"] = time_to_sql(url, names, kinds, rows, method, limit)
            messages = work / f"singer-{n}.jsonl"
            records = singer_messages(names, kinds, rows, messages, limit)
            say(f"N={n:,}: target-postgres ({records:,} rows)")
            figures.baselines["target-postgres"] = (records, time_target_postgres(url, messages, work))
            messages.unlink()
            rows.unlink()
        if "one-stop" in paths and mariadb_url:
            say(f"N={n:,}: filling the MariaDB one-stop database")
            empty_database(mariadb_url)  # the N before filled it
            create_onestop_database(mariadb_url, "a", onestop_records(listing), procedures)
        if "portal" in paths:
            changed = listing.touch(CHANGED_EVERY, format_portal_time(datetime.now(LOCAL_TZ)),
                                    {"GhiChu": "Cập nhật (benchmark)"})
            say(f"N={n:,}: portal incremental sync ({changed:,} changed)")
            figures.portal_incremental = run_sync(["national-portal", "--stream", "dossiers"], env, url, log)
        if "one-stop" in paths and mariadb_url:
            reset_warehouse(url)
            run_sync(["national-portal", "--stream", "procedures"], env, url, log)
            say(f"N={n:,}: one-stop full sync")
            onestop = ["one-stop", "--connection", "ONESTOP_BENCH"]
            figures.onestop = run_sync(onestop, env, url, log)
            touch_onestop(mariadb_url)
            say(f"N={n:,}: one-stop incremental sync")
            figures.onestop_incremental = run_sync(onestop, env, url, log)
    figures.load = load_average()
    return figures


def onestop_records(listing: Any) -> Iterator[dict[str, Any]]:
    """The listing's dossiers as a one-stop database holds them: one row per code, keyed.

    A served duplicate (a planted duplicate line, the copies of a record whose code has no
    sequence to number) comes within a few copies of the first: a window of recent codes finds it.
    """
    recent: dict[str, None] = {}
    for position in range(listing.n):
        record = listing.record(position)
        code = record.get("MaHoSo")
        if not code or code in recent:
            continue
        recent[code] = None
        if len(recent) > 3 * listing.copies + 3:
            del recent[next(iter(recent))]
        yield record


def touch_onestop(url: str) -> None:
    """1% of the one-stop database's dossiers changed now (their update time and a field)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE tbl_hoso SET ngay_cap_nhat = NOW(), trich_yeu = CONCAT(trich_yeu, ' ') "
                             f"WHERE MOD(id, {CHANGED_EVERY}) = 1")
    engine.dispose()


# ── the report ─────────────────────────────────────────────────────────────────────────────────

def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds else "—"


def table(f: Figures) -> str:
    lines = [f"### N = {f.n:,} dossier records (base province {f.base:,}, load average after: {f.load})",
             "", "| measure | rows | seconds | rows/s | ratio |", "|---|---:|---:|---:|---:|"]
    copy_rate = f.copy_rows / f.copy_seconds if f.copy_seconds else 0.0
    pipeline_rate = f.portal.rows_read / f.portal.seconds if f.portal else 0.0

    def line(name: str, rows: int, seconds: float, ratio: str = "") -> None:
        lines.append(f"| {name} | {rows:,} | {seconds:,.1f} | {rate(rows, seconds)} | {ratio} |")

    if f.portal:
        line("pipeline, national portal (HTTP → sync → PostgreSQL)", f.portal.rows_read, f.portal.seconds,
             f"{pipeline_rate / copy_rate:.2f}× COPY" if copy_rate else "")
    if f.onestop:
        onestop_rate = f.onestop.rows_read / f.onestop.seconds
        line("pipeline, one-stop (MariaDB → sync → PostgreSQL)", f.onestop.rows_read, f.onestop.seconds,
             f"{onestop_rate / copy_rate:.2f}× COPY" if copy_rate else "")
    if f.copy_seconds:
        line("raw COPY (psycopg `write_row`) of the loaded rows", f.copy_rows, f.copy_seconds, "1.00")
    for name, (rows, seconds) in f.baselines.items():
        ratio = f"pipeline {pipeline_rate / (rows / seconds):.1f}×" if seconds and pipeline_rate else ""
        line(name, rows, seconds, ratio)
    lines.append("")
    for name, full, incremental in (("national portal", f.portal, f.portal_incremental),
                                    ("one-stop", f.onestop, f.onestop_incremental)):
        if full and incremental:
            lines.append(f"- {name}: incremental re-sync after 1% changed: {incremental.seconds:.1f} s "
                         f"({incremental.rows_read:,} rows read) = {incremental.seconds / full.seconds:.1%} "
                         f"of the full sync; peak memory full {full.peak_rss_mb:,.0f} MB, "
                         f"incremental {incremental.peak_rss_mb:,.0f} MB; full sync loaded "
                         f"{full.rows_loaded:,}, quarantined {full.rows_quarantined:,}")
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return (f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GB RAM; {platform.platform()}; "
            f"Python {platform.python_version()}")


def server_versions(url: str, mariadb_url: str | None) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = [conn.exec_driver_sql("SHOW server_version").scalar_one()]
    engine.dispose()
    text = f"PostgreSQL {versions[0]}"
    if mariadb_url:
        engine = sa.create_engine(mariadb_url)
        with engine.connect() as conn:
            text += f", MariaDB {conn.exec_driver_sql('SELECT VERSION()').scalar_one()}"
        engine.dispose()
    return text


def write_doc(path: Path, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{DOC_BEGIN}\n{DOC_END}\n"
    head, _, rest = text.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    path.write_text(f"{head}{DOC_BEGIN}\n{body}{DOC_END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--with-1e7", action="store_true", help="also N = 10^7")
    parser.add_argument("--doc", type=Path, help="write the figures into this Markdown file")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL,
                        help="warehouse database, created and dropped by the run")
    parser.add_argument("--mariadb-url", default=DEFAULT_MARIADB_URL,
                        help="one-stop database, created and dropped by the run")
    parser.add_argument("--paths", default="portal,one-stop", help="portal, one-stop or both")
    parser.add_argument("--one-stop-max", type=int,
                        help="the one-stop path only up to this N (e.g. 1000000: 10^7 on the portal path alone)")
    parser.add_argument("--baseline-max", type=int, default=1_000_000,
                        help="rows loaded by to_sql and target-postgres at most (the first ones)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    sizes = [*args.n, *([10_000_000] if args.with_1e7 else [])]
    paths = set(args.paths.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "sync.log"
    say(f"work folder {work}; sync output in {log}")
    results = []
    command = "python -m tests.benchmarks.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    with scratch_database(args.postgres_url) as url:
        with scratch_database(args.mariadb_url) if "one-stop" in paths else _nothing() as mariadb_url:
            versions = server_versions(url, mariadb_url)
            for n in sizes:
                paths_n = paths - ({"one-stop"} if args.one_stop_max and n > args.one_stop_max else set())
                figures = bench_n(n, url=url, mariadb_url=mariadb_url, work=work,
                                  baseline_max=args.baseline_max, paths=paths_n, log=log)
                results.append(figures)
                print(table(figures), flush=True)
                if args.doc:  # after each N: a later one that fails keeps the figures before it
                    body = (f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}: `{command}`\n\n"
                            f"Machine: {machine()}; {versions}.\n\n" + "\n".join(table(f) for f in results))
                    write_doc(args.doc, body)
                    say(f"figures written to {args.doc}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    raise SystemExit(main())
