"""Push to the national portal: ops_push, one row per dossier sent (exchange/push.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from warehouse.schema import ops_push

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Instants: timestamptz on PostgreSQL; naive UTC text on SQLite (warehouse.schema.UtcDateTime).
UTC_DATETIME = sa.DateTime(timezone=True)


def _comment(column: str) -> str | None:
    # The bilingual comments are schema.py's (as 0004 sets them): one text, not two copies.
    return ops_push.c[column].comment


def upgrade() -> None:
    op.create_table(
        "ops_push",
        sa.Column("dossier_code", sa.String(length=64), nullable=False,
                  comment=_comment("dossier_code")),
        sa.Column("pushed_updated_at", UTC_DATETIME, nullable=True,
                  comment=_comment("pushed_updated_at")),
        sa.Column("attempted_updated_at", UTC_DATETIME, nullable=True,
                  comment=_comment("attempted_updated_at")),
        sa.Column("on_portal", sa.Boolean(), nullable=False, comment=_comment("on_portal")),
        sa.Column("status", sa.String(length=16), nullable=False, comment=_comment("status")),
        sa.Column("error_code", sa.String(length=8), nullable=True,
                  comment=_comment("error_code")),
        sa.Column("message", sa.Text(), nullable=True, comment=_comment("message")),
        sa.Column("attempts", sa.Integer(), nullable=False, comment=_comment("attempts")),
        sa.Column("last_attempt_at", UTC_DATETIME, nullable=False,
                  comment=_comment("last_attempt_at")),
        sa.CheckConstraint("status IN ('accepted', 'rejected')", name=op.f("ck_ops_push_status")),
        sa.PrimaryKeyConstraint("dossier_code", name=op.f("pk_ops_push")),
        comment=ops_push.comment,
    )


def downgrade() -> None:
    op.drop_table("ops_push")
