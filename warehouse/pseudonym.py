"""The applicant pseudonyms' key chain: what the warehouse records of it, the check a sync makes
before writing, and the rotation that re-keys every stored pseudonym (`lienthong keys rotate-pseudonym`).

A pseudonym is HMAC-SHA256 of an ID number (or a phone, an e-mail, a name in a quarantine
payload) under LIENTHONG_PSEUDONYM_KEY. The raw values are never stored, so a new key cannot
hash them again: a rotation re-keys what is stored, HMAC(new, stored), and from then on new
values are hashed through the whole chain, HMAC(new, HMAC(old, value)) — the same pseudonym for
the same person before and after (transforms.identity.KeyChain). The warehouse records the
fingerprint of the chain its pseudonyms are under (`ops_pseudonym_key`); a sync whose configured
chain has another fingerprint refuses before it writes a pseudonym nobody could compare.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from transforms.identity import KeyChain, pseudonymise
from warehouse.db import WRITE_LOCK_OPTION, connection_of, insert_for
from warehouse.schema import fact_dossier, ops_pseudonym_key, ops_quarantine

log = logging.getLogger(__name__)

# A masked value inside a quarantine payload (transforms.portal.payload_mask).
_MASKED = re.compile(r"hmac:([0-9a-f]{64})")
_CHUNK = 5000


class PseudonymKeyMismatch(RuntimeError):
    """The configured key chain is not the one the warehouse's pseudonyms are under."""


@dataclass(frozen=True)
class PseudonymColumn:
    """A column holding pseudonyms: the whole value (`whole`) or `hmac:<hex>` values inside JSON text."""

    table: sa.Table
    key: str
    column: str
    whole: bool

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column}"


# Every column of the warehouse that holds a pseudonym: a rotation re-keys each of them.
PSEUDONYM_COLUMNS: tuple[PseudonymColumn, ...] = (
    PseudonymColumn(fact_dossier, "dossier_code", "applicant_id_hash", whole=True),
    PseudonymColumn(ops_quarantine, "id", "payload", whole=False),
)


@dataclass(frozen=True)
class RecordedChain:
    """The key chain the warehouse records as in force (the last `ops_pseudonym_key` row)."""

    fingerprint: str
    key_count: int


@dataclass(frozen=True)
class RotationOutcome:
    """What `rotate_pseudonyms` did: the chains before and after, and the values re-keyed per column."""

    before: str | None
    after: str
    key_count: int
    rekeyed: dict[str, tuple[int, int]] = field(default_factory=dict)  # column → (rows, values)
    already: bool = False
    dry_run: bool = False

    def summary(self) -> str:
        if self.already:
            return f"nothing to re-key: the warehouse is already under key chain {self.after} ({_keys(self.key_count)})"
        counts = "; ".join(f"{name}: {values} values in {rows} rows" for name, (rows, values) in self.rekeyed.items())
        verb = "would re-key (dry run, nothing written)" if self.dry_run else "re-keyed"
        return (f"{verb} {counts}; key chain {self.before or '(none recorded)'} → {self.after} "
                f"({_keys(self.key_count)})")


def _keys(count: int) -> str:
    return f"{count} key" if count == 1 else f"{count} keys"


def recorded_chain(conn: sa.Connection) -> RecordedChain | None:
    """The chain in force as recorded, or None when none is (a warehouse never synced since 0008)."""
    row = conn.execute(sa.select(ops_pseudonym_key.c.fingerprint, ops_pseudonym_key.c.key_count)
                       .order_by(ops_pseudonym_key.c.id.desc()).limit(1)).first()
    return RecordedChain(row.fingerprint, row.key_count) if row else None


