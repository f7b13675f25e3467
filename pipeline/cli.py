"""The `lienthong` command line: demo, sync, report, db, simulate, standards, docs."""

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


def cmd_sync(args: argparse.Namespace) -> int:
    from connectors.settings import connection_from_env
    from pipeline.settings import PipelineSettings
    from pipeline.sync import SOURCES, sync_source
    from pipeline.tasks import parse_window
    from warehouse.db import create_engine, upgrade, warehouse_url

    source = SOURCE_NAMES[args.source]
    connection_ids = [SOURCES[source].connection_id]
    if source == "one_stop":
        from pipeline.tasks import onestop_connection_ids

        connection_ids = args.connection or onestop_connection_ids()
        if not connection_ids:
            raise ValueError("no one-stop-shop database given: use --connection ID "
                             "(AIRFLOW_CONN_<ID>) or set LIENTHONG_ONESTOP_CONNECTIONS")
    connections = [connection_from_env(conn_id) for conn_id in connection_ids]
    settings = PipelineSettings()
    settings.require_pseudonym_key()
    window = parse_window(args.start, args.end)
    streams = [args.stream] if args.stream else None
    if streams and streams[0] not in SOURCES[source].streams:
        raise ValueError(f"{args.source} has no stream {streams[0]!r} (it has: {', '.join(SOURCES[source].streams)})")
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


def cmd_push(args: argparse.Namespace) -> int:
    """Push the changed dossiers to the national portal; exit 0 when the push ran, rejections or not
    (each is printed; they stay in ops_push and go again once corrected in the warehouse)."""
    from connectors.settings import connection_from_env
    from pipeline.push import run_push

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    outcome = run_push(connection_from_env("national_portal"), limit=args.limit, dry_run=args.dry_run,
                       retry_rejected=args.retry_rejected)
    print(outcome.summary())
    for rejection in outcome.rejected:
        print(rejection.line())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.report import BINARY_FORMATS, render_report

    if args.format in BINARY_FORMATS and not args.out:
        raise ValueError(f"--format {args.format} writes a binary file: give it with --out FILE")
    report = render_report(fmt=args.format, indicator=args.indicator, period=args.period, agency=args.agency,
                           unit_scheme=args.unit_scheme, out=args.out)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(report, bytes):
            out.write_bytes(report)
        else:
            out.write_text(report, encoding="utf-8")
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(report if isinstance(report, str) else report.decode())
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


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(seed=args.seed, filler_dossiers=args.filler_dossiers, use_airflow=not args.no_airflow)


def cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.what == "generate":
        from simulators.generator import generate_province

        truth = generate_province(Path(args.out), seed=args.seed, filler_dossiers=args.filler_dossiers)
        print(f"generated {truth['procedures']['records']} procedures and "
              f"{truth['dossiers']['records_served']} dossier records into {args.out} "
              f"(ground truth: {Path(args.out) / 'ground_truth.json'})")
        return 0
    if args.what == "sources":
        from simulators.province import build_sources

        out = Path(args.out) if args.out else Path(args.data_dir) / "sources"
        sources = build_sources(Path(args.data_dir), out, seed=args.seed)
        records = sources["records"]
        print(f"split {args.data_dir} over its sources in {out}: portal {records['national_portal']}, "
              f"one-stop {records['one_stop:000.00.03.H62']} + {records['one_stop:000.00.04.H62']}, "
              f"LGSP {records['lgsp']} in {sources['lgsp_messages']} messages, Justice CSV "
              f"{sum(records['file_drop.justice_csv'].values())}, {sources['reconciliation']['reports']} "
              f"commune reports (ground truth: {out / 'ground_truth.json'})")
        return 0
    if args.what == "lgsp":
        from simulators.lgsp import LgspSimulator
        from simulators.loopback import serve_until_interrupted
        from simulators.province import lgsp_messages

        messages = lgsp_messages(args.sources_dir)
        if not messages:
            raise ValueError(f"{Path(args.sources_dir) / 'lgsp'} holds no messages "
                             "(run `lienthong simulate sources` first)")
        return serve_until_interrupted(LgspSimulator(messages, port=args.port))
    from simulators.portal import main as portal_main

    argv = ["--data-dir", args.data_dir, "--port", str(args.port)]
    return portal_main(argv) or 0


