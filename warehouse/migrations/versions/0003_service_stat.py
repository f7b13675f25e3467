"""Communes' monthly reports: fact_service_stat (per commune, month, procedure), fact_service_report.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Instants: timestamptz on PostgreSQL; naive UTC text on SQLite (warehouse.schema.UtcDateTime).
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fact_service_stat",
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("procedure_code", sa.String(length=40), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("online", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint(
            "commune_code", "month", "procedure_code", name=op.f("pk_fact_service_stat")
        ),
        comment=(
            "Communes' monthly reports (file drops): the latest report of a commune-month "
            "replaces the earlier one's rows"
        ),
    )
    op.create_index("ix_fact_service_stat_month", "fact_service_stat", ["month"], unique=False)
    op.create_table(
        "fact_service_report",
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("commune_code", "month", name=op.f("pk_fact_service_report")),
        comment=(
            "One row per commune-month whose report is loaded (even a report with no procedure "
            "row): the commune-months reconciled with the dossiers"
        ),
    )


def downgrade() -> None:
    op.drop_table("fact_service_report")
    op.drop_index("ix_fact_service_stat_month", table_name="fact_service_stat")
    op.drop_table("fact_service_stat")