def _mismatch(recorded: RecordedChain, chain: KeyChain) -> PseudonymKeyMismatch:
    previous = chain.previous
    if previous is not None and previous.fingerprint == recorded.fingerprint:
        hint = "the configuration adds a key: run `lienthong keys rotate-pseudonym` to re-key the warehouse"
    elif recorded.key_count > len(chain.keys):
        hint = ("the warehouse was rotated to a longer chain: list every earlier key, oldest first, "
                "in LIENTHONG_PSEUDONYM_KEY_PREVIOUS")
    else:
        hint = "set the keys its pseudonyms were made with (LIENTHONG_PSEUDONYM_KEY, LIENTHONG_PSEUDONYM_KEY_PREVIOUS)"
    return PseudonymKeyMismatch(
        f"the warehouse's pseudonyms are under key chain {recorded.fingerprint} ({_keys(recorded.key_count)}), "
        f"the configuration gives {chain.fingerprint} ({_keys(len(chain.keys))}): {hint}")


def _row(chain: KeyChain, before: str | None, rekeyed: dict[str, tuple[int, int]] | None) -> dict[str, Any]:
    return {"fingerprint": chain.fingerprint, "key_count": len(chain.keys), "previous_fingerprint": before,
            "rekeyed": json.dumps({name: values for name, (_, values) in rekeyed.items()})
            if rekeyed is not None else None,
            "recorded_at": datetime.now(UTC)}


def require_key_chain(engine: sa.Engine, chain: KeyChain, *, record: bool = True) -> None:
    """Refuse (PseudonymKeyMismatch, one line naming fingerprints, never keys) unless `chain` is the
    chain the warehouse records; a warehouse recording none adopts it when `record` is true.

    The pipeline calls it before a batch opens (recording the chain on first use), and again once
    the batch's transaction is open (`record=False`, read only): a rotation committed in between is
    seen, and one starting later waits for the batch (rotate_pseudonyms locks the tables).
    """
    with connection_of(engine) as conn:
        recorded = recorded_chain(conn)
    if recorded is None and record:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_LOCK_OPTION: True})
            with conn.begin():
                # Several first syncs may start together: the first insert wins, the others read it.
                added = conn.execute(insert_for(conn)(ops_pseudonym_key).values(**_row(chain, None, None))
                                     .on_conflict_do_nothing(index_elements=["fingerprint"])).rowcount
                recorded = recorded_chain(conn)
        if added:
            log.info("pseudonyms: recorded %s as the warehouse's key chain", chain)
    if recorded is None:
        raise PseudonymKeyMismatch("the warehouse records no pseudonym key chain: sync once to record it")
    if recorded.fingerprint != chain.fingerprint:
        raise _mismatch(recorded, chain)


def rotate_pseudonyms(engine: sa.Engine, chain: KeyChain, *, dry_run: bool = False) -> RotationOutcome:
    """Re-key every stored pseudonym with the chain's newest key, in one transaction.

    The warehouse must be under the chain less its newest key (`chain.previous`): each value of
    PSEUDONYM_COLUMNS becomes HMAC(newest key, value) and the chain is recorded as in force. Run
    again, it finds the chain already in force and changes nothing; under any other chain it
    refuses (PseudonymKeyMismatch) and changes nothing. `dry_run` counts, then rolls back. On
    PostgreSQL the tables are locked against batches for the transaction (a running batch is
    waited for; a batch opening meanwhile waits, then refuses the old chain).
    """
    previous = chain.previous
    if previous is None:
        raise PseudonymKeyMismatch(
            "nothing to rotate to: put the current key(s) in LIENTHONG_PSEUDONYM_KEY_PREVIOUS (oldest first) "
            "and the new key in LIENTHONG_PSEUDONYM_KEY")
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_LOCK_OPTION: True})  # SQLite: BEGIN IMMEDIATE
        txn = conn.begin()
        try:
            outcome = _rotate(conn, chain, previous, dry_run=dry_run)
        except BaseException:
            txn.rollback()
            raise
        if dry_run or outcome.already:
            txn.rollback()
        else:
            txn.commit()
    if not outcome.already and not dry_run:
        log.info("pseudonyms: %s", outcome.summary())
    return outcome


