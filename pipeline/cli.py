"""The `lienthong` command line: the runner's commands (sync, db, standards), and every other room's.

The other rooms add their own sub-commands through the entry-point group `lienthong.commands`
(pyproject.toml: report and docs from `reporting.cli`; validate, publish, receive, keys and push
from `exchange.cli`; demo and simulate from `simulators.cli`), so the runner imports none of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

log = logging.getLogger("lienthong")

SOURCE_NAMES = {"national-portal": "national_portal", "one-stop": "one_stop", "lgsp": "lgsp",
                "files": "file_drop"}


def _configure_logging(verbose: bool) -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lienthong").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("great_expectations", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _progress_printer():
    """A progress callback printing to stderr: a live line on a terminal, one line per step otherwise."""
    from pipeline.progress import ProgressPrinter

    return ProgressPrinter(sys.stderr)


def source_choices() -> list[str]:
    """The names `lienthong sync` takes: the built-in sources' and those of any declared source."""
    from pipeline.sources import SOURCES

    cli_names = {source: name for name, source in SOURCE_NAMES.items()}
    return sorted(cli_names.get(source, source.replace("_", "-")) for source in SOURCES)


def cmd_sync(args: argparse.Namespace) -> int:
    from connectors.settings import connection_from_env
    from pipeline.settings import PipelineSettings
    from pipeline.sources import source_plan
    from pipeline.sync import sync_source
    from pipeline.tasks import parse_window
    from warehouse.db import create_engine, upgrade, warehouse_url

    source = SOURCE_NAMES.get(args.source, args.source.replace("-", "_"))
    declared = source_plan(source)
    connection_ids = [declared.connection_id]
    if source == "one_stop":
        from pipeline.tasks import onestop_connection_ids

        connection_ids = args.connection or onestop_connection_ids()
        if not connection_ids:
            raise ValueError("no one-stop-shop database given: use --connection ID "
                             "(AIRFLOW_CONN_<ID>) or set LIENTHONG_ONESTOP_CONNECTIONS")
    elif source == "file_drop":
        from pipeline.tasks import drop_connection_ids

        connection_ids = args.connection or drop_connection_ids()
    connections = [connection_from_env(conn_id) for conn_id in connection_ids]
    settings = PipelineSettings()
    settings.require_pseudonym_key()
    window = parse_window(args.start, args.end)
    streams = [args.stream] if args.stream else None
    if streams and streams[0] not in declared.streams:
        raise ValueError(f"{args.source} has no stream {streams[0]!r} (it has: {', '.join(declared.streams)})")
    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    progress = _progress_printer()
    outcomes = []
    try:
        for connection in connections:
            outcomes += sync_source(source, engine=engine, connection=connection, settings=settings,
                                    window=window, progress=progress, streams=streams)
    finally:
        progress.close()
        engine.dispose()
    for outcome in outcomes:
        print(outcome.summary())
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`upgrade`: migrate, then (PostgreSQL) apply the roles unless LIENTHONG_DB_ROLES=0;
    `roles`: apply the roles only (warehouse/roles.py), with prefix LIENTHONG_DB_ROLE_PREFIX."""
    from sqlalchemy.engine import make_url

    from warehouse.db import create_engine, upgrade, warehouse_url
    from warehouse.roles import DEFAULT_PREFIX, RolesNotPermitted, apply_roles

    url = warehouse_url()
    prefix = os.environ.get("LIENTHONG_DB_ROLE_PREFIX", "").strip() or DEFAULT_PREFIX
    engine = create_engine(url)
    try:
        if args.action == "roles":
            print(apply_roles(engine, prefix=prefix).note)
            return 0
        upgrade(engine)
        print(f"warehouse at {make_url(url).render_as_string(hide_password=True)} is at the latest revision")
        if engine.dialect.name != "postgresql":
            return 0
        if os.environ.get("LIENTHONG_DB_ROLES", "").strip().lower() in ("0", "false", "no"):
            print("roles not applied (LIENTHONG_DB_ROLES=0); `lienthong db roles` applies them")
            return 0
        try:
            print(apply_roles(engine, prefix=prefix).note)
        except RolesNotPermitted as exc:  # the migration stands; roles are the DBA's to apply
            print(f"roles not applied: {exc}")
        return 0
    finally:
        engine.dispose()


def cmd_standards(args: argparse.Namespace) -> int:
    from standards.build import write_codelists

    for path in write_codelists():
        print(f"wrote {path}")
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.pools import POOLS, pools_json

    text = pools_json()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(POOLS)} pools to {args.out} (then: airflow pools import {args.out})")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lienthong", description="lienthong — the data-interoperability pipeline: sync sources into the "
        "warehouse, report its indicators, exchange standard data with agencies and the national portal.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the pipeline's steps")
    sub = parser.add_subparsers(dest="command", required=True)

    sync = sub.add_parser("sync", help="sync one source into the warehouse (WAREHOUSE_URL)")
    sync.add_argument("source", choices=source_choices())
    sync.add_argument("--stream", choices=["procedures", "dossiers", "justice_csv", "service_stat"],
                      help="only this stream (national-portal: procedures|dossiers; files: "
                           "justice_csv|service_stat)")
    sync.add_argument("--connection", action="append",
                      help="one-stop: the connection id of an agency database (repeatable; default "
                           "LIENTHONG_ONESTOP_CONNECTIONS); files: of a drop folder (default "
                           "LIENTHONG_FILE_DROP_CONNECTIONS, else file_drop)")
    sync.add_argument("--start", help="backfill window start (ISO-8601; Vietnam time if naive)")
    sync.add_argument("--end", help="backfill window end")
    sync.set_defaults(func=cmd_sync)

    db = sub.add_parser("db", help="warehouse schema")
    db.add_argument("action", choices=["upgrade", "roles"],
                    help="upgrade: migrate (and apply the roles on PostgreSQL); roles: the roles only")
    db.set_defaults(func=cmd_db)

    pools = sub.add_parser("pools", help="the Airflow pools the DAGs run in, as `airflow pools import` reads them")
    pools.add_argument("--out", help="write the JSON to this file (default: print it)")
    pools.set_defaults(func=cmd_pools)

    std = sub.add_parser("standards", help="the shared standard")
    std.add_argument("action", choices=["build"], help="regenerate admin units and commune agencies")
    std.set_defaults(func=cmd_standards)

    for add_commands in command_plugins():
        add_commands(sub.add_parser)
    return parser


COMMAND_GROUP = "lienthong.commands"


def command_plugins() -> list:
    """The `add_commands(add_parser)` functions of the entry-point group `lienthong.commands`."""
    from importlib.metadata import entry_points

    plugins = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    if not plugins:
        raise SystemExit(f"lienthong: error: no {COMMAND_GROUP} entry points: the package is not installed "
                         "(`make install`, or `pip install -e .`)")
    return [ep.load() for ep in plugins]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; errors end in one clear line on stderr and a non-zero exit, never a traceback."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("lienthong: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 — the CLI's one place that turns errors into messages
        if os.environ.get("LIENTHONG_DEBUG"):
            raise
        print(f"lienthong: error: {describe_error(exc)}", file=sys.stderr)
        return 1


def describe_error(exc: BaseException) -> str:
    """One line naming what failed; database errors without their SQL dump."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if isinstance(exc, DBAPIError):
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return f"warehouse: {first}"
    if isinstance(exc, SQLAlchemyError):
        return f"warehouse: {str(exc).splitlines()[0]}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
