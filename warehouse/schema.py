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
BATCH_ID_LENGTH = 64
BATCH_ID = sa.String(BATCH_ID_LENGTH)
SOURCE = sa.String(64)
MONTH = sa.String(7)            # YYYY-MM (local calendar)
MONEY = sa.Numeric(14, 2)


# ── code-list dimensions (seeded from standards/codelists by db.upgrade) ────────────────────────

dim_dossier_status = sa.Table(
    "dim_dossier_status", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False,
              comment="Mã trạng thái hồ sơ (TrangThaiHoSo, 1-10) / Dossier status code (TrangThaiHoSo, 1-10)"),
    sa.Column("name_vi", sa.Text, nullable=False,
              comment="Tên trạng thái bằng tiếng Việt / Status name in Vietnamese"),
    sa.Column("name_en", sa.Text,
              comment="Tên trạng thái bằng tiếng Anh / Status name in English"),
    sa.Column("status_group", sa.String(16), nullable=False,
              comment=("Nhóm báo cáo: in_progress, finished, paused, not_received / Report group: in_progress, "
                       "finished, paused, not_received")),
    # The report group `received` spans several status groups (every one but not_received).
    sa.Column("is_received", sa.Boolean, nullable=False,
              comment=("Hồ sơ đã được tiếp nhận (mọi nhóm trừ not_received) / The dossier counts as received (every "
                       "group but not_received)")),
    comment="Trạng thái hồ sơ (TrangThaiHoSo) và nhóm báo cáo / TrangThaiHoSo with its report group",
)

dim_channel = sa.Table(
    "dim_channel", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False,
              comment=("Mã kênh thực hiện (KenhThucHien): 1 trực tiếp, 2 trực tuyến, 3 bưu chính công ích / Channel "
                       "code (KenhThucHien): 1 in person, 2 online, 3 public post")),
    sa.Column("name_vi", sa.Text, nullable=False,
              comment="Tên kênh bằng tiếng Việt / Channel name in Vietnamese"),
    sa.Column("name_en", sa.Text,
              comment="Tên kênh bằng tiếng Anh / Channel name in English"),
    comment="Kênh thực hiện (KenhThucHien) / KenhThucHien",
)

dim_applicant_type = sa.Table(
    "dim_applicant_type", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False,
              comment=("Mã loại đối tượng (LoaiDoiTuong): 1 công dân, 2 doanh nghiệp, 3 cơ quan nhà nước, 4 tổ chức "
                       "khác / Applicant type code (LoaiDoiTuong): 1 citizen, 2 business, 3 state agency, 4 other "
                       "organisation")),
    sa.Column("name_vi", sa.Text, nullable=False,
              comment="Tên loại đối tượng bằng tiếng Việt / Applicant type name in Vietnamese"),
    sa.Column("name_en", sa.Text,
              comment="Tên loại đối tượng bằng tiếng Anh / Applicant type name in English"),
    comment="Loại đối tượng (LoaiDoiTuong) / LoaiDoiTuong",
)

dim_online_level = sa.Table(
    "dim_online_level", metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False,
              comment="Mức độ dịch vụ công trực tuyến (1-4) / Online service level (1-4)"),
    sa.Column("name_vi", sa.Text, nullable=False,
              comment="Tên mức độ bằng tiếng Việt / Level name in Vietnamese"),
    sa.Column("name_en", sa.Text,
              comment="Tên mức độ bằng tiếng Anh / Level name in English"),
    sa.Column("decree_43_level", sa.SmallInteger,
              comment="Mức độ theo Nghị định 43/2011 / Level under Decree 43/2011"),
    sa.Column("decree_42_level", sa.String(16),
              comment=("Mức tương ứng theo Nghị định 42/2022: toan_trinh (toàn trình), mot_phan (một phần), trống "
                       "nếu không trực tuyến / Decree 42/2022 equivalent: toan_trinh (fully online), mot_phan "
                       "(partly online), empty when not online")),
    sa.Column("is_online", sa.Boolean, nullable=False,
              comment="Là dịch vụ trực tuyến (mức 3-4) / An online service (levels 3-4)"),
    comment="Mức độ dịch vụ công trực tuyến: mức 1-4 theo NĐ 43/2011 và mức tương ứng theo NĐ 42/2022 / Online "
            "service levels: Decree 43/2011 levels 1-4 and their Decree 42/2022 equivalent",
)