def _rotate(conn: sa.Connection, chain: KeyChain, previous: KeyChain, *, dry_run: bool) -> RotationOutcome:
    if conn.dialect.name == "postgresql":
        tables = ", ".join(dict.fromkeys(c.table.name for c in PSEUDONYM_COLUMNS))
        # SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock an open batch holds (its
        # BatchWriter deletes the batch's old quarantine rows first) and with itself.
        conn.exec_driver_sql(f"LOCK TABLE {tables}, {ops_pseudonym_key.name} IN SHARE ROW EXCLUSIVE MODE")
    recorded = recorded_chain(conn)
    if recorded is not None and recorded.fingerprint == chain.fingerprint:
        return RotationOutcome(recorded.fingerprint, chain.fingerprint, len(chain.keys), already=True)
    if recorded is None:
        if _any_pseudonym(conn):
            raise PseudonymKeyMismatch(
                "the warehouse records no pseudonym key chain (not synced since migration 0008): sync once with "
                "the configuration of before the rotation, which records it, then rotate")
    elif recorded.fingerprint != previous.fingerprint:
        raise PseudonymKeyMismatch(
            f"the warehouse's pseudonyms are under key chain {recorded.fingerprint} ({_keys(recorded.key_count)}), "
            f"not {previous.fingerprint} (the configured chain less its newest key): nothing re-keyed; "
            "LIENTHONG_PSEUDONYM_KEY_PREVIOUS must list the keys the warehouse is under, oldest first")
    new_key = chain.current
    rekeyed = {column.name: _rekey(conn, column, new_key) for column in PSEUDONYM_COLUMNS}
    conn.execute(sa.insert(ops_pseudonym_key).values(**_row(chain, recorded.fingerprint if recorded else None,
                                                             rekeyed)))
    return RotationOutcome(recorded.fingerprint if recorded else None, chain.fingerprint, len(chain.keys),
                           rekeyed, dry_run=dry_run)


def _any_pseudonym(conn: sa.Connection) -> bool:
    for column in PSEUDONYM_COLUMNS:
        value = column.table.c[column.column]
        found = value.isnot(None) if column.whole else value.like("%hmac:%")
        if conn.execute(sa.select(sa.literal(1)).select_from(column.table).where(found).limit(1)).first():
            return True
    return False


def _rekey(conn: sa.Connection, column: PseudonymColumn, key: bytes) -> tuple[int, int]:
    """HMAC(key, value) for every pseudonym of one column; (rows changed, values re-keyed)."""
    table = column.table
    update = (sa.update(table).where(table.c[column.key] == sa.bindparam("b_key"))
              .values({column.column: sa.bindparam("b_value")}))
    rows = values = 0
    for chunk in _chunks(conn, column):
        changes: list[dict[str, Any]] = []
        for row_key, text in chunk:
            if column.whole:
                changes.append({"b_key": row_key, "b_value": pseudonymise(key, text)})
                values += 1
                continue
            found = len(_MASKED.findall(text))
            if found:
                changes.append({"b_key": row_key,
                                "b_value": _MASKED.sub(lambda m: "hmac:" + pseudonymise(key, m.group(1)), text)})
                values += found
        if changes:
            conn.execute(update, changes)
            rows += len(changes)
    return rows, values


def _chunks(conn: sa.Connection, column: PseudonymColumn) -> Iterator[list[tuple[Any, str]]]:
    """The (key, value) pairs of a column's non-empty values, by key order, a chunk at a time."""
    table = column.table
    key, value = table.c[column.key], table.c[column.column]
    wanted = value.isnot(None) if column.whole else value.like("%hmac:%")
    last: Any = None
    while True:
        query = sa.select(key, value).where(wanted).order_by(key).limit(_CHUNK)
        if last is not None:
            query = query.where(key > last)
        chunk = [(row[0], row[1]) for row in conn.execute(query)]
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0]
