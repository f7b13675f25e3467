"""Who may see what on a PostgreSQL warehouse: loader, reporter and per-agency roles (row-level security).

Three kinds of NOLOGIN group roles, named with a prefix (default `lienthong_`):

- `<prefix>loader` reads and writes every warehouse table and creates the temporary staging
  tables of `warehouse.load.BatchWriter`; it sees every dossier.
- `<prefix>reporter` reads the dimensions, the facts (without `fact_dossier.applicant_id_hash`),
  `mart_indicator`, the `mart_*` views, the batch manifest and the quarantine without its
  `payload` column (what `lienthong report` reads); not the payloads, not anyone's staging tables.
  `mart_quarantine_summary` runs with its owner's rights and reads no payload.
- `<prefix>agency_<code>` (the agency code lower-cased, dots as underscores), one per agency, is a
  member of `<prefix>agency`, which reads the dimensions, `mart_dossier` and `fact_dossier` (also
  without the pseudonym). Row-level security on `fact_dossier` shows it the dossiers of the
  agencies whose role the current user holds; `mart_dossier` is a security-invoker view, so the
  same rows. One policy serves every agency: the agency code is read back from the role's name.

Login users are the DBA's: `CREATE ROLE alice LOGIN IN ROLE lienthong_agency_000_00_04_h62`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import URL

from warehouse.db import create_engine
from warehouse.indicator_sql import indicator_views
from warehouse.schema import fact_dossier, metadata, ops_batch, ops_quarantine
from warehouse.views import VIEWS

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "lienthong_"
DOSSIER_VIEW = "mart_dossier"
# Columns of fact_dossier only the loader reads (a pseudonym still links one person's dossiers).
PRIVATE_COLUMNS = frozenset({"applicant_id_hash"})

_PREFIX = re.compile(r"[a-z_][a-z0-9_]*\Z")
# The agency policy reads the code back from the role name (upper-case, "_" → "."): a code made of
# these characters survives the round trip.
_AGENCY_CODE = re.compile(r"[0-9A-Z][0-9A-Z.]*\Z")
_MAX_NAME = 63  # PostgreSQL's NAMEDATALEN - 1


class RolesNotPermitted(PermissionError):
    """The connecting user may not create roles (neither superuser nor CREATEROLE)."""


@dataclass(frozen=True)
class RoleNames:
    """The names of the warehouse roles for one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix) or len(self.agency_prefix) + 16 > _MAX_NAME:
            raise ValueError(f"role prefix {self.prefix!r}: use lower-case letters, digits and "
                             f"underscores, at most {_MAX_NAME - 16 - len('agency_')} characters")

    @property
    def loader(self) -> str:
        return f"{self.prefix}loader"

    @property
    def reporter(self) -> str:
        return f"{self.prefix}reporter"

    @property
    def agency_group(self) -> str:
        return f"{self.prefix}agency"

    @property
    def agency_prefix(self) -> str:
        return f"{self.prefix}agency_"

    def agency(self, code: str) -> str:
        """The role of one agency: `000.00.04.H62` → `<prefix>agency_000_00_04_h62`."""
        if not _AGENCY_CODE.match(code):
            raise ValueError(f"agency code {code!r}: expected digits, upper-case letters and dots")
        return f"{self.agency_prefix}{code.replace('.', '_').lower()}"


@dataclass(frozen=True)
class AppliedRoles:
    """What `apply_roles` did: `applied` is False on a database without roles (SQLite)."""

    applied: bool
    note: str
    names: RoleNames
    agency_roles: dict[str, str] = field(default_factory=dict)  # agency code → role name


