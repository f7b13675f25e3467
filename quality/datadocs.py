"""Great Expectations Data Docs: the gate's validation results kept in a file context, rendered as HTML."""

from __future__ import annotations

import copy
import logging
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_GX_DIR = REPO_DIR / "var" / "gx"
SITE_NAME = "local_site"  # GX's default site of a new file context
# Where GX writes that site, relative to the context's root (its default `base_directory`).
SITE_DIR = Path("uncommitted") / "data_docs" / SITE_NAME
DEFAULT_KEPT_RUNS = 20

_TRUE = {"1", "true", "yes", "on"}


def data_docs_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """`LIENTHONG_DATA_DOCS=1`: the gate keeps its validation results for Data Docs (default off)."""
    env = os.environ if environ is None else environ
    return env.get("LIENTHONG_DATA_DOCS", "").strip().lower() in _TRUE


def gx_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The root of the file-backed GX context: `LIENTHONG_GX_DIR`, else the repository's `var/gx`."""
    env = os.environ if environ is None else environ
    value = env.get("LIENTHONG_GX_DIR", "").strip()
    return Path(value).expanduser().resolve() if value else DEFAULT_GX_DIR


def kept_runs(environ: Mapping[str, str] | None = None) -> int:
    """How many validation runs (gate batches) of each suite are kept: `LIENTHONG_DATA_DOCS_RUNS`."""
    env = os.environ if environ is None else environ
    value = env.get("LIENTHONG_DATA_DOCS_RUNS", "").strip()
    runs = int(value) if value else DEFAULT_KEPT_RUNS
    if runs < 1:
        raise ValueError(f"LIENTHONG_DATA_DOCS_RUNS must be at least 1, not {runs}")
    return runs


def data_docs_index(directory: str | Path | None = None) -> Path:
    """Where the Data Docs index page is (or will be) written: `<gx dir>/uncommitted/data_docs/
    local_site/index.html`. Check `.is_file()` before linking it."""
    return (Path(directory) if directory is not None else gx_dir()) / SITE_DIR / "index.html"


def open_context(directory: str | Path | None = None) -> Any:
    """The file-backed GX context at `directory` (default `gx_dir()`), created when missing."""
    root = Path(directory) if directory is not None else gx_dir()
    root.mkdir(parents=True, exist_ok=True)
    return gx.get_context(mode="file", context_root_dir=str(root))


def build_data_docs(directory: str | Path | None = None) -> Path:
    """Render every kept validation result and suite of the context at `directory` as HTML.

    Returns the path of the index page. An empty context gives an index listing nothing.
    """
    context = open_context(directory)
    context.build_data_docs(site_names=[SITE_NAME])
    index = data_docs_index(context.root_directory)
    if not index.is_file():
        raise FileNotFoundError(f"GX built no Data Docs index at {index}")
    return index


@dataclass
class ResultKeeper:
    """Keeps the validation results of one gate (one batch) in the file context, chunk by chunk.

    `keep` only writes each chunk's result (a JSON file); `build` renders that run's pages and the
    index once, when the batch is done: it is called when the gate is released (end of the
    batch), and may be called earlier. Older runs of the suite beyond `runs` are removed.
    """

    context: Any
    suite_name: str
    runs: int = DEFAULT_KEPT_RUNS
    run_id: RunIdentifier = field(init=False)
    keys: list[ValidationResultIdentifier] = field(default_factory=list, init=False)
    skipped: list[str] = field(default_factory=list, init=False)  # chunks whose result failed to store
    _built: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        self.run_id = RunIdentifier(run_name=self.suite_name.partition(".")[0], run_time=now)

    def keep(self, result: Any, rows: tuple[Any, Any] | None = None) -> ValidationResultIdentifier | None:
        """Store one chunk's ExpectationSuiteValidationResult (rows: its first and last `_row`).

        A failure to store is logged and the result skipped (None): Data Docs never fail a batch.
        """
        label = f"chunk{len(self.keys) + len(self.skipped) + 1:04d}"
        if rows is not None:
            label += f"_rows{rows[0]}-{rows[1]}"
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=self.suite_name),
            run_id=self.run_id, batch_identifier=label)
        try:
            self.context.validation_results_store.set(key, result)
        except Exception:
            log.warning("Data Docs: the result of %s %s could not be kept", self.suite_name, label,
                        exc_info=True)
            self.skipped.append(label)
            return None
        self.keys.append(key)
        return key

    def build(self) -> Path | None:
        """Render this run's new results and the index page; the index path, or None if nothing new."""
        if self._built == len(self.keys):
            return None
        new = self.keys[self._built:]
        self.context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=new)
        self._built = len(self.keys)
        return data_docs_index(self.context.root_directory)

    def prune(self) -> int:
        """Remove the stored results of this suite's runs but the latest `runs` (this run
        included, even before its first chunk); returns how many results were removed."""
        store = self.context.validation_results_store
        mine = [key for key in store.list_keys()
                if key.expectation_suite_identifier.name == self.suite_name]
        times = sorted({_run_time(key) for key in mine} - {self.run_id.run_time}, reverse=True)
        keep = set(times[:self.runs - 1]) | {self.run_id.run_time}
        old = [key for key in mine if _run_time(key) not in keep]
        for key in old:
            store.remove_key(key)
        return len(old)


def keeper_for(gate: Any, suite: gx.ExpectationSuite,
               environ: Mapping[str, str] | None = None) -> ResultKeeper | None:
    """A ResultKeeper for a quality gate when `LIENTHONG_DATA_DOCS` is on, else None.

    The suite is saved in the file context (its own Data Docs page), runs beyond
    `LIENTHONG_DATA_DOCS_RUNS` are removed, and the keeper's `build` runs once the gate is
    released. A failure to build is logged, never raised: Data Docs never fail a batch.
    """
    if not data_docs_enabled(environ):
        return None
    try:
        context = open_context(gx_dir(environ))
        context.suites.add_or_update(_copy_suite(suite))
        keeper = ResultKeeper(context, suite.name, kept_runs(environ))
        keeper.prune()
    except Exception:  # e.g. an unwritable LIENTHONG_GX_DIR: the batch goes on without Data Docs
        log.warning("Data Docs are off for this %s batch: the GX context at %s failed",
                    suite.name, gx_dir(environ), exc_info=True)
        return None
    weakref.finalize(gate, build_kept, keeper)
    return keeper


def build_kept(keeper: ResultKeeper) -> None:
    """Build a keeper's Data Docs now; logged, never raised. Building again adds only new runs."""
    try:
        index = keeper.build()
    except Exception:  # a report aid: the batch is already judged and loaded
        log.warning("Data Docs of %s could not be built", keeper.suite_name, exc_info=True)
        return
    if index is not None:
        log.info("Data Docs of %s: %s", keeper.suite_name, index)


def _copy_suite(suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    """The suite for another context (GX refuses expectations that belong to a saved suite)."""
    expectations = []
    for expectation in suite.expectations:
        twin = copy.copy(expectation)
        twin.id = None
        expectations.append(twin)
    return gx.ExpectationSuite(name=suite.name, expectations=expectations, meta=dict(suite.meta))


def _run_time(key: ValidationResultIdentifier) -> datetime:
    return key.run_id.run_time
