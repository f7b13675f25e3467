"""Agency history: dim_agency_version (SCD type 2); bilingual table and column comments on PostgreSQL.

dim_agency stays the current state (every join by agency_code keeps working); the versions are
filled from it here, then kept by the seeding (warehouse/history.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from warehouse.schema import metadata

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AGENCY_COLUMNS = {  # typed, so SQLite's date text is read back as dates
    "agency_code": sa.String, "name": sa.Text, "name_en": sa.Text, "parent_code": sa.String,
    "level": sa.SmallInteger, "admin_unit_code": sa.String, "valid_from": sa.Date,
    "valid_to": sa.Date,
}


def upgrade() -> None:
    version = op.create_table(
        "dim_agency_version",
        sa.Column("agency_code", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("parent_code", sa.String(length=16), nullable=True),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("admin_unit_code", sa.String(length=5), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("agency_code", "valid_from", name=op.f("pk_dim_agency_version")),
        comment=("SCD type 2 agencies (warehouse/history.py): a version holds on D if "
                 "valid_from <= D < coalesce(valid_to, ∞)"),
    )
    bind = op.get_bind()
    # One version per agency already known. dim_agency.valid_to is the code list's last day in
    # force; a version's valid_to is exclusive (as dim_procedure_level's): the day after.
    agency = sa.table("dim_agency", *(sa.column(n, t) for n, t in _AGENCY_COLUMNS.items()))
    rows = [dict(row) for row in bind.execute(sa.select(agency)).mappings()]
    for row in rows:
        row["valid_to"] = row["valid_to"] + timedelta(days=1) if row["valid_to"] else None
        row["is_current"] = True
    if rows:
        op.bulk_insert(version, rows)
    _set_comments(bind, drop=False)


def downgrade() -> None:
    op.drop_table("dim_agency_version")
    _set_comments(op.get_bind(), drop=True)


def _set_comments(bind: sa.Connection, *, drop: bool) -> None:
    """PostgreSQL keeps comments in its catalogue: set the bilingual ("vi / en") table and column
    comments of warehouse/schema.py, for the tables and columns that exist at this revision; or,
    going down, drop the column comments and put back the English table comments of 0001-0003.
    SQLite has no comments. A later change of a comment in schema.py needs a revision doing this.
    """
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        if table.comment:
            english = table.comment.partition(" / ")[2] or table.comment
            text = english if drop else table.comment
            bind.exec_driver_sql(f"COMMENT ON TABLE {table.name} IS {_sql_string(text)}")
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                continue
            if drop or not column.comment:
                bind.execute(sa.schema.DropColumnComment(column))
            else:
                bind.execute(sa.schema.SetColumnComment(column))


def _sql_string(text: str) -> str:
    # COMMENT is a utility statement: it takes no bound parameters, so quote the literal.
    return "'" + text.replace("'", "''") + "'"
