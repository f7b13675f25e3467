"""The hostile-input corpus (issue 10 §5): its figure, printed at the end of a run that includes it."""

from __future__ import annotations

from typing import Any

_HERE = "tests/hostile/"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line `hostile input: N cases tried, M handled`: the corpus's test items that ran (each
    parameter a case), and of them those that passed. Nothing when no item of the corpus ran."""
    outcomes: dict[str, str] = {}
    for outcome in ("passed", "failed", "error", "skipped", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(_HERE):
                # a failed teardown after a passed call still fails the case
                if outcomes.get(nodeid) in (None, "passed"):
                    outcomes[nodeid] = outcome
    if outcomes:
        handled = sum(outcome == "passed" for outcome in outcomes.values())
        terminalreporter.write_line(f"hostile input: {len(outcomes)} cases tried, {handled} handled")
