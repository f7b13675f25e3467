"""History of the dimensions: agencies as a type-2 slowly changing dimension, as-of lookups, 2025 unit crosswalk."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

import standards
from warehouse.schema import dim_agency_version

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

# The attributes whose change opens a new version (the code and the validity are not attributes).
AGENCY_ATTRIBUTES = ("name", "name_en", "parent_code", "level", "admin_unit_code")

# Administrative-unit schemes `unit_on_scheme` answers: the units in force until 30 June 2025,
# and the units from 1 July 2025 (34 provinces, no districts).
UNIT_SCHEMES = ("legacy", "2025")


@dataclass(frozen=True)
class HistoryChange:
    """What one `record_agency_history` call did (all zero on a re-run with the same code list)."""

    opened: int = 0   # versions inserted (a new agency, or a changed attribute)
    closed: int = 0   # open versions given a valid_to (changed, or gone from the code list)
    updated: int = 0  # versions corrected in place (validity moved by the code list, same-day fix)


def local_today() -> date:
    """Today in the province (Asia/Ho_Chi_Minh): the day a change without its own date takes effect."""
    return datetime.now(LOCAL_TZ).date()


def record_agency_history(conn: sa.Connection, agencies: Iterable[Mapping[str, Any]] | None = None,
                          *, today: date | None = None) -> HistoryChange:
    """Bring `dim_agency_version` in line with the agency code list (idempotent).

    `agencies` are code-list rows (strings as in `standards/codelists/agencies.csv`, or typed
    values); default: the standard's code list. For each agency:
    - unknown so far: a version opens at its `valid_from`;
    - same attributes as its latest version: nothing, except that version's end follows the code
      list's `valid_to`;
    - a changed attribute (name, name_en, parent, level, admin unit): the latest version closes and
      a new one opens, both on the row's `valid_from` when it is later than the latest version's
      start (the change's own date), else on `today` (the seeding day);
      (a change that could only start on or after the agency's end corrects the latest
      version in place);
    - an agency gone from the code list: its version still in force is closed on `today`.
    The code list's `valid_to` is the last day in force (30 June 2025 for the units merged on
    1 July 2025); the history's `valid_to` is exclusive, as `dim_procedure_level`'s: the day after.
    """
    today = today or local_today()
    rows = standards.load_codelist("agencies") if agencies is None else agencies
    wanted = {version["agency_code"]: version for version in map(_version_of, rows)}
    latest = _latest_versions(conn)
    t = dim_agency_version
    opened = closed = updated = 0

    for code, version in wanted.items():
        last = latest.get(code)
        if last is None:
            conn.execute(sa.insert(t).values(**version, is_current=True))
            opened += 1
            continue
        attrs = {name: version[name] for name in AGENCY_ATTRIBUTES}
        key = (t.c.agency_code == code) & (t.c.valid_from == last["valid_from"])
        if attrs == {name: last[name] for name in AGENCY_ATTRIBUTES}:
            if last["valid_to"] != version["valid_to"] or not last["is_current"]:
                conn.execute(sa.update(t).where(key).values(valid_to=version["valid_to"],
                                                           is_current=True))
                updated += 1
            continue
        start = version["valid_from"] if version["valid_from"] > last["valid_from"] else today
        if start <= last["valid_from"] or (version["valid_to"] is not None
                                            and start >= version["valid_to"]):
            # Changed again on the day its latest version began, or a correction to an agency
            # the code list already ends before that day: no day to put a new version on.
            conn.execute(sa.update(t).where(key).values(**attrs, valid_to=version["valid_to"],
                                                       is_current=True))
            updated += 1
            continue
        if last["valid_to"] is None or last["valid_to"] > start:
            conn.execute(sa.update(t).where(key).values(valid_to=start, is_current=False))
            closed += 1
        else:  # it had already ended (e.g. gone from the code list, now back): keep its end
            conn.execute(sa.update(t).where(key).values(is_current=False))
        conn.execute(sa.insert(t).values(**{**version, "valid_from": start}, is_current=True))
        opened += 1

    for code, last in latest.items():
        if code in wanted or not last["is_current"]:
            continue
        end = max(today, last["valid_from"])
        if last["valid_to"] is None or last["valid_to"] > end:
            key = (t.c.agency_code == code) & (t.c.valid_from == last["valid_from"])
            conn.execute(sa.update(t).where(key).values(valid_to=end, is_current=False))
            closed += 1
        else:
            conn.execute(sa.update(t).where(t.c.agency_code == code,
                                            t.c.valid_from == last["valid_from"])
                         .values(is_current=False))
            updated += 1
    return HistoryChange(opened=opened, closed=closed, updated=updated)


def agency_on(conn: sa.Connection, agency_code: str, day: date) -> dict[str, Any] | None:
    """The agency as it stood on `day` (name, name_en, parent_code, level, admin_unit_code and the
    version's validity), or None when it did not exist that day."""
    t = dim_agency_version
    query = (sa.select(t).where(t.c.agency_code == agency_code, _in_force(day))
             .order_by(t.c.valid_from.desc()).limit(1))
    row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


def agencies_on(conn: sa.Connection, day: date) -> list[dict[str, Any]]:
    """Every agency in force on `day`, as it stood that day, ordered by agency code."""
    t = dim_agency_version
    query = sa.select(t).where(_in_force(day)).order_by(t.c.agency_code)
    return [dict(row) for row in conn.execute(query).mappings()]


def unit_on_scheme(unit_code: str, scheme: str) -> str | None:
    """The code of an administrative unit in another scheme: `"2025"` gives the unit it became on
    1 July 2025 (its successor; a district's is the new province), `"legacy"` the unit itself.

    None when the code list does not know the unit (or it has no successor).
    """
    if scheme not in UNIT_SCHEMES:
        raise ValueError(f"unknown administrative-unit scheme {scheme!r} "
                         f"(known: {', '.join(UNIT_SCHEMES)})")
    row = standards.lookup("admin_units", unit_code)
    if row is None:
        return None
    if scheme == "legacy":
        return row["unit_code"]
    return row["successor_code"] or None


def units_merged_into(successor_code: str) -> list[str]:
    """The legacy units that became `successor_code` on 1 July 2025 (sorted; empty if none)."""
    return sorted(row["unit_code"] for row in standards.load_codelist("admin_units")
                  if row["successor_code"] == successor_code)


def _in_force(day: date) -> sa.ColumnElement[bool]:
    t = dim_agency_version
    return sa.and_(t.c.valid_from <= day, sa.or_(t.c.valid_to.is_(None), t.c.valid_to > day))


def _latest_versions(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Each agency's latest version (greatest valid_from)."""
    t = dim_agency_version
    latest: dict[str, dict[str, Any]] = {}
    for row in conn.execute(sa.select(t).order_by(t.c.agency_code, t.c.valid_from)).mappings():
        latest[row["agency_code"]] = dict(row)
    return latest


def _version_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A code-list row as the values of a version (exclusive valid_to)."""
    def text(name: str) -> str | None:
        value = row.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def day(name: str) -> date | None:
        value = row.get(name)
        if value is None or isinstance(value, date):
            return value
        value = str(value).strip()
        return date.fromisoformat(value) if value else None

    code, name, start = text("agency_code"), text("name"), day("valid_from")
    if code is None or name is None or start is None or text("level") is None:
        raise ValueError(f"agency row {dict(row)!r} lacks agency_code, name, level or valid_from")
    last_day = day("valid_to")
    return {
        "agency_code": code, "valid_from": start,
        "valid_to": last_day + timedelta(days=1) if last_day is not None else None,
        "name": name, "name_en": text("name_en"), "parent_code": text("parent_code"),
        "level": int(str(row["level"]).strip()), "admin_unit_code": text("admin_unit_code"),
    }
