"""The `lienthong report` and `lienthong docs` commands (registered in `pipeline.cli` by entry point)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reporting.report import BINARY_FORMATS, render_report

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


def cmd_docs(args: argparse.Namespace) -> int:
    """`dictionary`: the data dictionary (reporting/dictionary.py); `data-docs`: the GX Data Docs."""
    from pathlib import Path

    if args.what == "data-docs":
        from quality.datadocs import build_data_docs

        print(build_data_docs(args.dir))
        return 0
    from reporting.dictionary import generate_dictionary

    text = generate_dictionary(args.format)
    if not args.out:
        sys.stdout.write(text)
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"data dictionary written to {args.out}", file=sys.stderr)
    return 0


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this room's sub-commands to `lienthong`: `add_parser` is the CLI's `add_subparsers().add_parser`."""
    report = add_parser("report", help="print the standard indicators")
    report.add_argument("--format", choices=["table", "json", "csv", "xlsx", "html"], default="table",
                        help="table (terminal), json, csv, xlsx (a workbook; needs --out), html (one offline page)")
    report.add_argument("--indicator", help="one indicator id (see `lienthong report --format json`)")
    report.add_argument("--period", help="YYYY, YYYY-MM, or YYYY-MM-DD (the as-of date of catalogue indicators)")
    report.add_argument("--agency", help="an agency code, or 'province' for the whole province")
    report.add_argument("--unit-scheme", choices=["legacy", "2025"], default="legacy",
                        help="communes as before the 1 July 2025 merger (legacy) or merged into their successors")
    report.add_argument("--out", help="write to this file instead of standard output (parent folders are created)")
    report.set_defaults(func=cmd_report)

    docs = add_parser("docs", help="documentation generated from the code and the standard")
    docs_sub = docs.add_subparsers(dest="what", required=True)
    dictionary = docs_sub.add_parser("dictionary", help="every table and view column, in Vietnamese and English")
    dictionary.add_argument("--format", choices=["md", "json"], default="md")
    dictionary.add_argument("--out", help="write to this file (docs/data_dictionary.md is the committed one)")
    data_docs = docs_sub.add_parser("data-docs", help="build the Great Expectations Data Docs of the kept runs")
    data_docs.add_argument("--dir", help="the GX context folder (default LIENTHONG_GX_DIR, else var/gx)")
    docs.set_defaults(func=cmd_docs)