def cmd_standards(args: argparse.Namespace) -> int:
    from pipeline.standards_build import write_codelists

    for path in write_codelists():
        print(f"wrote {path}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """`dictionary`: the data dictionary (pipeline/dictionary.py); `data-docs`: the GX Data Docs."""
    from pathlib import Path

    if args.what == "data-docs":
        from quality.datadocs import build_data_docs

        print(build_data_docs(args.dir))
        return 0
    from pipeline.dictionary import generate_dictionary

    text = generate_dictionary(args.format)
    if not args.out:
        sys.stdout.write(text)
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"data dictionary written to {args.out}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check an agency's file against the standard: 0 valid, 1 invalid rows, 2 unreadable file."""
    import json

    from pipeline.validate import UnreadableFile, catalogue_from_warehouse, load_catalogue, validate_file

    catalogue = source = None
    try:
        if args.catalogue:
            catalogue, source = load_catalogue(args.catalogue, lang=args.lang), args.catalogue
        elif args.warehouse:
            catalogue, source = catalogue_from_warehouse(), "dim_procedure (WAREHOUSE_URL)"
        report = validate_file(args.file, entity=args.entity, lang=args.lang, encoding=args.encoding,
                               catalogue=catalogue, catalogue_source=source)
    except UnreadableFile as exc:
        print(f"lienthong: error: {args.file}: {exc.message(args.lang)}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(report.to_text())
    return report.exit_code


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish, per receiving agency, the signed package of its dossiers changed since the last one."""
    from pipeline.exchange import DeliveryFailed, publish_from_env, receivers_from_env

    receivers = args.receiver or receivers_from_env()
    if not receivers:
        raise ValueError("no receiving agency: use --receiver CODE or set LIENTHONG_EXCHANGE_RECEIVERS")
    failed = 0
    for receiver in receivers:
        try:
            print(publish_from_env(receiver, outbox=args.outbox, endpoint=args.endpoint).summary())
        except DeliveryFailed as exc:  # recorded as failed; the next publish retries it
            print(f"lienthong: error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_receive(args: argparse.Namespace) -> int:
    """Verify and load packages; a refused one is one line `refused: <reason>` and exit code 1."""
    from pipeline.exchange import PackageRefused, receive_from_env

    results = receive_from_env(args.package, agency=args.agency, trusted_keys=args.trusted_keys)
    refused = 0
    for path, result in zip(args.package, results, strict=True):
        if isinstance(result, PackageRefused):
            prefix = f"{path}: " if len(args.package) > 1 else ""
            print(f"{prefix}refused: {result}", file=sys.stderr)
            refused += 1
        else:
            print(result.summary())
    return 1 if refused else 0


def cmd_keys(args: argparse.Namespace) -> int:
    from pipeline.keys import generate_keypair

    private, public = generate_keypair(args.out, args.agency, args.key_id)
    print(f"private key: {private} (keep it secret: LIENTHONG_SIGNING_KEY={private}, "
          f"LIENTHONG_SIGNING_KEY_ID={args.key_id})")
    print(f"public key:  {public} (give it to the receiving agencies, for their LIENTHONG_TRUSTED_KEYS folder)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lienthong", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log the pipeline's steps")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulated portal → Airflow DAGs → warehouse → report")
    demo.add_argument("--seed", type=int, default=2017)
    demo.add_argument("--filler-dossiers", type=int, default=20000,
                      help="dossiers of the procedures outside the article's figures")
    demo.add_argument("--no-airflow", action="store_true",
                      help="run the same pipeline functions without Airflow (faster)")
    demo.set_defaults(func=cmd_demo)

    sync = sub.add_parser("sync", help="sync one source into the warehouse (WAREHOUSE_URL)")
    sync.add_argument("source", choices=sorted(SOURCE_NAMES))
    sync.add_argument("--stream", choices=["procedures", "dossiers", "justice_csv", "service_stat"],
                      help="only this stream (national-portal: procedures|dossiers; files: "
                           "justice_csv|service_stat)")
    sync.add_argument("--connection", action="append",
                      help="one-stop: the connection id of an agency database (repeatable; "
                           "default LIENTHONG_ONESTOP_CONNECTIONS)")
    sync.add_argument("--start", help="backfill window start (ISO-8601; Vietnam time if naive)")
    sync.add_argument("--end", help="backfill window end")
    sync.set_defaults(func=cmd_sync)

    push = sub.add_parser("push", help="push changed dossiers and their steps to a receiving system")
    push.add_argument("target", choices=["national-portal"],
                      help="national-portal: DongBoHoSoMC + CapNhatTienDoHoSoMC (AIRFLOW_CONN_NATIONAL_PORTAL)")
    push.add_argument("--dry-run", action="store_true", help="count what would be sent; send and write nothing")
    push.add_argument("--limit", type=int, help="at most this many dossiers (oldest change first)")
    push.add_argument("--retry-rejected", action="store_true",
                      help="send rejected dossiers again even if unchanged since their rejection")
    push.set_defaults(func=cmd_push)

    report = sub.add_parser("report", help="print the standard indicators")
    report.add_argument("--format", choices=["table", "json", "csv", "xlsx", "html"], default="table",
                        help="table (terminal), json, csv, xlsx (a workbook; needs --out), html (one offline page)")
    report.add_argument("--indicator", help="one indicator id (see `lienthong report --format json`)")
    report.add_argument("--period", help="YYYY, YYYY-MM, or YYYY-MM-DD (the as-of date of catalogue indicators)")
    report.add_argument("--agency", help="an agency code, or 'province' for the whole province")
    report.add_argument("--unit-scheme", choices=["legacy", "2025"], default="legacy",
                        help="communes as before the 1 July 2025 merger (legacy) or merged into their successors")
    report.add_argument("--out", help="write to this file instead of standard output (parent folders are created)")
    report.set_defaults(func=cmd_report)

    db = sub.add_parser("db", help="warehouse schema")
    db.add_argument("action", choices=["upgrade", "roles"],
                    help="upgrade: migrate (and apply the roles on PostgreSQL); roles: the roles only")
    db.set_defaults(func=cmd_db)

    sim = sub.add_parser("simulate", help="the simulated province")
    sim_sub = sim.add_subparsers(dest="what", required=True)
    gen = sim_sub.add_parser("generate", help="write a seeded province (portal-shaped records + ground truth)")
    gen.add_argument("--out", default="var/sim")
    gen.add_argument("--seed", type=int, default=2017)
    gen.add_argument("--filler-dossiers", type=int, default=20000)
    portal = sim_sub.add_parser("portal", help="serve generated records as the national portal")
    portal.add_argument("--data-dir", default="var/sim")
    portal.add_argument("--port", type=int, default=8765)
    split = sim_sub.add_parser("sources", help="split a generated province over its sources (one-stop "
                               "databases, LGSP messages, file drops, portal) with planted cross-source defects")
    split.add_argument("--data-dir", default="var/sim", help="a province written by `simulate generate`")
    split.add_argument("--out", help="default: DATA_DIR/sources")
    split.add_argument("--seed", type=int, default=2017)
    lgsp = sim_sub.add_parser("lgsp", help="serve the LGSP feed written by `simulate sources`")
    lgsp.add_argument("--sources-dir", default="var/sim/sources")
    lgsp.add_argument("--port", type=int, default=8766)
    sim.set_defaults(func=cmd_simulate)

    validate = sub.add_parser(
        "validate", help="check an agency's file (JSON, LGSP XML, CSV, xlsx) against the standard",
        description="Exit code 0: valid; 1: invalid rows found; 2: the file cannot be read.")
    validate.add_argument("file", help="the file to check; its format and encoding are detected")
    validate.add_argument("--lang", choices=["vi", "en"], default="vi", help="language of the report")
    validate.add_argument("--format", choices=["text", "json"], default="text",
                          help="text (one line per finding and a summary) or json (for machines)")
    validate.add_argument("--entity", choices=["dossier", "procedure"],
                          help="what the records are (default: detected from their fields)")
    validate.add_argument("--encoding", choices=["utf-8", "tcvn3", "vni", "cp1258"],
                          help="the text encoding of a CSV or JSON file (default: detected)")
    catalogue = validate.add_mutually_exclusive_group()
    catalogue.add_argument("--catalogue", metavar="FILE",
                           help="procedure catalogue (JSON/CSV/xlsx of procedures) for "
                                "procedure_code.in_catalogue")
    catalogue.add_argument("--warehouse", action="store_true",
                           help="take the procedure catalogue from dim_procedure at WAREHOUSE_URL")
    validate.set_defaults(func=cmd_validate)

    publish = sub.add_parser("publish", help="signed dossier packages for receiving agencies (docs/INTERFACES.md §13)")
    publish.add_argument("--receiver", action="append",
                         help="receiving agency code (repeatable; default LIENTHONG_EXCHANGE_RECEIVERS)")
    publish.add_argument("--outbox", help="folder for <message_id>.zip (default LIENTHONG_OUTBOX)")
    publish.add_argument("--endpoint", help="HTTP URL the package is POSTed to (default LIENTHONG_EXCHANGE_ENDPOINT)")
    publish.set_defaults(func=cmd_publish)

    receive = sub.add_parser("receive", help="verify signed dossier packages and load them")
    receive.add_argument("package", nargs="+", help="a package: <message_id>.zip or its unpacked folder")
    receive.add_argument("--agency",
                         help="refuse packages not addressed to this agency (default LIENTHONG_EXCHANGE_AGENCY)")
    receive.add_argument("--trusted-keys",
                         help="folder or JSON file of trusted public keys (default LIENTHONG_TRUSTED_KEYS)")
    receive.set_defaults(func=cmd_receive)

    keys = sub.add_parser("keys", help="Ed25519 keys of the dossier exchange")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    generate = keys_sub.add_parser("generate", help="a new key pair for an agency")
    generate.add_argument("--out", required=True, help="folder for <key-id>.key.pem and trusted/<agency>/<key-id>.pem")
    generate.add_argument("--agency", default="000.00.00.H62", help="the agency that signs with it")
    generate.add_argument("--key-id", default="k1", help="the key's id (written in every manifest it signs)")
    keys.set_defaults(func=cmd_keys)

    std = sub.add_parser("standards", help="the shared standard")
    std.add_argument("action", choices=["build"], help="regenerate admin units and commune agencies")
    std.set_defaults(func=cmd_standards)

    docs = sub.add_parser("docs", help="documentation generated from the code and the standard")
    docs_sub = docs.add_subparsers(dest="what", required=True)
    dictionary = docs_sub.add_parser("dictionary", help="every table and view column, in Vietnamese and English")
    dictionary.add_argument("--format", choices=["md", "json"], default="md")
    dictionary.add_argument("--out", help="write to this file (docs/data_dictionary.md is the committed one)")
    data_docs = docs_sub.add_parser("data-docs", help="build the Great Expectations Data Docs of the kept runs")
    data_docs.add_argument("--dir", help="the GX context folder (default LIENTHONG_GX_DIR, else var/gx)")
    docs.set_defaults(func=cmd_docs)
    return parser


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
