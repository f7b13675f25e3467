"""The warehouse's tables: the one SQLAlchemy MetaData (dimensions, facts, operations, marts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.types.TypeDecorator):
    """A timezone-aware instant stored as UTC: timestamptz on PostgreSQL, naive UTC text on SQLite.

    Binding a naive datetime is an error (its instant is unknown); reading always gives an aware
    UTC datetime, whatever the dialect or the session time zone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the warehouse stores instants, "
                             "give a time zone")
        value = value.astimezone(UTC)
        if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
            value = value.to_pydatetime()
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Column sizes shared by several tables.
AGENCY_CODE = sa.String(16)     # 000.00.00.H62
UNIT_CODE = sa.String(5)        # GSO: 2, 3 or 5 digits
PROCEDURE_CODE = sa.String(40)  # 1.003560.000.00.00.H56.01
DOSSIER_CODE = sa.String(64)
BATCH_ID = sa.String(64)
SOURCE = sa.String(64)
MONTH = sa.String(7)            # YYYY-MM (local calendar)
MONEY = sa.Numeric(14, 2)


# ── code-list dimensions (seeded from standards/codelists by db.upgrade) ────────────────────────

dim_dossier_status = sa.Table(
    "dim_dossier_status", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("name_vi", sa.Text, nullable=False),
    sa.Column("name_en", sa.Text),
    sa.Column("status_group", sa.String(16), nullable=False),
    # The report group `received` spans several status groups (every one but not_received).
    sa.Column("is_received", sa.Boolean, nullable=False),
    comment="TrangThaiHoSo with its report group",
)

dim_channel = sa.Table(
    "dim_channel", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("name_vi", sa.Text, nullable=False),
    sa.Column("name_en", sa.Text),
    comment="KenhThucHien",
)

dim_applicant_type = sa.Table(
    "dim_applicant_type", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("name_vi", sa.Text, nullable=False),
    sa.Column("name_en", sa.Text),
    comment="LoaiDoiTuong",
)

dim_online_level = sa.Table(
    "dim_online_level", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("name_vi", sa.Text, nullable=False),
    sa.Column("name_en", sa.Text),
    sa.Column("decree_43_level", sa.SmallInteger),
    sa.Column("decree_42_level", sa.String(16)),
    sa.Column("is_online", sa.Boolean, nullable=False),
    comment="Online service levels: Decree 43/2011 levels 1-4 and their Decree 42/2022 equivalent",
)

dim_agency = sa.Table(
    "dim_agency", metadata,
    sa.Column("agency_code", AGENCY_CODE, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_en", sa.Text),
    sa.Column("parent_code", AGENCY_CODE),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("admin_unit_code", UNIT_CODE),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date),
    comment="Agencies (Decision 20/2020, QCVN 102 codes)",
)

dim_agency_version = sa.Table(
    "dim_agency_version", metadata,
    sa.Column("agency_code", AGENCY_CODE, primary_key=True),
    sa.Column("valid_from", sa.Date, primary_key=True),
    sa.Column("valid_to", sa.Date),  # exclusive; NULL = still in force
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_en", sa.Text),
    sa.Column("parent_code", AGENCY_CODE),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("admin_unit_code", UNIT_CODE),
    sa.Column("is_current", sa.Boolean, nullable=False),
    comment="SCD type 2 agencies (warehouse/history.py): a version holds on D if "
            "valid_from <= D < coalesce(valid_to, ∞)",
)

dim_admin_unit = sa.Table(
    "dim_admin_unit", metadata,
    sa.Column("unit_code", UNIT_CODE, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("unit_type", sa.String(16), nullable=False),
    sa.Column("type_name", sa.Text),
    sa.Column("parent_code", UNIT_CODE),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date),
    sa.Column("successor_code", UNIT_CODE),
    sa.Column("successor_name", sa.Text),
    comment="Administrative units (GSO codes) with their 1 July 2025 successors",
)

# ── loaded dimensions ───────────────────────────────────────────────────────────────────────────

