"""Validate: Great Expectations suites generated from the standard; the gate that quarantines bad rows.
May import transforms/ and standards/ only."""

from __future__ import annotations

import logging
import os

# GX must see this before its first import: validation never talks to the network.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# GX logs at INFO/DEBUG on every validation; only its warnings are ours to show.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

from quality.gate import QualityGate, QualityGateError, QualityResult  # noqa: E402
from quality.suites import build_suite, rule_of, suite_name  # noqa: E402

# One GX module pins its own logger at INFO (its ephemeral docs-site notice): bring it back in line.
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

__all__ = [
    "QualityGate",
    "QualityGateError",
    "QualityResult",
    "build_suite",
    "rule_of",
    "suite_name",
]