dim_agency = sa.Table(
    "dim_agency", metadata,
    sa.Column("agency_code", AGENCY_CODE, primary_key=True,
              comment=("Mã định danh cơ quan (QCVN 102, Quyết định 20/2020) / Agency code (QCVN 102, Decision "
                       "20/2020)")),
    sa.Column("name", sa.Text, nullable=False,
              comment="Tên cơ quan hiện nay / Current agency name (Vietnamese)"),
    sa.Column("name_en", sa.Text,
              comment="Tên cơ quan bằng tiếng Anh / Agency name in English"),
    sa.Column("parent_code", AGENCY_CODE,
              comment="Mã cơ quan cấp trên / Parent agency code"),
    sa.Column("level", sa.SmallInteger, nullable=False,
              comment=("Cấp của mã: 1 tỉnh/bộ, 2 sở/huyện, 3 xã/phòng, 4 / Code level: 1 province/ministry, 2 "
                       "department/district, 3 commune/office, 4")),
    sa.Column("admin_unit_code", UNIT_CODE,
              comment="Mã đơn vị hành chính của cơ quan (GSO) / The agency's administrative unit (GSO code)"),
    sa.Column("valid_from", sa.Date, nullable=False,
              comment="Ngày bắt đầu hiệu lực (theo danh mục) / First day in force (code list)"),
    sa.Column("valid_to", sa.Date,
              comment=("Ngày cuối cùng còn hiệu lực (theo danh mục; trống = còn hiệu lực) / Last day in force (code "
                       "list; empty = still in force)")),
    comment="Cơ quan, đơn vị (mã theo QĐ 20/2020, QCVN 102) / Agencies (Decision 20/2020, QCVN 102 codes)",
)

dim_agency_version = sa.Table(
    "dim_agency_version", metadata,
    sa.Column("agency_code", AGENCY_CODE, primary_key=True,
              comment="Mã định danh cơ quan / Agency code"),
    sa.Column("valid_from", sa.Date, primary_key=True,
              comment=("Ngày phiên bản bắt đầu có hiệu lực (tính cả ngày này) / First day of this version "
                       "(inclusive)")),
    sa.Column("valid_to", sa.Date,  # exclusive; NULL = still in force
              comment=("Ngày phiên bản hết hiệu lực (không tính ngày này; trống = còn hiệu lực) / End of this "
                       "version (exclusive; empty = still in force)")),
    sa.Column("name", sa.Text, nullable=False,
              comment="Tên cơ quan trong phiên bản này / Agency name in this version"),
    sa.Column("name_en", sa.Text,
              comment="Tên tiếng Anh trong phiên bản này / English name in this version"),
    sa.Column("parent_code", AGENCY_CODE,
              comment="Mã cơ quan cấp trên trong phiên bản này / Parent agency code in this version"),
    sa.Column("level", sa.SmallInteger, nullable=False,
              comment="Cấp của mã trong phiên bản này / Code level in this version"),
    sa.Column("admin_unit_code", UNIT_CODE,
              comment="Đơn vị hành chính trong phiên bản này / Administrative unit in this version"),
    sa.Column("is_current", sa.Boolean, nullable=False,
              comment=("Phiên bản mới nhất của một cơ quan còn trong danh mục / Latest version of an agency still "
                       "in the code list")),
    comment="Lịch sử cơ quan (SCD loại 2): phiên bản có hiệu lực ngày D nếu valid_from <= D < valid_to (trống = vô "
            "hạn) / SCD type 2 agencies (warehouse/history.py): a version holds on D if valid_from <= D < "
            "coalesce(valid_to, ∞)",
)

dim_admin_unit = sa.Table(
    "dim_admin_unit", metadata,
    sa.Column("unit_code", UNIT_CODE, primary_key=True,
              comment=("Mã đơn vị hành chính (GSO: tỉnh 2, huyện 3, xã 5 chữ số) / Administrative unit code (GSO: "
                       "province 2, district 3, commune 5 digits)")),
    sa.Column("name", sa.Text, nullable=False,
              comment="Tên đơn vị hành chính / Unit name"),
    sa.Column("unit_type", sa.String(16), nullable=False,
              comment="Cấp: province (tỉnh), district (huyện), commune (xã) / Tier: province, district, commune"),
    sa.Column("type_name", sa.Text,
              comment=("Loại: Tỉnh, Thành phố, Thị xã, Huyện, Phường, Xã, Thị trấn / Kind: province, city, town, "
                       "district, ward, commune, township")),
    sa.Column("parent_code", UNIT_CODE,
              comment="Mã đơn vị cấp trên / Parent unit code"),
    sa.Column("valid_from", sa.Date, nullable=False,
              comment="Ngày bắt đầu hiệu lực / First day in force"),
    sa.Column("valid_to", sa.Date,
              comment=("Ngày cuối cùng còn hiệu lực (30/06/2025 với đơn vị đã sáp nhập) / Last day in force (30 "
                       "June 2025 for merged units)")),
    sa.Column("successor_code", UNIT_CODE,
              comment="Mã đơn vị kế thừa từ 01/07/2025 / Code of the successor unit from 1 July 2025"),
    sa.Column("successor_name", sa.Text,
              comment="Tên đơn vị kế thừa từ 01/07/2025 / Name of the successor unit from 1 July 2025"),
    comment="Đơn vị hành chính (mã GSO) và đơn vị kế thừa từ 01/07/2025 / Administrative units (GSO codes) with "
            "their 1 July 2025 successors",
)