def apply_roles(target: str | URL | sa.Engine | None = None,
                agencies: Iterable[str] | None = None, *,
                prefix: str = DEFAULT_PREFIX) -> AppliedRoles:
    """Create the warehouse roles if missing, reset their privileges and the row-level policies.

    `agencies` are the agency codes to make roles for (default: every `dim_agency` row). Re-running
    is safe: roles are created only when missing, privileges on the warehouse tables are revoked
    and granted again, policies replaced — all in one transaction. Roles of agencies no longer
    listed are kept. PostgreSQL only: on SQLite nothing is done and the result says so. Run it as
    the owner of the warehouse tables with CREATEROLE, or as a superuser.
    """
    names = RoleNames(prefix)
    engine = target if isinstance(target, sa.Engine) else create_engine(target)
    try:
        if engine.dialect.name != "postgresql":
            note = f"{engine.dialect.name} has no roles: nothing applied (roles are PostgreSQL only)"
            log.info(note)
            return AppliedRoles(False, note, names)
        with engine.begin() as conn:
            _check_may_create_roles(conn)
            codes = sorted(set(agencies)) if agencies is not None else _agency_codes(conn)
            agency_roles = {code: names.agency(code) for code in codes}
            _ensure_roles(conn, names, agency_roles)
            missing = _grant(conn, names)
            _apply_policies(conn, names)
    finally:
        if engine is not target:
            engine.dispose()
    note = (f"roles applied: {names.loader}, {names.reporter}, {names.agency_group} and "
            f"{len(agency_roles)} agency roles ({names.agency_prefix}…)")
    if missing:
        note += f"; views missing, not granted: {', '.join(missing)}"
        log.warning("views missing from the warehouse, not granted: %s", ", ".join(missing))
    log.info(note)
    return AppliedRoles(True, note, names, agency_roles)


def _check_may_create_roles(conn: sa.Connection) -> None:
    may = conn.execute(sa.text(
        "SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user"
    )).scalar()
    if not may:
        user = conn.execute(sa.text("SELECT current_user")).scalar()
        raise RolesNotPermitted(
            f"{user} may not create roles: run `lienthong db roles` as the owner of the warehouse "
            "tables with CREATEROLE, or as a superuser"
        )


def _agency_codes(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT agency_code FROM dim_agency ORDER BY agency_code"))
                .scalars())


def _ensure_roles(conn: sa.Connection, names: RoleNames, agency_roles: dict[str, str]) -> None:
    """CREATE ROLE … NOLOGIN for the missing ones; every agency role in the agency group."""
    q = _quoter(conn)
    existing = set(conn.execute(
        sa.text("SELECT rolname FROM pg_catalog.pg_roles WHERE starts_with(rolname, :prefix)"),
        {"prefix": names.prefix},
    ).scalars())
    comments = {
        names.loader: "lienthong: loads the warehouse (every table, every dossier)",
        names.reporter: "lienthong: reads dimensions, facts and marts; no ops_* table",
        names.agency_group: "lienthong: an agency's dossiers only (row-level security)",
    }
    comments.update({role: f"lienthong: the dossiers of agency {code}"
                     for code, role in agency_roles.items()})
    for role, comment in comments.items():
        if role not in existing:
            conn.exec_driver_sql(f"CREATE ROLE {q(role)} NOLOGIN")
        conn.exec_driver_sql(f"COMMENT ON ROLE {q(role)} IS {_literal(comment)}")
    if agency_roles:
        members = ", ".join(q(role) for role in agency_roles.values())
        conn.exec_driver_sql(f"GRANT {q(names.agency_group)} TO {members}")


