"""Citizens' data: ops_pseudonym_key, the pseudonym key chain in force and its rotations
(warehouse/pseudonym.py). Empty until the first sync records the configured chain.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from warehouse.schema import ops_pseudonym_key

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Instants: timestamptz on PostgreSQL; naive UTC text on SQLite (warehouse.schema.UtcDateTime).
UTC_DATETIME = sa.DateTime(timezone=True)


def _comment(column: str) -> str | None:
    # The bilingual comments are schema.py's (as 0007 sets them): one text, not two copies.
    return ops_pseudonym_key.c[column].comment


def upgrade() -> None:
    op.create_table(
        "ops_pseudonym_key",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False, comment=_comment("id")),
        sa.Column("fingerprint", sa.String(length=16), nullable=False, comment=_comment("fingerprint")),
        sa.Column("key_count", sa.SmallInteger(), nullable=False, comment=_comment("key_count")),
        sa.Column("previous_fingerprint", sa.String(length=16), nullable=True,
                  comment=_comment("previous_fingerprint")),
        sa.Column("rekeyed", sa.Text(), nullable=True, comment=_comment("rekeyed")),
        sa.Column("recorded_at", UTC_DATETIME, nullable=False, comment=_comment("recorded_at")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_pseudonym_key")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_ops_pseudonym_key_fingerprint")),
        comment=ops_pseudonym_key.comment,
    )


def downgrade() -> None:
    op.drop_table("ops_pseudonym_key")
