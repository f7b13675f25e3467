"""Exchange packages: ops_package (published and received packages, receipts) and
ops_package_dossier (the version of each dossier last delivered to each receiver).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from warehouse.schema import ops_package, ops_package_dossier

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)  # warehouse.schema.UtcDateTime


def _column(table: sa.Table, name: str, type_: sa.types.TypeEngine[Any], **kwargs: Any) -> sa.Column[Any]:
    # comments as in warehouse/schema.py (one source for them; set on PostgreSQL, ignored by SQLite)
    return sa.Column(name, type_, comment=table.c[name].comment, **kwargs)


def upgrade() -> None:
    p = ops_package
    op.create_table(
        "ops_package",
        _column(p, "message_id", sa.String(length=32), nullable=False),
        _column(p, "direction", sa.String(length=3), nullable=False),
        _column(p, "sender", sa.String(length=16), nullable=True),
        _column(p, "receiver", sa.String(length=16), nullable=True),
        _column(p, "created_at", UTC_DATETIME, nullable=True),
        _column(p, "dossier_count", sa.Integer(), nullable=True),
        _column(p, "body_sha256", sa.String(length=64), nullable=True),
        _column(p, "key_id", sa.String(length=64), nullable=True),
        _column(p, "status", sa.String(length=16), nullable=False),
        _column(p, "reason", sa.Text(), nullable=True),
        _column(p, "path", sa.Text(), nullable=True),
        _column(p, "batch_id", sa.String(length=64), nullable=True),
        _column(p, "delivered_at", UTC_DATETIME, nullable=True),
        _column(p, "receipt", sa.Text(), nullable=True),
        _column(p, "recorded_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("direction IN ('out', 'in')", name=op.f("ck_ops_package_direction")),
        sa.CheckConstraint("status IN ('delivered', 'failed', 'accepted', 'refused')",
                           name=op.f("ck_ops_package_status")),
        sa.PrimaryKeyConstraint("message_id", "direction", name=op.f("pk_ops_package")),
        comment=p.comment,
    )
    d = ops_package_dossier
    op.create_table(
        "ops_package_dossier",
        _column(d, "receiver", sa.String(length=16), nullable=False),
        _column(d, "dossier_code", sa.String(length=64), nullable=False),
        _column(d, "digest", sa.String(length=64), nullable=False),
        _column(d, "message_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("receiver", "dossier_code", name=op.f("pk_ops_package_dossier")),
        comment=d.comment,
    )


def downgrade() -> None:
    op.drop_table("ops_package_dossier")
    op.drop_table("ops_package")