def _grant(conn: sa.Connection, names: RoleNames) -> list[str]:
    """Revoke everything the three group roles hold on the warehouse, then grant what each needs.

    Returns the views (warehouse.views and the indicator views) missing from the database (not granted);
    tables of the metadata not yet migrated are skipped as well.
    """
    q = _quoter(conn)
    loader, reporter, agency = q(names.loader), q(names.reporter), q(names.agency_group)
    everyone = f"{loader}, {reporter}, {agency}"
    schema = q(conn.execute(sa.text("SELECT current_schema()")).scalar_one())
    database = q(conn.execute(sa.text("SELECT current_database()")).scalar_one())

    inspector = sa.inspect(conn)
    present = set(inspector.get_view_names())
    # the hand-written views and the indicator standard's generated mart_<id> views (migration 0005)
    known = [view.name for view in (*VIEWS, *indicator_views())]
    views = [name for name in known if name in present]
    missing = [name for name in known if name not in present]
    existing_tables = set(inspector.get_table_names())
    tables = [name for name in metadata.tables if name in existing_tables]
    readable = [t for t in tables if t.startswith(("dim_", "fact_", "mart_")) and t != fact_dossier.name]
    dims = [t for t in tables if t.startswith("dim_")]
    public_columns = ", ".join(q(c.name) for c in fact_dossier.columns if c.name not in PRIVATE_COLUMNS)
    rule_columns = ", ".join(q(c.name) for c in ops_quarantine.columns if c.name != "payload")

    def on(objects: Iterable[str]) -> str:
        return ", ".join(q(name) for name in objects)

    statements = [
        f"GRANT CONNECT ON DATABASE {database} TO {everyone}",
        f"GRANT TEMPORARY ON DATABASE {database} TO {loader}",  # the BatchWriter's staging tables
        f"GRANT USAGE ON SCHEMA {schema} TO {everyone}",
        f"REVOKE ALL ON TABLE {on([*tables, *views, 'alembic_version'])} FROM {everyone}",
        # loader: the BatchWriter, the mart refresh, and warehouse.db.upgrade() at head (it reads
        # alembic_version and re-seeds the code lists), as the pipeline calls it before a sync.
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {on(tables)} TO {loader}",
        f"GRANT SELECT ON TABLE {on([*views, 'alembic_version'])} TO {loader}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {loader}",
        # reporter: no quarantine payload, no applicant pseudonym, no staging or sync state; the
        # batch manifest and the quarantine's rule lists feed `lienthong report`.
        f"GRANT SELECT ON TABLE {on([*readable, *views, ops_batch.name])} TO {reporter}",
        f"GRANT SELECT ({public_columns}) ON TABLE {q(fact_dossier.name)} TO {reporter}",
        f"GRANT SELECT ({rule_columns}) ON TABLE {q(ops_quarantine.name)} TO {reporter}",
        # agencies: the code lists and their own dossiers. Not the other mart_* views: they run
        # with their owner's rights, which row-level security does not restrict.
        f"GRANT SELECT ({public_columns}) ON TABLE {q(fact_dossier.name)} TO {agency}",
    ]
    agency_reads = dims + ([DOSSIER_VIEW] if DOSSIER_VIEW in present else [])
    statements.append(f"GRANT SELECT ON TABLE {on(agency_reads)} TO {agency}")
    for statement in statements:
        conn.exec_driver_sql(statement)
    return missing


def _apply_policies(conn: sa.Connection, names: RoleNames) -> None:
    """Row-level security on fact_dossier: loader and reporter all rows, an agency its own.

    The agency policy is one for every agency: the codes the current user may read are those of
    the `<prefix>agency_*` roles whose privileges it holds (pg_has_role … USAGE: a member that
    inherits, or after SET ROLE), read back from the role names. The subquery does not depend on
    the row, so PostgreSQL evaluates it once per query and can use the agency_code index.
    """
    q = _quoter(conn)
    table = q(fact_dossier.name)
    start = len(names.agency_prefix) + 1
    own_agencies = (
        f"SELECT upper(replace(substr(r.rolname, {start}), '_', '.')) "
        f"FROM pg_catalog.pg_roles r "
        f"WHERE starts_with(r.rolname, {_literal(names.agency_prefix)}) "
        f"AND pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')"
    )
    policies = {
        names.loader: f"FOR ALL TO {q(names.loader)} USING (true) WITH CHECK (true)",
        names.reporter: f"FOR SELECT TO {q(names.reporter)} USING (true)",
        names.agency_group: f"FOR SELECT TO {q(names.agency_group)} "
                            f"USING (agency_code IN ({own_agencies}))",
    }
    conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    for name, body in policies.items():
        conn.exec_driver_sql(f"DROP POLICY IF EXISTS {q(name)} ON {table}")
        conn.exec_driver_sql(f"CREATE POLICY {q(name)} ON {table} {body}")


def _quoter(conn: sa.Connection) -> Callable[[str], str]:
    return conn.dialect.identifier_preparer.quote


def _literal(text: str) -> str:
    """A SQL string literal, for utility statements (COMMENT) that take no bound parameters."""
    return "'" + text.replace("'", "''") + "'"