dim_procedure = sa.Table(
    "dim_procedure", metadata,
    sa.Column("procedure_code", PROCEDURE_CODE, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("field_code", sa.String(32), nullable=False),
    sa.Column("field_name", sa.Text),
    sa.Column("agency_code", AGENCY_CODE, nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("fee", MONEY),
    sa.Column("processing_days", sa.Integer),
    sa.Column("published_on", sa.Date, nullable=False),
    sa.Column("abolished_on", sa.Date),
    sa.Column("source_system", SOURCE, nullable=False),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    comment="Procedure catalogue, current state",
)

dim_procedure_level = sa.Table(
    "dim_procedure_level", metadata,
    sa.Column("procedure_code", PROCEDURE_CODE, primary_key=True),
    sa.Column("valid_from", sa.Date, primary_key=True),
    sa.Column("valid_to", sa.Date),  # exclusive; NULL = still in force
    sa.Column("online_level", sa.SmallInteger, nullable=False),
    sa.Column("decree42_level", sa.String(16)),  # toan_trinh | mot_phan | NULL (not online)
    sa.Column("is_current", sa.Boolean, nullable=False),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    comment="SCD type 2 online level: in force on D if valid_from <= D < coalesce(valid_to, ∞)",
)

# ── facts ───────────────────────────────────────────────────────────────────────────────────────

fact_dossier = sa.Table(
    "fact_dossier", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True),
    sa.Column("procedure_code", PROCEDURE_CODE, nullable=False),
    sa.Column("agency_code", AGENCY_CODE, nullable=False),
    sa.Column("admin_unit_code", UNIT_CODE),
    sa.Column("procedure_name", sa.Text),
    sa.Column("summary", sa.Text),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("applicant_type", sa.SmallInteger, nullable=False),
    sa.Column("applicant_id_hash", sa.String(64)),
    sa.Column("applicant_id_type", sa.SmallInteger),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("returned_at", UtcDateTime),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("fee", MONEY),
    sa.Column("paid_online", sa.SmallInteger),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("source_system", SOURCE, nullable=False),
    sa.Column("source_record_id", sa.String(128), nullable=False),
    # Local-calendar (Asia/Ho_Chi_Minh) derivations, stored so the views need no date functions.
    sa.Column("received_date", sa.Date),
    sa.Column("received_month", MONTH),
    sa.Column("due_date", sa.Date),
    sa.Column("finished_date", sa.Date),
    sa.Column("finished_month", MONTH),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    sa.Column("loaded_at", UtcDateTime, nullable=False),
    sa.Index("ix_fact_dossier_agency_month", "agency_code", "received_month"),
    sa.Index("ix_fact_dossier_procedure_month", "procedure_code", "received_month"),
    sa.Index("ix_fact_dossier_finished_month", "finished_month"),
    comment="Dossiers, current state (one row per dossier_code)",
)

fact_dossier_source = sa.Table(
    "fact_dossier_source", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True),
    sa.Column("source_system", SOURCE, primary_key=True),
    sa.Column("source_record_id", sa.String(128), primary_key=True),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("loaded_at", UtcDateTime, nullable=False),
    sa.Index("ix_fact_dossier_source_batch_id", "batch_id"),
    comment="Lineage: every source record that contributed to a dossier (docs/reconciliation.md)",
)

fact_dossier_event = sa.Table(
    "fact_dossier_event", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    comment="Dossier processing steps (QuaTrinhXuLy)",
)

fact_service_stat = sa.Table(
    "fact_service_stat", metadata,
    sa.Column("commune_code", UNIT_CODE, primary_key=True),
    sa.Column("month", MONTH, primary_key=True),
    sa.Column("procedure_code", PROCEDURE_CODE, primary_key=True),
    sa.Column("received", sa.Integer, nullable=False),
    sa.Column("online", sa.Integer, nullable=False),
    sa.Column("on_time", sa.Integer, nullable=False),
    sa.Column("late", sa.Integer, nullable=False),
    sa.Column("pending", sa.Integer, nullable=False),
    sa.Column("source_file", sa.Text),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    sa.Column("loaded_at", UtcDateTime, nullable=False),
    sa.Index("ix_fact_service_stat_month", "month"),
    comment="Communes' monthly reports (file drops): the latest report of a commune-month replaces "
            "the earlier one's rows",
)

