"""The `lienthong` commands of the exchange: validate, publish, receive, keys, push (entry point)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def cmd_validate(args: argparse.Namespace) -> int:
    """Check an agency's file against the standard: 0 valid, 1 invalid rows, 2 unreadable file."""
    import json

    from exchange.validate import UnreadableFile, catalogue_from_warehouse, load_catalogue, validate_file

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
    from exchange.packages import DeliveryFailed, publish_from_env, receivers_from_env

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
    from exchange.packages import PackageRefused, receive_from_env

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
    if args.action == "rotate-pseudonym":
        return cmd_rotate_pseudonym(args)
    from exchange.keys import generate_keypair

    private, public = generate_keypair(args.out, args.agency, args.key_id)
    print(f"private key: {private} (keep it secret: LIENTHONG_SIGNING_KEY={private}, "
          f"LIENTHONG_SIGNING_KEY_ID={args.key_id})")
    print(f"public key:  {public} (give it to the receiving agencies, for their LIENTHONG_TRUSTED_KEYS folder)")
    return 0


def cmd_rotate_pseudonym(args: argparse.Namespace) -> int:
    """Re-key the warehouse's pseudonyms with the newest key of the configured chain (one
    transaction); nothing to do when already done; refused under any other chain."""
    from pipeline.settings import PipelineSettings
    from warehouse.db import create_engine, upgrade, warehouse_url
    from warehouse.pseudonym import rotate_pseudonyms

    chain = PipelineSettings().require_pseudonym_key()
    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    try:
        print(rotate_pseudonyms(engine, chain, dry_run=args.dry_run).summary())
    finally:
        engine.dispose()
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Push the changed dossiers to the national portal; exit 0 when the push ran, rejections or not
    (each is printed; they stay in ops_push and go again once corrected in the warehouse)."""
    from connectors.settings import connection_from_env
    from exchange.push import run_push

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    outcome = run_push(connection_from_env("national_portal"), limit=args.limit, dry_run=args.dry_run,
                       retry_rejected=args.retry_rejected)
    print(outcome.summary())
    for rejection in outcome.rejected:
        print(rejection.line())
    return 0


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this room's sub-commands to `lienthong`: `add_parser` is the CLI's `add_subparsers().add_parser`."""
    validate = add_parser(
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

    publish = add_parser("publish", help="signed dossier packages for receiving agencies (docs/INTERFACES.md §13)")
    publish.add_argument("--receiver", action="append",
                         help="receiving agency code (repeatable; default LIENTHONG_EXCHANGE_RECEIVERS)")
    publish.add_argument("--outbox", help="folder for <message_id>.zip (default LIENTHONG_OUTBOX)")
    publish.add_argument("--endpoint", help="HTTP URL the package is POSTed to (default LIENTHONG_EXCHANGE_ENDPOINT)")
    publish.set_defaults(func=cmd_publish)

    receive = add_parser("receive", help="verify signed dossier packages and load them")
    receive.add_argument("package", nargs="+", help="a package: <message_id>.zip or its unpacked folder")
    receive.add_argument("--agency",
                         help="refuse packages not addressed to this agency (default LIENTHONG_EXCHANGE_AGENCY)")
    receive.add_argument("--trusted-keys",
                         help="folder or JSON file of trusted public keys (default LIENTHONG_TRUSTED_KEYS)")
    receive.set_defaults(func=cmd_receive)

    keys = add_parser("keys", help="Ed25519 keys of the dossier exchange; the rotation of the pseudonym key")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    generate = keys_sub.add_parser("generate", help="a new key pair for an agency")
    generate.add_argument("--out", required=True, help="folder for <key-id>.key.pem and trusted/<agency>/<key-id>.pem")
    generate.add_argument("--agency", default="000.00.00.H62", help="the agency that signs with it")
    generate.add_argument("--key-id", default="k1", help="the key's id (written in every manifest it signs)")
    rotate = keys_sub.add_parser(
        "rotate-pseudonym", help="re-key every stored pseudonym with a new LIENTHONG_PSEUDONYM_KEY",
        description="First move the current key(s) to LIENTHONG_PSEUDONYM_KEY_PREVIOUS (oldest first) and "
                    "set the new key as LIENTHONG_PSEUDONYM_KEY; then run this once (docs/INTERFACES.md, "
                    "\"Citizens' data\"). Running it again changes nothing.")
    rotate.add_argument("--dry-run", action="store_true", help="count what would be re-keyed; write nothing")
    keys.set_defaults(func=cmd_keys)

    push = add_parser("push", help="push changed dossiers and their steps to a receiving system")
    push.add_argument("target", choices=["national-portal"],
                      help="national-portal: DongBoHoSoMC + CapNhatTienDoHoSoMC (AIRFLOW_CONN_NATIONAL_PORTAL)")
    push.add_argument("--dry-run", action="store_true", help="count what would be sent; send and write nothing")
    push.add_argument("--limit", type=int, help="at most this many dossiers (oldest change first)")
    push.add_argument("--retry-rejected", action="store_true",
                      help="send rejected dossiers again even if unchanged since their rejection")
    push.set_defaults(func=cmd_push)
