"""The demo's entry point: `lienthong demo` and `lienthong simulate` (registered by entry point)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulators.demo import VAR, run_demo

    return run_demo(seed=args.seed, filler_dossiers=args.filler_dossiers, use_airflow=not args.no_airflow,
                    var_dir=Path(args.var_dir).resolve() if args.var_dir else VAR)


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
        return serve_until_interrupted(LgspSimulator(messages, host=args.host, port=args.port))
    from simulators.portal import main as portal_main

    argv = ["--data-dir", args.data_dir, "--host", args.host, "--port", str(args.port)]
    if args.username:
        argv += ["--username", args.username]
    if args.password:
        argv += ["--password", args.password]
    return portal_main(argv) or 0


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this room's sub-commands to `lienthong`: `add_parser` is the CLI's `add_subparsers().add_parser`."""
    demo = add_parser("demo", help="simulated portal → Airflow DAGs → warehouse → report")
    demo.add_argument("--seed", type=int, default=2017)
    demo.add_argument("--filler-dossiers", type=int, default=20000,
                      help="dossiers of the procedures outside the article's figures")
    demo.add_argument("--no-airflow", action="store_true",
                      help="run the same pipeline functions without Airflow (faster)")
    demo.add_argument("--var-dir", help="where the province, logs and Airflow's home go (default: var/ "
                                        "of the repository); the warehouse is WAREHOUSE_URL's")
    demo.set_defaults(func=cmd_demo)

    sim = add_parser("simulate", help="the simulated province")
    sim_sub = sim.add_subparsers(dest="what", required=True)
    gen = sim_sub.add_parser("generate", help="write a seeded province (portal-shaped records + ground truth)")
    gen.add_argument("--out", default="var/sim")
    gen.add_argument("--seed", type=int, default=2017)
    gen.add_argument("--filler-dossiers", type=int, default=20000)
    portal = sim_sub.add_parser("portal", help="serve generated records as the national portal")
    portal.add_argument("--data-dir", default="var/sim")
    portal.add_argument("--port", type=int, default=8765)
    # loopback unless told: docker-compose serves the simulators to the other containers
    portal.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    portal.add_argument("--username", help="the login the portal accepts (default: the demo's)")
    portal.add_argument("--password", help="its password (default: the demo's)")
    split = sim_sub.add_parser("sources", help="split a generated province over its sources (one-stop "
                               "databases, LGSP messages, file drops, portal) with planted cross-source defects")
    split.add_argument("--data-dir", default="var/sim", help="a province written by `simulate generate`")
    split.add_argument("--out", help="default: DATA_DIR/sources")
    split.add_argument("--seed", type=int, default=2017)
    lgsp = sim_sub.add_parser("lgsp", help="serve the LGSP feed written by `simulate sources`")
    lgsp.add_argument("--sources-dir", default="var/sim/sources")
    lgsp.add_argument("--port", type=int, default=8766)
    lgsp.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    sim.set_defaults(func=cmd_simulate)