fact_service_report = sa.Table(
    "fact_service_report", metadata,
    sa.Column("commune_code", UNIT_CODE, primary_key=True),
    sa.Column("month", MONTH, primary_key=True),
    sa.Column("source_file", sa.Text),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    sa.Column("loaded_at", UtcDateTime, nullable=False),
    comment="One row per commune-month whose report is loaded (even a report with no procedure "
            "row): the commune-months reconciled with the dossiers",
)

# ── operations ──────────────────────────────────────────────────────────────────────────────────

BATCH_STATUSES = ("running", "loaded", "failed")

ops_batch = sa.Table(
    "ops_batch", metadata,
    sa.Column("batch_id", BATCH_ID, primary_key=True),
    sa.Column("source", SOURCE, nullable=False),
    sa.Column("stream", SOURCE, nullable=False),
    sa.Column("entity", sa.String(32), nullable=False),
    sa.Column("window_start", UtcDateTime),
    sa.Column("window_end", UtcDateTime),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False),
    sa.Column("rows_loaded", sa.Integer, nullable=False),
    sa.Column("rows_quarantined", sa.Integer, nullable=False),
    sa.Column("rows_deduplicated", sa.Integer, nullable=False),
    sa.Column("checksum", sa.String(64)),
    sa.Column("watermark", UtcDateTime),
    sa.Column("error", sa.Text),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.CheckConstraint("status IN ('running', 'loaded', 'failed')", name="status"),
    sa.Index("ix_ops_batch_source_stream", "source", "stream"),
    comment="Batch manifest: one row per batch_id, replaced by a re-run",
)

ops_quarantine = sa.Table(
    "ops_quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", BATCH_ID, nullable=False),
    sa.Column("source", SOURCE, nullable=False),
    sa.Column("stream", SOURCE, nullable=False),
    sa.Column("record_key", sa.Text),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("failed_rules", sa.Text, nullable=False),  # JSON list of rule ids
    sa.Column("payload", sa.Text),                       # JSON source record, identifiers masked
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("batch_id", "row_number"),
    comment="Rows that failed a quality rule, with every failed rule",
)

ops_sync_state = sa.Table(
    "ops_sync_state", metadata,
    sa.Column("source", SOURCE, primary_key=True),
    sa.Column("stream", SOURCE, primary_key=True),
    sa.Column("watermark", UtcDateTime),
    sa.Column("last_batch_id", BATCH_ID),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    comment="Incremental sync state: the greatest replication-key value loaded per stream",
)

# ── marts ───────────────────────────────────────────────────────────────────────────────────────

mart_indicator = sa.Table(
    "mart_indicator", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("indicator", sa.String(64), nullable=False),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("agency_code", AGENCY_CODE),
    sa.Column("group_code", sa.String(64)),
    sa.Column("dimension", sa.String(64)),
    sa.Column("value", sa.Numeric),
    sa.Column("unit", sa.String(16)),
    sa.Column("refreshed_at", UtcDateTime, nullable=False),
    sa.Index("ix_mart_indicator_indicator_period", "indicator", "period"),
    comment="Standard report indicators, materialised by the report code",
)

# Code-list dimensions and the standard code list each is seeded from.
CODELIST_TABLES: dict[str, sa.Table] = {
    "dossier_status": dim_dossier_status,
    "channel": dim_channel,
    "applicant_type": dim_applicant_type,
    "online_level": dim_online_level,
    "agencies": dim_agency,
    "admin_units": dim_admin_unit,
}

# The table an entity's good rows are upserted into, by the BatchWriter.
ENTITY_TABLES: dict[str, sa.Table] = {
    "dossier": fact_dossier,
    "procedure": dim_procedure,
    "service_stat": fact_service_stat,
}