# ── loaded dimensions ───────────────────────────────────────────────────────────────────────────

dim_procedure = sa.Table(
    "dim_procedure", metadata,
    sa.Column("procedure_code", PROCEDURE_CODE, primary_key=True,
              comment="Mã thủ tục hành chính (MaTTHC) / Administrative procedure code (MaTTHC)"),
    sa.Column("name", sa.Text, nullable=False,
              comment="Tên thủ tục hành chính / Procedure name"),
    sa.Column("field_code", sa.String(32), nullable=False,
              comment="Mã lĩnh vực (MaLinhVuc) / Field code (MaLinhVuc)"),
    sa.Column("field_name", sa.Text,
              comment="Tên lĩnh vực / Field name"),
    sa.Column("agency_code", AGENCY_CODE, nullable=False,
              comment="Mã cơ quan thực hiện / Agency carrying out the procedure"),
    sa.Column("scope", sa.String(16), nullable=False,
              comment=("Cấp thực hiện: province (tỉnh), district (huyện), commune (xã) / Tier: province, district, "
                       "commune")),
    sa.Column("fee", MONEY,
              comment="Phí, lệ phí (VND) / Fee (VND)"),
    sa.Column("processing_days", sa.Integer,
              comment="Thời hạn giải quyết (ngày làm việc) / Processing time limit (working days)"),
    sa.Column("published_on", sa.Date, nullable=False,
              comment="Ngày công bố / Publication date"),
    sa.Column("abolished_on", sa.Date,
              comment="Ngày bãi bỏ (trống nếu còn hiệu lực) / Abolition date (empty while in force)"),
    sa.Column("source_system", SOURCE, nullable=False,
              comment="Hệ thống nguồn / Source system"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    sa.Column("updated_at", UtcDateTime, nullable=False,
              comment="Thời điểm cập nhật cuối ở hệ thống nguồn (UTC) / Last update in the source system (UTC)"),
    comment="Danh mục thủ tục hành chính, trạng thái hiện tại / Procedure catalogue, current state",
)

dim_procedure_level = sa.Table(
    "dim_procedure_level", metadata,
    sa.Column("procedure_code", PROCEDURE_CODE, primary_key=True,
              comment="Mã thủ tục hành chính / Procedure code"),
    sa.Column("valid_from", sa.Date, primary_key=True,
              comment="Ngày mức độ bắt đầu áp dụng (tính cả ngày này) / First day of this level (inclusive)"),
    sa.Column("valid_to", sa.Date,  # exclusive; NULL = still in force
              comment=("Ngày mức độ hết áp dụng (không tính; trống = đang áp dụng) / End of this level (exclusive; "
                       "empty = still in force)")),
    sa.Column("online_level", sa.SmallInteger, nullable=False,
              comment="Mức độ DVCTT theo Nghị định 43/2011 (1-4) / Online level under Decree 43/2011 (1-4)"),
    sa.Column("decree42_level", sa.String(16),  # toan_trinh | mot_phan | NULL (not online)
              comment=("Mức theo Nghị định 42/2022: toan_trinh, mot_phan, trống nếu không trực tuyến / Decree "
                       "42/2022 level: toan_trinh, mot_phan, empty when not online")),
    sa.Column("is_current", sa.Boolean, nullable=False,
              comment="Mức độ hiện hành (giai đoạn cuối) / The current level (the last period)"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    comment="Lịch sử mức độ trực tuyến (SCD loại 2): có hiệu lực ngày D nếu valid_from <= D < valid_to (trống = vô "
            "hạn) / SCD type 2 online level: in force on D if valid_from <= D < coalesce(valid_to, ∞)",
)

# ── facts ───────────────────────────────────────────────────────────────────────────────────────

fact_dossier = sa.Table(
    "fact_dossier", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True,
              comment=("Mã hồ sơ (MaHoSo): mã cơ quan, yyMMdd, số thứ tự / Dossier code (MaHoSo): agency code, "
                       "yyMMdd, sequence")),
    sa.Column("procedure_code", PROCEDURE_CODE, nullable=False,
              comment="Mã thủ tục hành chính (MaTTHC) / Procedure code (MaTTHC)"),
    sa.Column("agency_code", AGENCY_CODE, nullable=False,
              comment="Mã cơ quan xử lý (DonViXuLy) / Processing agency code (DonViXuLy)"),
    sa.Column("admin_unit_code", UNIT_CODE,
              comment=("Đơn vị hành chính nơi nộp hồ sơ (GSO) / Administrative unit where the dossier was filed "
                       "(GSO)")),
    sa.Column("procedure_name", sa.Text,
              comment="Tên thủ tục theo hồ sơ (TenTTHC) / Procedure name as on the dossier (TenTTHC)"),
    sa.Column("summary", sa.Text,
              comment="Trích yếu hồ sơ (TrichYeuHoSo) / Dossier summary (TrichYeuHoSo)"),
    sa.Column("channel", sa.SmallInteger, nullable=False,
              comment="Kênh thực hiện (dim_channel) / Channel (dim_channel)"),
    sa.Column("applicant_type", sa.SmallInteger, nullable=False,
              comment="Loại đối tượng (dim_applicant_type) / Applicant type (dim_applicant_type)"),
    sa.Column("applicant_id_hash", sa.String(64),
              comment=("HMAC-SHA256 số định danh người nộp (không lưu số gốc) / HMAC-SHA256 of the applicant's ID "
                       "number (the number itself is never stored)")),
    sa.Column("applicant_id_type", sa.SmallInteger,
              comment="Loại định danh: 1 CCCD, 2 CMND / ID type: 1 citizen ID (12 digits), 2 old ID (9 digits)"),
    sa.Column("received_at", UtcDateTime, nullable=False,
              comment="Thời điểm tiếp nhận (NgayTiepNhan, UTC) / Time received (NgayTiepNhan, UTC)"),
    sa.Column("due_at", UtcDateTime,
              comment="Thời điểm hẹn trả (NgayHenTra, UTC) / Time due (NgayHenTra, UTC)"),
    sa.Column("finished_at", UtcDateTime,
              comment=("Thời điểm kết thúc xử lý (NgayKetThucXuLy, UTC) / Time processing finished "
                       "(NgayKetThucXuLy, UTC)")),
    sa.Column("returned_at", UtcDateTime,
              comment="Thời điểm trả kết quả (NgayTra, UTC) / Time the result was returned (NgayTra, UTC)"),
    sa.Column("status", sa.SmallInteger, nullable=False,
              comment="Trạng thái hồ sơ (dim_dossier_status) / Dossier status (dim_dossier_status)"),
    sa.Column("fee", MONEY,
              comment="Tổng phí, lệ phí (VND) / Total fees (VND)"),
    sa.Column("paid_online", sa.SmallInteger,
              comment=("Thanh toán trực tuyến: 0 không có phí, 1 đã thanh toán trực tuyến, 3 không thanh toán trực "
                       "tuyến / Online payment: 0 no fee, 1 paid online, 3 not paid online")),
    sa.Column("updated_at", UtcDateTime, nullable=False,
              comment=("Thời điểm cập nhật cuối ở hệ thống nguồn (NgayCapNhat, UTC) / Last update in the source "
                       "system (NgayCapNhat, UTC)")),
    sa.Column("source_system", SOURCE, nullable=False,
              comment="Hệ thống nguồn của bản ghi được chọn / Source system of the chosen record"),
    sa.Column("source_record_id", sa.String(128), nullable=False,
              comment="Mã bản ghi ở hệ thống nguồn / Record id in the source system"),
    # Local-calendar (Asia/Ho_Chi_Minh) derivations, stored so the views need no date functions.
    sa.Column("received_date", sa.Date,
              comment="Ngày tiếp nhận (giờ Việt Nam) / Date received (Vietnam time)"),
    sa.Column("received_month", MONTH,
              comment="Tháng tiếp nhận YYYY-MM (giờ Việt Nam) / Month received YYYY-MM (Vietnam time)"),
    sa.Column("due_date", sa.Date,
              comment="Ngày hẹn trả (giờ Việt Nam) / Due date (Vietnam time)"),
    sa.Column("finished_date", sa.Date,
              comment="Ngày kết thúc xử lý (giờ Việt Nam) / Date finished (Vietnam time)"),
    sa.Column("finished_month", MONTH,
              comment="Tháng kết thúc xử lý YYYY-MM (giờ Việt Nam) / Month finished YYYY-MM (Vietnam time)"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    sa.Column("loaded_at", UtcDateTime, nullable=False,
              comment="Thời điểm nạp vào kho (UTC) / Time loaded into the warehouse (UTC)"),
    sa.Index("ix_fact_dossier_agency_month", "agency_code", "received_month"),
    sa.Index("ix_fact_dossier_procedure_month", "procedure_code", "received_month"),
    sa.Index("ix_fact_dossier_finished_month", "finished_month"),
    comment="Hồ sơ thủ tục hành chính, trạng thái hiện tại (mỗi mã hồ sơ một dòng) / Dossiers, current state (one "
            "row per dossier_code)",
)

fact_dossier_source = sa.Table(
    "fact_dossier_source", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True,
              comment="Mã hồ sơ / Dossier code"),
    sa.Column("source_system", SOURCE, primary_key=True,
              comment="Hệ thống nguồn đã gửi bản ghi / Source system that sent the record"),
    sa.Column("source_record_id", sa.String(128), primary_key=True,
              comment="Mã bản ghi ở hệ thống nguồn / Record id in the source system"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    sa.Column("updated_at", UtcDateTime, nullable=False,
              comment="Thời điểm cập nhật ở hệ thống nguồn (UTC) / Last update in the source system (UTC)"),
    sa.Column("loaded_at", UtcDateTime, nullable=False,
              comment="Thời điểm nạp vào kho (UTC) / Time loaded into the warehouse (UTC)"),
    sa.Index("ix_fact_dossier_source_batch_id", "batch_id"),
    comment="Truy vết nguồn: mọi bản ghi nguồn đã góp vào một hồ sơ (docs/reconciliation.md) / Lineage: every source "
            "record that contributed to a dossier (docs/reconciliation.md)",
)

fact_dossier_event = sa.Table(
    "fact_dossier_event", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True,
              comment="Mã hồ sơ / Dossier code"),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False,
              comment="Số thứ tự bước xử lý (từ 1) / Step number (from 1)"),
    sa.Column("status", sa.SmallInteger, nullable=False,
              comment="Trạng thái sau bước này (dim_dossier_status) / Status after this step (dim_dossier_status)"),
    sa.Column("occurred_at", UtcDateTime, nullable=False,
              comment="Thời điểm xử lý (ThoiDiemXuLy, UTC) / Time of the step (ThoiDiemXuLy, UTC)"),
    sa.Column("note", sa.Text,
              comment="Nội dung xử lý (NoiDungXuLy) / What was done (NoiDungXuLy)"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    comment="Quá trình xử lý hồ sơ (QuaTrinhXuLy) / Dossier processing steps (QuaTrinhXuLy)",
)

fact_service_stat = sa.Table(
    "fact_service_stat", metadata,
    sa.Column("commune_code", UNIT_CODE, primary_key=True,
              comment="Mã xã báo cáo (GSO) / Reporting commune (GSO code)"),
    sa.Column("month", MONTH, primary_key=True,
              comment="Tháng báo cáo YYYY-MM / Report month YYYY-MM"),
    sa.Column("procedure_code", PROCEDURE_CODE, primary_key=True,
              comment="Mã thủ tục hành chính / Procedure code"),
    sa.Column("received", sa.Integer, nullable=False,
              comment="Số hồ sơ tiếp nhận trong tháng / Dossiers received in the month"),
    sa.Column("online", sa.Integer, nullable=False,
              comment="Số hồ sơ tiếp nhận trực tuyến / Dossiers received online"),
    sa.Column("on_time", sa.Integer, nullable=False,
              comment="Số hồ sơ giải quyết đúng hạn / Dossiers settled on time"),
    sa.Column("late", sa.Integer, nullable=False,
              comment="Số hồ sơ giải quyết quá hạn / Dossiers settled late"),
    sa.Column("pending", sa.Integer, nullable=False,
              comment="Số hồ sơ đang giải quyết / Dossiers still in progress"),
    sa.Column("source_file", sa.Text,
              comment="Tệp báo cáo nguồn / Source report file"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    sa.Column("loaded_at", UtcDateTime, nullable=False,
              comment="Thời điểm nạp vào kho (UTC) / Time loaded into the warehouse (UTC)"),
    sa.Index("ix_fact_service_stat_month", "month"),
    comment="Báo cáo tháng của xã (tệp gửi lên): báo cáo mới nhất của một xã-tháng thay thế các dòng của báo cáo "
            "trước / Communes' monthly reports (file drops): the latest report of a commune-month replaces the "
            "earlier one's rows",
)

fact_service_report = sa.Table(
    "fact_service_report", metadata,
    sa.Column("commune_code", UNIT_CODE, primary_key=True,
              comment="Mã xã báo cáo (GSO) / Reporting commune (GSO code)"),
    sa.Column("month", MONTH, primary_key=True,
              comment="Tháng báo cáo YYYY-MM / Report month YYYY-MM"),
    sa.Column("source_file", sa.Text,
              comment="Tệp báo cáo nguồn / Source report file"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp đã ghi dòng này / Batch that wrote this row"),
    sa.Column("loaded_at", UtcDateTime, nullable=False,
              comment="Thời điểm nạp vào kho (UTC) / Time loaded into the warehouse (UTC)"),
    comment="Mỗi xã-tháng có báo cáo đã nạp một dòng (kể cả báo cáo không có dòng thủ tục): các xã-tháng được đối "
            "soát với hồ sơ / One row per commune-month whose report is loaded (even a report with no procedure "
            "row): the commune-months reconciled with the dossiers",
)

# ── operations ──────────────────────────────────────────────────────────────────────────────────

BATCH_STATUSES = ("running", "loaded", "failed")

ops_batch = sa.Table(
    "ops_batch", metadata,
    sa.Column("batch_id", BATCH_ID, primary_key=True,
              comment="Mã lô nạp / Batch id"),
    sa.Column("source", SOURCE, nullable=False,
              comment="Nguồn dữ liệu (vd. national_portal) / Data source (e.g. national_portal)"),
    sa.Column("stream", SOURCE, nullable=False,
              comment="Luồng dữ liệu của nguồn (vd. dossiers) / Stream of the source (e.g. dossiers)"),
    sa.Column("entity", sa.String(32), nullable=False,
              comment=("Thực thể chuẩn (dossier, procedure, service_stat) / Standard entity (dossier, procedure, "
                       "service_stat)")),
    sa.Column("window_start", UtcDateTime,
              comment="Đầu cửa sổ đồng bộ (UTC) / Sync window start (UTC)"),
    sa.Column("window_end", UtcDateTime,
              comment="Cuối cửa sổ đồng bộ (UTC) / Sync window end (UTC)"),
    sa.Column("status", sa.String(16), nullable=False,
              comment="Trạng thái lô: running, loaded, failed / Batch status: running, loaded, failed"),
    sa.Column("rows_read", sa.Integer, nullable=False,
              comment="Số dòng đọc (= nạp + cách ly) / Rows read (= loaded + quarantined)"),
    sa.Column("rows_loaded", sa.Integer, nullable=False,
              comment=("Số dòng hợp lệ được nạp (kể cả dòng trùng khóa) / Good rows loaded (duplicates of a key "
                       "included)")),
    sa.Column("rows_quarantined", sa.Integer, nullable=False,
              comment="Số dòng bị cách ly / Rows quarantined"),
    sa.Column("rows_deduplicated", sa.Integer, nullable=False,
              comment="Số dòng trùng khóa đã gộp / Rows merged into another of the same key"),
    sa.Column("checksum", sa.String(64),
              comment=("SHA-256 trên mọi bản ghi nguồn của lô (không phụ thuộc thứ tự) / SHA-256 over every source "
                       "record of the batch (order-independent)")),
    sa.Column("watermark", UtcDateTime,
              comment="Giá trị khóa đồng bộ lớn nhất đã nạp (UTC) / Greatest replication-key value loaded (UTC)"),
    sa.Column("error", sa.Text,
              comment="Lỗi khiến lô thất bại / Error that failed the batch"),
    sa.Column("started_at", UtcDateTime, nullable=False,
              comment="Thời điểm bắt đầu lô (UTC) / Batch start (UTC)"),
    sa.Column("finished_at", UtcDateTime,
              comment="Thời điểm kết thúc lô (UTC) / Batch end (UTC)"),
    sa.CheckConstraint("status IN ('running', 'loaded', 'failed')", name="status"),
    sa.Index("ix_ops_batch_source_stream", "source", "stream"),
    comment="Sổ lô nạp: mỗi batch_id một dòng, chạy lại thì thay thế / Batch manifest: one row per batch_id, "
            "replaced by a re-run",
)

ops_quarantine = sa.Table(
    "ops_quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True,
              comment="Khóa thay thế / Surrogate key"),
    sa.Column("batch_id", BATCH_ID, nullable=False,
              comment="Lô nạp / Batch id"),
    sa.Column("source", SOURCE, nullable=False,
              comment="Nguồn dữ liệu / Data source"),
    sa.Column("stream", SOURCE, nullable=False,
              comment="Luồng dữ liệu / Stream"),
    sa.Column("record_key", sa.Text,
              comment="Khóa bản ghi nguồn (vd. MaHoSo) / Source record key (e.g. MaHoSo)"),
    sa.Column("row_number", sa.Integer, nullable=False,
              comment="Vị trí dòng trong lô / Row position in the batch"),
    sa.Column("failed_rules", sa.Text, nullable=False,  # JSON list of rule ids
              comment="Danh sách quy tắc bị vi phạm (JSON) / Failed rule ids (JSON list)"),
    sa.Column("payload", sa.Text,                       # JSON source record, identifiers masked
              comment="Bản ghi nguồn (JSON, đã che định danh) / Source record (JSON, identifiers masked)"),
    sa.Column("created_at", UtcDateTime, nullable=False,
              comment="Thời điểm cách ly (UTC) / Time quarantined (UTC)"),
    sa.UniqueConstraint("batch_id", "row_number"),
    comment="Các dòng vi phạm quy tắc chất lượng, kèm mọi quy tắc bị vi phạm / Rows that failed a quality rule, with "
            "every failed rule",
)

ops_sync_state = sa.Table(
    "ops_sync_state", metadata,
    sa.Column("source", SOURCE, primary_key=True,
              comment="Nguồn dữ liệu / Data source"),
    sa.Column("stream", SOURCE, primary_key=True,
              comment="Luồng dữ liệu / Stream"),
    sa.Column("watermark", UtcDateTime,
              comment="Giá trị khóa đồng bộ lớn nhất đã nạp (UTC) / Greatest replication-key value loaded (UTC)"),
    sa.Column("last_batch_id", BATCH_ID,
              comment="Lô nạp gần nhất / Last batch id"),
    sa.Column("updated_at", UtcDateTime, nullable=False,
              comment="Thời điểm cập nhật trạng thái (UTC) / Time the state was updated (UTC)"),
    comment="Trạng thái đồng bộ tăng dần: giá trị khóa đồng bộ lớn nhất đã nạp của mỗi luồng / Incremental sync "
            "state: the greatest replication-key value loaded per stream",
)

# ── marts ───────────────────────────────────────────────────────────────────────────────────────

mart_indicator = sa.Table(
    "mart_indicator", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True,
              comment="Khóa thay thế / Surrogate key"),
    sa.Column("indicator", sa.String(64), nullable=False,
              comment="Mã chỉ tiêu (vd. online_share) / Indicator id (e.g. online_share)"),
    sa.Column("period", sa.String(16), nullable=False,
              comment="Kỳ báo cáo: YYYY, YYYY-MM hoặc ngày YYYY-MM-DD / Period: YYYY, YYYY-MM or a day YYYY-MM-DD"),
    sa.Column("agency_code", AGENCY_CODE,
              comment="Mã cơ quan (trống = toàn tỉnh) / Agency code (empty = whole province)"),
    sa.Column("group_code", sa.String(64),
              comment="Mã nhóm (nhóm thủ tục, thủ tục...) / Group code (procedure group, procedure...)"),
    sa.Column("dimension", sa.String(64),
              comment="Chiều phân tích (vd. level_3) / Breakdown (e.g. level_3)"),
    sa.Column("value", sa.Numeric,
              comment="Giá trị chỉ tiêu / Indicator value"),
    sa.Column("unit", sa.String(16),
              comment="Đơn vị tính (dossiers, procedures, ratio...) / Unit (dossiers, procedures, ratio...)"),
    sa.Column("refreshed_at", UtcDateTime, nullable=False,
              comment="Thời điểm tính lại (UTC) / Time refreshed (UTC)"),
    sa.Index("ix_mart_indicator_indicator_period", "indicator", "period"),
    comment="Chỉ tiêu báo cáo chuẩn, do mã báo cáo tính sẵn / Standard report indicators, materialised by the report "
            "code",
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

# ── push to the national portal (exchange/push.py, migration 0007) ─────────────────────────────

PUSH_STATUSES = ("accepted", "rejected")

ops_push = sa.Table(
    "ops_push", metadata,
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True,
              comment="Mã hồ sơ (MaHoSo) / Dossier code (MaHoSo)"),
    sa.Column("pushed_updated_at", UtcDateTime,
              comment=("Phiên bản (fact_dossier.updated_at) Cổng đã nhận cùng tiến độ xử lý (UTC) / Version "
                       "(fact_dossier.updated_at) the portal accepted with its steps (UTC)")),
    sa.Column("attempted_updated_at", UtcDateTime,
              comment=("Phiên bản gửi lần gần nhất (UTC); bản bị từ chối chỉ gửi lại khi có phiên bản mới hơn / "
                       "Version sent last (UTC); a rejected one is resent only when a newer version exists")),
    sa.Column("on_portal", sa.Boolean, nullable=False,
              comment=("Cổng đã có hồ sơ (lần sau gửi isUpdating \"True\") / The portal holds the dossier "
                       "(next push sends isUpdating \"True\")")),
    sa.Column("status", sa.String(16), nullable=False,
              comment="Kết quả lần gửi gần nhất: accepted, rejected / Outcome of the last push: accepted, rejected"),
    sa.Column("error_code", sa.String(8),
              comment="Mã lỗi Cổng trả về (\"00\" = nhận) / The portal's error_code (\"00\" = accepted)"),
    sa.Column("message", sa.Text,
              comment="Thông báo của Cổng / The portal's message"),
    sa.Column("attempts", sa.Integer, nullable=False,
              comment="Số lần đã gửi / Times sent"),
    sa.Column("last_attempt_at", UtcDateTime, nullable=False,
              comment="Thời điểm gửi gần nhất (UTC) / Time of the last push (UTC)"),
    sa.CheckConstraint("status IN ('accepted', 'rejected')", name="status"),
    comment="Push to the national portal (DongBoHoSoMC, CapNhatTienDoHoSoMC): one row per dossier sent",
)

# ── exchange packages (exchange/packages.py, docs/INTERFACES.md §13) ───────────────────────────

PACKAGE_DIRECTIONS = ("out", "in")
PACKAGE_STATUSES = ("delivered", "failed", "accepted", "refused")

ops_package = sa.Table(
    "ops_package", metadata,
    sa.Column("message_id", sa.String(32), primary_key=True,
              comment=("Mã thông điệp (băm của bên gửi, bên nhận và nội dung) / Message id (digest of sender, "
                       "receiver and body)")),
    sa.Column("direction", sa.String(3), primary_key=True,
              comment="Chiều: out (gửi đi), in (nhận về) / Direction: out (published), in (received)"),
    sa.Column("sender", AGENCY_CODE,
              comment="Mã cơ quan gửi / Sending agency code"),
    sa.Column("receiver", AGENCY_CODE,
              comment="Mã cơ quan nhận / Receiving agency code"),
    sa.Column("created_at", UtcDateTime,
              comment="Thời điểm tạo gói (UTC) / Package creation time (UTC)"),
    sa.Column("dossier_count", sa.Integer,
              comment="Số hồ sơ trong gói / Dossiers in the package"),
    sa.Column("body_sha256", sa.String(64),
              comment="SHA-256 của message.xml / SHA-256 of message.xml"),
    sa.Column("key_id", sa.String(64),
              comment="Mã khóa ký (Ed25519) / Signing key id (Ed25519)"),
    sa.Column("status", sa.String(16), nullable=False,
              comment=("Trạng thái: delivered, failed (gửi), accepted, refused (nhận) / Status: delivered, failed "
                       "(out), accepted, refused (in)")),
    sa.Column("reason", sa.Text,
              comment="Lý do từ chối hoặc lỗi gửi / Reason of a refusal or a failed delivery"),
    sa.Column("path", sa.Text,
              comment="Tệp gói (hộp thư đi hoặc tệp nhận) / Package file (outbox or received file)"),
    sa.Column("batch_id", BATCH_ID,
              comment="Lô nạp các hồ sơ của gói đã nhận / Batch that loaded a received package"),
    sa.Column("delivered_at", UtcDateTime,
              comment="Thời điểm gửi thành công (UTC) / Time delivered (UTC)"),
    sa.Column("receipt", sa.Text,
              comment=("Biên nhận gửi (JSON: hộp thư đi, phản hồi HTTP) / Delivery receipts (JSON: outbox, HTTP "
                       "answer)")),
    sa.Column("recorded_at", UtcDateTime, nullable=False,
              comment="Thời điểm ghi nhận (UTC) / Time recorded (UTC)"),
    sa.CheckConstraint("direction IN ('out', 'in')", name="direction"),
    sa.CheckConstraint("status IN ('delivered', 'failed', 'accepted', 'refused')", name="status"),
    comment="Exchange packages published (out) and received (in), with delivery receipts",
)

ops_package_dossier = sa.Table(
    "ops_package_dossier", metadata,
    sa.Column("receiver", AGENCY_CODE, primary_key=True,
              comment="Mã cơ quan nhận / Receiving agency code"),
    sa.Column("dossier_code", DOSSIER_CODE, primary_key=True,
              comment="Mã hồ sơ / Dossier code"),
    sa.Column("digest", sa.String(64), nullable=False,
              comment="SHA-256 của bản hồ sơ đã gửi / SHA-256 of the version sent"),
    sa.Column("message_id", sa.String(32), nullable=False,
              comment="Gói đã mang bản này / Package that carried it"),
    comment="The version of each dossier last delivered to each receiver: only a changed one is sent again",
)

# ── citizens' data: the pseudonym key chain in force (warehouse/pseudonym.py, migration 0008) ───

ops_pseudonym_key = sa.Table(
    "ops_pseudonym_key", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True,
              comment="Thứ tự ghi nhận (dòng lớn nhất là chuỗi khóa hiện hành) / Order recorded (the greatest "
                      "is the key chain in force)"),
    sa.Column("fingerprint", sa.String(16), nullable=False,
              comment=("Dấu vân tay của chuỗi khóa: HMAC của một hằng số, không phải khóa / Fingerprint of the "
                       "key chain: its HMAC of a constant, not a key")),
    sa.Column("key_count", sa.SmallInteger, nullable=False,
              comment="Số khóa của chuỗi / Keys in the chain"),
    sa.Column("previous_fingerprint", sa.String(16),
              comment=("Chuỗi khóa trước lần xoay khóa này (trống = ghi nhận lần đầu) / Chain before this "
                       "rotation (empty = first recorded)")),
    sa.Column("rekeyed", sa.Text,
              comment=("Số giá trị đã băm lại theo cột (JSON) / Values re-keyed per column (JSON)")),
    sa.Column("recorded_at", UtcDateTime, nullable=False,
              comment="Thời điểm ghi nhận (UTC) / Time recorded (UTC)"),
    sa.UniqueConstraint("fingerprint"),
    comment="Chuỗi khóa HMAC mà các mã băm số định danh người nộp trong kho đang dùng, và các lần xoay khóa / The "
            "pseudonym key chain the warehouse's applicant pseudonyms are under, and its rotations",
)
