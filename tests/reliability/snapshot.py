"""What the harness compares: every warehouse table's rows, less what differs by run and not by content.

Excluded columns, and why (everything else of every table of `warehouse.schema.metadata` and
`alembic_version` is compared):

- `batch_id` (every table that has it) and `ops_sync_state.last_batch_id`: the id of the batch
  that wrote the row. LGSP and file-drop batches are named after the time they ran, so a re-run
  after a crash writes the same rows under another id; for windowed sources the id is the
  window's and equal anyway.
- `loaded_at` (facts, lineage, reports), `recorded_at` (every table that has it: the pseudonym key
  chain, packages), `ops_quarantine.created_at`, `ops_sync_state.updated_at`,
  `ops_batch.started_at` / `finished_at`, `mart_indicator.refreshed_at`: the clock of the load,
  not what was loaded.
- a table's autoincrement column (`ops_quarantine.id`, `mart_indicator.id`,
  `ops_pseudonym_key.id`): on PostgreSQL a sequence counts the killed transaction's inserts too
  (it never rolls back), so the ids after a crash are others.
- `ops_batch.window_start` / `window_end` of batches of the sources that are not windowed (LGSP,
  file drop): for them the window is the time the batch ran.
- `ops_batch.error`: only failed batches have one, and failed batches are not compared (below).

`ops_batch` is a log of runs, not of data: a crash adds a run. Its rows are compared as follows:
a `running` row is never allowed (it is reported as a violation); `failed` rows are the record of
the killed runs and are left out; `loaded` rows that read nothing (a re-run finding nothing new)
are left out. The remaining loaded batches are compared as a multiset for the sources promising
exactly-once loading (portal and one-stop: a re-run of a fixed window replaces its batch; the file
drop: a file is loaded once), and as a set for the LGSP feed, which is at-least-once by contract:
a kill between the commit and the acknowledgement makes the re-run read the same messages again,
and the same batch content is loaded twice (idempotently: the facts do not change).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

EXCLUDED_EVERYWHERE = frozenset({"batch_id", "loaded_at", "recorded_at"})
EXCLUDED = {  # besides each table's autoincrement column
    "ops_batch": frozenset({"started_at", "finished_at", "error"}),
    "ops_quarantine": frozenset({"created_at"}),
    "ops_sync_state": frozenset({"last_batch_id", "updated_at"}),
    "mart_indicator": frozenset({"refreshed_at"}),
}
UNWINDOWED_SOURCES = ("lgsp", "file_drop")  # their batch window is the time the batch ran
AT_LEAST_ONCE_SOURCES = ("lgsp",)


@dataclass
class Snapshot:
    """Per table: the canonical rows compared (sorted), their count and SHA-256."""

    rows: dict[str, list[str]]
    running: list[str] = field(default_factory=list)  # batch ids still `running`
    failed: int = 0  # failed batches (left out of ops_batch)

    def digest(self, table: str) -> str:
        return hashlib.sha256("\n".join(self.rows[table]).encode("utf-8")).hexdigest()

    def summary(self) -> dict[str, tuple[int, str]]:
        return {table: (len(rows), self.digest(table)[:12]) for table, rows in self.rows.items()}


def canonical(value: Any) -> str:
    """One value as text, the same whatever the dialect returned (UTC instants, plain decimals)."""
    if value is None:
        return "∅"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def take_snapshot(engine: sa.Engine) -> Snapshot:
    """Read every table of the warehouse into its canonical, comparable form."""
    from warehouse.schema import metadata

    existing = set(sa.inspect(engine).get_table_names())
    rows: dict[str, list[str]] = {}
    running: list[str] = []
    failed = 0
    with engine.connect() as conn:
        if "alembic_version" in existing:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            rows["alembic_version"] = sorted(str(row[0]) for row in versions)
        for table in metadata.sorted_tables:
            if table.name not in existing:
                continue
            skip = EXCLUDED_EVERYWHERE | EXCLUDED.get(table.name, frozenset())
            columns = [c for c in table.columns if c.name not in skip and c is not table.autoincrement_column]
            result = conn.execute(sa.select(*columns)).mappings().all()
            if table.name == "ops_batch":
                running = sorted(str(r["batch_id"]) for r in conn.execute(
                    sa.select(table.c.batch_id).where(table.c.status == "running")).mappings())
                failed = sum(1 for r in result if r["status"] == "failed")
                result = [r for r in result if r["status"] == "loaded" and r["rows_read"] > 0]
            rows[table.name] = sorted(_row_text(table.name, r) for r in result)
            if table.name == "ops_batch":
                rows[table.name] = _batches(rows[table.name])
    return Snapshot(rows, running, failed)


def _row_text(table: str, row: Any) -> str:
    values = dict(row)
    if table == "ops_batch" and values["source"].split(":", 1)[0] in UNWINDOWED_SOURCES:
        values["window_start"] = values["window_end"] = "(time of the run)"
    return "\t".join(f"{name}={canonical(value)}" for name, value in sorted(values.items()))


def _batches(rows: list[str]) -> list[str]:
    """Loaded batches: at-least-once sources' identical batches count once."""
    kept: list[str] = []
    for row in rows:
        if any(f"source={source}\t" in row for source in AT_LEAST_ONCE_SOURCES) and row in kept:
            continue
        kept.append(row)
    return kept


def differences(expected: Snapshot, actual: Snapshot, shown: int = 2) -> list[str]:
    """What differs, one line per table (with a few of the rows missing or extra); [] when equal."""
    lines = []
    for table in sorted(set(expected.rows) | set(actual.rows)):
        want, got = expected.rows.get(table, []), actual.rows.get(table, [])
        if want == got:
            continue
        missing, extra = _multiset_minus(want, got), _multiset_minus(got, want)
        text = f"{table}: {len(got)} rows, expected {len(want)}"
        if missing:
            text += f"; missing {len(missing)}: " + " | ".join(_short(r) for r in missing[:shown])
        if extra:
            text += f"; extra {len(extra)}: " + " | ".join(_short(r) for r in extra[:shown])
        lines.append(text)
    return lines


def _multiset_minus(a: Iterable[str], b: Iterable[str]) -> list[str]:
    left = Counter(a)
    left.subtract(Counter(b))
    return sorted(row for row, n in left.items() for _ in range(max(n, 0)))


def _short(row: str, limit: int = 220) -> str:
    return row if len(row) <= limit else row[: limit - 1] + "…"
