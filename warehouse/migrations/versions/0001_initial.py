"""Initial warehouse: dimensions, facts, operations tables, mart_indicator and the indicator views.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from warehouse import views

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Instants: timestamptz on PostgreSQL; naive UTC text on SQLite (warehouse.schema.UtcDateTime).
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dim_admin_unit",
        sa.Column("unit_code", sa.String(length=5), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit_type", sa.String(length=16), nullable=False),
        sa.Column("type_name", sa.Text(), nullable=True),
        sa.Column("parent_code", sa.String(length=5), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("successor_code", sa.String(length=5), nullable=True),
        sa.Column("successor_name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("unit_code", name=op.f("pk_dim_admin_unit")),
        comment="Administrative units (GSO codes) with their 1 July 2025 successors",
    )
    op.create_table(
        "dim_agency",
        sa.Column("agency_code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("parent_code", sa.String(length=16), nullable=True),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("admin_unit_code", sa.String(length=5), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("agency_code", name=op.f("pk_dim_agency")),
        comment="Agencies (Decision 20/2020, QCVN 102 codes)",
    )
    op.create_table(
        "dim_applicant_type",
        sa.Column("code", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("name_vi", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_dim_applicant_type")),
        comment="LoaiDoiTuong",
    )
    op.create_table(
        "dim_channel",
        sa.Column("code", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("name_vi", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_dim_channel")),
        comment="KenhThucHien",
    )
    op.create_table(
        "dim_dossier_status",
        sa.Column("code", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("name_vi", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("status_group", sa.String(length=16), nullable=False),
        sa.Column("is_received", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_dim_dossier_status")),
        comment="TrangThaiHoSo with its report group",
    )
    op.create_table(
        "dim_online_level",
        sa.Column("code", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("name_vi", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("decree_43_level", sa.SmallInteger(), nullable=True),
        sa.Column("decree_42_level", sa.String(length=16), nullable=True),
        sa.Column("is_online", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_dim_online_level")),
        comment=(
            "Online service levels: Decree 43/2011 levels 1-4 and their Decree 42/2022 equivalent"
        ),
    )
    op.create_table(
        "dim_procedure",
        sa.Column("procedure_code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("field_code", sa.String(length=32), nullable=False),
        sa.Column("field_name", sa.Text(), nullable=True),
        sa.Column("agency_code", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("fee", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("processing_days", sa.Integer(), nullable=True),
        sa.Column("published_on", sa.Date(), nullable=False),
        sa.Column("abolished_on", sa.Date(), nullable=True),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("procedure_code", name=op.f("pk_dim_procedure")),
        comment="Procedure catalogue, current state",
    )
    op.create_table(
        "dim_procedure_level",
        sa.Column("procedure_code", sa.String(length=40), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("online_level", sa.SmallInteger(), nullable=False),
        sa.Column("decree42_level", sa.String(length=16), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "procedure_code", "valid_from", name=op.f("pk_dim_procedure_level")
        ),
        comment="SCD type 2 online level: in force on D if valid_from <= D < coalesce(valid_to, ∞)",
    )
    op.create_table(
        "fact_dossier",
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("procedure_code", sa.String(length=40), nullable=False),
        sa.Column("agency_code", sa.String(length=16), nullable=False),
        sa.Column("admin_unit_code", sa.String(length=5), nullable=True),
        sa.Column("procedure_name", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("applicant_type", sa.SmallInteger(), nullable=False),
        sa.Column("applicant_id_hash", sa.String(length=64), nullable=True),
        sa.Column("applicant_id_type", sa.SmallInteger(), nullable=True),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        sa.Column("due_at", UTC_DATETIME, nullable=True),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("returned_at", UTC_DATETIME, nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("fee", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("paid_online", sa.SmallInteger(), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("source_record_id", sa.String(length=128), nullable=False),
        sa.Column("received_date", sa.Date(), nullable=True),
        sa.Column("received_month", sa.String(length=7), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("finished_date", sa.Date(), nullable=True),
        sa.Column("finished_month", sa.String(length=7), nullable=True),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("dossier_code", name=op.f("pk_fact_dossier")),
        comment="Dossiers, current state (one row per dossier_code)",
    )
    op.create_index(
        "ix_fact_dossier_agency_month",
        "fact_dossier",
        ["agency_code", "received_month"],
        unique=False,
    )
    op.create_index(
        "ix_fact_dossier_finished_month", "fact_dossier", ["finished_month"], unique=False
    )
    op.create_index(
        "ix_fact_dossier_procedure_month",
        "fact_dossier",
        ["procedure_code", "received_month"],
        unique=False,
    )
    op.create_table(
        "fact_dossier_event",
        sa.Column("dossier_code", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("occurred_at", UTC_DATETIME, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("dossier_code", "seq", name=op.f("pk_fact_dossier_event")),
        comment="Dossier processing steps (QuaTrinhXuLy)",
    )
    op.create_table(
        "mart_indicator",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("indicator", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("agency_code", sa.String(length=16), nullable=True),
        sa.Column("group_code", sa.String(length=64), nullable=True),
        sa.Column("dimension", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Numeric(), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=True),
        sa.Column("refreshed_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mart_indicator")),
        comment="Standard report indicators, materialised by the report code",
    )
    op.create_index(
        "ix_mart_indicator_indicator_period",
        "mart_indicator",
        ["indicator", "period"],
        unique=False,
    )
    op.create_table(
        "ops_batch",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("window_start", UTC_DATETIME, nullable=True),
        sa.Column("window_end", UTC_DATETIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("rows_quarantined", sa.Integer(), nullable=False),
        sa.Column("rows_deduplicated", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("watermark", UTC_DATETIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'loaded', 'failed')", name=op.f("ck_ops_batch_status")
        ),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_ops_batch")),
        comment="Batch manifest: one row per batch_id, replaced by a re-run",
    )
    op.create_index("ix_ops_batch_source_stream", "ops_batch", ["source", "stream"], unique=False)
    op.create_table(
        "ops_quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.Text(), nullable=True),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("failed_rules", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_quarantine")),
        sa.UniqueConstraint(
            "batch_id", "row_number", name=op.f("uq_ops_quarantine_batch_id_row_number")
        ),
        comment="Rows that failed a quality rule, with every failed rule",
    )
    op.create_table(
        "ops_sync_state",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("watermark", UTC_DATETIME, nullable=True),
        sa.Column("last_batch_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("source", "stream", name=op.f("pk_ops_sync_state")),
        comment="Incremental sync state: the greatest replication-key value loaded per stream",
    )
    # The views of this revision (warehouse/views.py). A later change to a view needs its own
    # revision that drops and re-creates it.
    views.create_views(op.get_bind())


def downgrade() -> None:
    views.drop_views(op.get_bind())
    op.drop_table("ops_sync_state")
    op.drop_table("ops_quarantine")
    op.drop_index("ix_ops_batch_source_stream", table_name="ops_batch")
    op.drop_table("ops_batch")
    op.drop_index("ix_mart_indicator_indicator_period", table_name="mart_indicator")
    op.drop_table("mart_indicator")
    op.drop_table("fact_dossier_event")
    op.drop_index("ix_fact_dossier_procedure_month", table_name="fact_dossier")
    op.drop_index("ix_fact_dossier_finished_month", table_name="fact_dossier")
    op.drop_index("ix_fact_dossier_agency_month", table_name="fact_dossier")
    op.drop_table("fact_dossier")
    op.drop_table("dim_procedure_level")
    op.drop_table("dim_procedure")
    op.drop_table("dim_online_level")
    op.drop_table("dim_dossier_status")
    op.drop_table("dim_channel")
    op.drop_table("dim_applicant_type")
    op.drop_table("dim_agency")
    op.drop_table("dim_admin_unit")
