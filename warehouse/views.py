"""Indicator views (`mart_*`), portable between SQLite and PostgreSQL, and as-of questions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from warehouse.db import connection_of


@dataclass(frozen=True)
class View:
    """One indicator view: its name, what a row means, and its SELECT."""

    name: str
    doc: str
    select: str
    # PostgreSQL only: the view reads its tables with the privileges and row-level security of
    # the querying role, not of the view's owner (warehouse/roles.py; needs PostgreSQL 15).
    security_invoker: bool = False

    def create_sql(self, dialect: str = "sqlite") -> str:
        """CREATE VIEW with the doc as a leading SQL comment (kept by SQLite in sqlite_master)."""
        comment = "\n".join(f"-- {line}" for line in self.doc.splitlines())
        options = (" WITH (security_invoker = true)"
                   if self.security_invoker and dialect == "postgresql" else "")
        return f"CREATE VIEW {self.name}{options} AS\n{comment}\n{self.select.strip()}"

    def drop_sql(self) -> str:
        return f"DROP VIEW IF EXISTS {self.name}"


# The SQL uses no date functions (they differ between dialects): every calendar value it needs is
# a stored column computed in local time by the transforms (received_month, finished_month,
# due_date, finished_date). Status groups come from dim_dossier_status, never from literals here.
VIEWS: tuple[View, ...] = (
    View(
        name="mart_dossier",
        doc="One row per dossier, without the applicant's pseudonym: what an agency's role reads "
            "(row-level security on fact_dossier shows it its own dossiers only, "
            "docs/INTERFACES.md \"Who may see what\").",
        select="""
SELECT f.dossier_code, f.procedure_code, f.agency_code, f.admin_unit_code, f.channel,
       f.applicant_type, f.status, s.status_group, f.received_at, f.due_at, f.finished_at,
       f.received_date, f.received_month, f.due_date, f.finished_date, f.finished_month,
       f.fee, f.paid_online, f.updated_at, f.source_system
FROM fact_dossier f
LEFT JOIN dim_dossier_status s ON s.code = f.status
""",
        security_invoker=True,
    ),
    View(
        name="mart_dossier_received",
        doc="Dossiers received (status group `received`: statuses 2, 4-10) per local month of "
            "receipt, agency, procedure and channel.",
        select="""
SELECT f.received_month, f.agency_code, f.procedure_code, f.channel, COUNT(*) AS dossiers
FROM fact_dossier f
JOIN dim_dossier_status s ON s.code = f.status
WHERE s.is_received
GROUP BY f.received_month, f.agency_code, f.procedure_code, f.channel
""",
    ),
    View(
        name="mart_dossier_finished",
        doc="Dossiers finished (status group `finished`: 7, 9, 10) per local month of finishing, "
            "agency and procedure; early/on_time/late compare the finish DATE with the due DATE "
            "(a dossier without a due date is in none of the three).",
        select="""
SELECT f.finished_month, f.agency_code, f.procedure_code,
       COUNT(*) AS finished,
       SUM(CASE WHEN f.finished_date < f.due_date THEN 1 ELSE 0 END) AS early,
       SUM(CASE WHEN f.finished_date = f.due_date THEN 1 ELSE 0 END) AS on_time,
       SUM(CASE WHEN f.finished_date > f.due_date THEN 1 ELSE 0 END) AS late
FROM fact_dossier f
JOIN dim_dossier_status s ON s.code = f.status
WHERE s.status_group = 'finished'
GROUP BY f.finished_month, f.agency_code, f.procedure_code
""",
    ),
    View(
        name="mart_procedure_level",
        doc="Each procedure's online-level periods, for as-of questions: on day D the procedure "
            "exists when published_on <= D and (abolished_on IS NULL or abolished_on > D), and the "
            "level holds when valid_from <= D and (valid_to IS NULL or valid_to > D).",
        select="""
SELECT p.procedure_code, p.agency_code, p.scope, p.published_on, p.abolished_on,
       l.valid_from, l.valid_to, l.online_level, l.decree42_level
FROM dim_procedure p
JOIN dim_procedure_level l ON l.procedure_code = p.procedure_code
""",
    ),
    View(
        name="mart_quarantine_summary",
        doc="Quarantined rows per batch (the per-rule breakdown is read from failed_rules, a JSON "
            "list, in Python).",
        select="""
SELECT q.batch_id, q.source, q.stream, COUNT(*) AS "rows"
FROM ops_quarantine q
GROUP BY q.batch_id, q.source, q.stream
""",
    ),
)


def create_views(conn: sa.Connection) -> None:
    """Create every indicator view (after the tables they read)."""
    for view in VIEWS:
        conn.exec_driver_sql(view.create_sql(conn.dialect.name))
        if conn.dialect.name == "postgresql":
            # COMMENT is a utility statement: it takes no bound parameters, so quote the literal.
            conn.exec_driver_sql(f"COMMENT ON VIEW {view.name} IS {_sql_string(view.doc)}")


def drop_views(conn: sa.Connection) -> None:
    """Drop every indicator view (before the tables they read)."""
    for view in reversed(VIEWS):
        conn.exec_driver_sql(view.drop_sql())


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ── as-of questions on mart_procedure_level ─────────────────────────────────────────────────────

_level = sa.table(
    "mart_procedure_level",
    sa.column("procedure_code", sa.String),
    sa.column("agency_code", sa.String),
    sa.column("published_on", sa.Date),
    sa.column("abolished_on", sa.Date),
    sa.column("valid_from", sa.Date),
    sa.column("valid_to", sa.Date),
    sa.column("online_level", sa.SmallInteger),
)


def _in_force(as_of: date) -> sa.ColumnElement[bool]:
    """The procedure exists on `as_of` and this level period covers it."""
    return sa.and_(
        _level.c.published_on <= as_of,
        sa.or_(_level.c.abolished_on.is_(None), _level.c.abolished_on > as_of),
        _level.c.valid_from <= as_of,
        sa.or_(_level.c.valid_to.is_(None), _level.c.valid_to > as_of),
    )


def procedures_by_level(conn: sa.Connection | sa.Engine, as_of: date,
                        agency_code: str | None = None) -> dict[int, int]:
    """Procedures in force on `as_of` per online level (levels with none are absent)."""
    query = (sa.select(_level.c.online_level, sa.func.count(sa.distinct(_level.c.procedure_code)))
             .where(_in_force(as_of))
             .group_by(_level.c.online_level)
             .order_by(_level.c.online_level))
    if agency_code is not None:
        query = query.where(_level.c.agency_code == agency_code)
    with connection_of(conn) as c:
        return {int(level): int(n) for level, n in c.execute(query)}


def level_on(conn: sa.Connection | sa.Engine, procedure_code: str, as_of: date) -> int | None:
    """A procedure's online level on `as_of`; None if unknown, not yet published or abolished."""
    query = (sa.select(_level.c.online_level)
             .where(_level.c.procedure_code == procedure_code, _in_force(as_of))
             .order_by(_level.c.valid_from.desc())
             .limit(1))
    with connection_of(conn) as c:
        return c.execute(query).scalar_one_or_none()
