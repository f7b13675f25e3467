"""The process the harness kills: the `lienthong sync` CLI with one kill point (or call counters) installed.

`python -m tests.reliability.crash_child [--kill TARGET:WHEN:N] [--count TARGET ...] -- sync ARGS...`

`--kill` wraps the function or method `TARGET` (a dotted path: `warehouse.load.BatchWriter.commit`,
`shutil.move`, …) so that its N-th call sends this process SIGKILL `before` or `after` the call
runs. Nothing in the production code knows about it: the wrapper replaces the attribute on its
module or class, as `unittest.mock.patch` would, and the CLI (`pipeline.cli.main`) runs as in
production. `--count` wraps targets with counters only and writes `{target: calls}` as JSON to
the file named by `--counts-file` when the CLI returns (the harness checks that every kill point
it plans is reached by an uninterrupted run).

`--serve` is the same, faster: importing the pipeline (Great Expectations above all) takes longer
than a small sync, so the harness starts one server that imports everything once, then forks one
child per run. A request is one JSON line on stdin (`argv`, `env`, `kill`, `count`, `counts_file`,
`log`); the forked child takes that environment, sends its output to `log`, installs the points
and runs the CLI; the answer is one JSON line `{"code": exit code or null, "signal": number or
null}`. The server holds no thread, connection or open file a child could inherit half-used.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WHENS = ("before", "after")


@dataclass(frozen=True)
class KillPoint:
    """Kill the process at the `nth` call of `target`, `before` or `after` the call."""

    target: str
    when: str
    nth: int

    def __str__(self) -> str:
        return f"{self.target}:{self.when}:{self.nth}"

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        target, when, nth = text.rsplit(":", 2)
        if when not in WHENS or not nth.isdigit() or int(nth) < 1:
            raise ValueError(f"kill point {text!r}: expected TARGET:before|after:N (N >= 1)")
        return cls(target, when, int(nth))


def resolve(target: str) -> tuple[Any, str]:
    """The object holding `target`'s last name (a module or a class) and that name."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        if not callable(getattr(owner, parts[-1], None)):
            raise ValueError(f"{target} is not a function or method")
        return owner, parts[-1]
    raise ValueError(f"no module found for {target}")


def wrap(target: str, on_call: Callable[[int, str], None]) -> None:
    """Replace `target` by a wrapper calling `on_call(n, "before"|"after")` around its n-th call."""
    owner, name = resolve(target)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        n = calls
        on_call(n, "before")
        result = original(*args, **kwargs)
        on_call(n, "after")
        return result

    setattr(owner, name, wrapper)


def install_kill(point: KillPoint) -> None:
    def on_call(n: int, when: str) -> None:
        if n == point.nth and when == point.when:
            sys.stderr.write(f"crash_child: SIGKILL at {point}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    wrap(point.target, on_call)


def install_counters(targets: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(targets, 0)
    for target in targets:
        def on_call(n: int, when: str, target: str = target) -> None:
            if when == "before":
                counts[target] = n
        wrap(target, on_call)
    return counts


def run(cli: list[str], kill: KillPoint | None, count: list[str], counts_file: Path | None) -> int:
    """Install the points, run `lienthong CLI…`, write the counts; the CLI's exit code."""
    from pipeline.cli import main as lienthong

    counts = install_counters(count)
    if kill:
        install_kill(kill)
    code = lienthong(cli)
    if counts_file:
        counts_file.write_text(json.dumps(counts), encoding="utf-8")
    return code


# Imported by the server before it forks: what a sync imports, so that no child imports it again.
PRELOAD = ("pipeline.cli", "pipeline.sync", "pipeline.sources", "pipeline.tasks", "quality.gate",
           "transforms.portal", "transforms.service_stat", "warehouse.load", "warehouse.db", "warehouse.state",
           "connectors.portal", "connectors.onestop", "connectors.lgsp", "connectors.filedrop",
           "alembic.command", "psycopg", "sqlalchemy.dialects.postgresql.psycopg", "openpyxl")


def serve() -> int:
    """Fork one child per request line on stdin; answer each with its exit code or signal."""
    for module in PRELOAD:
        importlib.import_module(module)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: never returns into the server's loop
            code = 70
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
                os.environ.clear()
                os.environ.update(request["env"])
                kill = KillPoint.parse(request["kill"]) if request.get("kill") else None
                counts_file = Path(request["counts_file"]) if request.get("counts_file") else None
                code = run(request["argv"], kill, request.get("count", []), counts_file)
            except BaseException:  # noqa: BLE001 — a child must end here, whatever happened
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        answer = {"code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                  "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash_child")
    parser.add_argument("--kill", type=KillPoint.parse)
    parser.add_argument("--count", action="append", default=[])
    parser.add_argument("--counts-file", type=Path)
    parser.add_argument("--serve", action="store_true", help="fork a run per JSON request on stdin")
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the lienthong arguments")
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    return run(cli, args.kill, args.count, args.counts_file)


if __name__ == "__main__":
    sys.exit(main())
