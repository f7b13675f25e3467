"""Lineage: fact_dossier_source, one row per source record that contributed to a dossier.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Instants: timestamptz on PostgreSQL; naive UTC text on SQLite (warehouse.schema.UtcDateTime).
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fact_dossier_source",
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("source_record_id", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("loaded_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint(
            "dossier_code", "source_system", "source_record_id",
            name=op.f("pk_fact_dossier_source"),
        ),
        comment=(
            "Lineage: every source record that contributed to a dossier (docs/reconciliation.md)"
        ),
    )
    op.create_index(
        "ix_fact_dossier_source_batch_id", "fact_dossier_source", ["batch_id"], unique=False
    )
    # Dossiers loaded before this revision: their current source record is their lineage.
    op.execute(
        "INSERT INTO fact_dossier_source (dossier_code, source_system, source_record_id, "
        "batch_id, updated_at, loaded_at) "
        "SELECT dossier_code, source_system, source_record_id, batch_id, updated_at, loaded_at "
        "FROM fact_dossier"
    )


def downgrade() -> None:
    op.drop_index("ix_fact_dossier_source_batch_id", table_name="fact_dossier_source")
    op.drop_table("fact_dossier_source")
