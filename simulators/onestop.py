"""Stand-ins for one-stop-shop (một cửa) databases: two schema variants filled from portal dossiers."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.onestop import MAPPING_DIR
from simulators.generator import fee_total

__all__ = ["VARIANTS", "create_onestop_database", "mapping_path"]

VARIANTS = ("a", "b")
_INSERT_BATCH = 1000
_FILL_CHUNK = 20_000  # dossiers built into rows at a time

# The software's own vocabularies (what its users see), kept apart from the mapping files on
# purpose: the round-trip tests then check the mapping files against the software.
_A_STATUS = {"1": "Mới đăng ký", "2": "Đã tiếp nhận", "3": "Không tiếp nhận", "4": "Đang xử lý",
             "5": "Yêu cầu bổ sung", "6": "Chờ nộp phí", "7": "Rút hồ sơ", "8": "Dừng xử lý",
             "9": "Đã xử lý xong", "10": "Đã trả kết quả"}  # fmt: skip
_A_CHANNEL = {"1": "Trực tiếp", "2": "Trực tuyến", "3": "Bưu chính công ích"}
_A_APPLICANT = {"1": "Công dân", "2": "Doanh nghiệp", "3": "Cơ quan nhà nước", "4": "Tổ chức khác"}
_A_OWN_CODES = {"2.000488": "STP-LLTP-01", "2.000815": "STP-CT-01", "1.001193": "STP-HT-01"}
_B_STATUS = {"1": "MDK", "2": "DTN", "3": "KTN", "4": "DXL", "5": "YCBS", "6": "NVTC", "7": "RUT",
             "8": "DUNG", "9": "DXLX", "10": "DTKQ"}  # fmt: skip
_B_CHANNEL = {"1": "DIRECT", "2": "ONLINE", "3": "POST"}
_B_APPLICANT = {"1": "CN", "2": "DN", "3": "CQ", "4": "TC"}
_B_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def mapping_path(variant: str) -> Path:
    """The packaged mapping file that reads `variant`'s database."""
    _check(variant)
    return MAPPING_DIR / f"onestop_variant_{variant}.yaml"


def create_onestop_database(
    url: str | sa.Engine,
    variant: str,
    dossiers: Iterable[dict[str, Any]],
    procedures: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Create `variant`'s schema at `url` and fill it from portal-shaped dossiers (and procedures).

    Variant "a" (Sở Tư pháp's software): Vietnamese names, DATETIME columns, Vietnamese labels,
    own codes for a few procedures. Variant "b" (Sở KH&ĐT's): English-ish names, text times,
    abbreviated labels, own codes for every procedure with a `proc_map` lookup table; it keeps no
    agency column. Procedures default to those the dossiers name. Codes a vocabulary lacks are
    stored as given; a time that is not `yyyyMMddHHmmss` is stored as NULL. Returns the path of the
    variant's mapping file.
    """
    _check(variant)
    engine = url if isinstance(url, sa.Engine) else sa.create_engine(url)
    try:
        if procedures is None or variant == "b":  # b numbers its own codes over every dossier's
            records = list(dossiers)
            catalogue = list(procedures) if procedures is not None else _procedures_of(records)
            chunks: Iterable[list[dict[str, Any]]] = [records]
        else:  # with the catalogue given, dossiers are written as they come (10^6 and more)
            catalogue = list(procedures)
            chunks = _chunks(dossiers, _FILL_CHUNK)
        build = _build_a if variant == "a" else _build_b
        with engine.begin() as conn:
            for n, chunk in enumerate(chunks):
                metadata = sa.MetaData()
                fills = build(metadata, chunk, catalogue if n == 0 else [])
                if n == 0:
                    metadata.create_all(conn)
                for table, rows in fills:
                    for start in range(0, len(rows), _INSERT_BATCH):
                        conn.execute(table.insert(), rows[start : start + _INSERT_BATCH])
    finally:
        if not isinstance(url, sa.Engine):
            engine.dispose()
    return mapping_path(variant)


def _chunks(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Lists of at most `size` records; at least one list (empty for no records)."""
    iterator = iter(records)
    chunk = list(itertools.islice(iterator, size))
    yield chunk
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _check(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown one-stop variant {variant!r} (known: {', '.join(VARIANTS)})")


def _procedures_of(dossiers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A minimal catalogue from the dossiers: one entry per MaTTHC, updated at its first receipt."""
    seen: dict[str, dict[str, Any]] = {}
    for d in dossiers:
        code = d.get("MaTTHC") or ""
        if not code:
            continue
        first = d.get("NgayTiepNhan") or d.get("NgayCapNhat") or ""
        entry = seen.setdefault(
            code,
            {
                "MaTTHC": code,
                "TenTTHC": d.get("TenTTHC", ""),
                "MaLinhVuc": d.get("MaLinhVuc", ""),
                "TenLinhVuc": d.get("TenLinhVuc", ""),
                "NgayCapNhat": first,
            },
        )
        if first and (not entry["NgayCapNhat"] or first < entry["NgayCapNhat"]):
            entry["NgayCapNhat"] = first
    return list(seen.values())


def _time(text: Any) -> datetime | None:
    """Portal `yyyyMMddHHmmss` (naive local) → naive datetime; "" or unreadable → None."""
    try:
        return datetime.strptime(str(text or ""), "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _time_text(text: Any) -> str | None:
    moment = _time(text)
    return moment.strftime(_B_TIME_FORMAT) if moment else None


def _label(vocabulary: dict[str, str], code: Any) -> str | None:
    if code is None or code == "":
        return None
    return vocabulary.get(str(code), str(code))


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _s(n: int = 255) -> sa.String:
    return sa.String(n)


# -- variant A: MariaDB-style, Vietnamese names, DATETIME --------------------------------------


def _build_a(
    metadata: sa.MetaData, dossiers: list[dict[str, Any]], procedures: list[dict[str, Any]]
) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
    hoso = sa.Table(
        "tbl_hoso", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("so_ho_so", _s(64), nullable=False, unique=True),
        sa.Column("so_bien_nhan", _s(64)), sa.Column("ma_thu_tuc", _s(64)),
        sa.Column("ten_thu_tuc", sa.Text), sa.Column("ma_linh_vuc", _s(64)),
        sa.Column("ten_linh_vuc", _s()), sa.Column("ma_don_vi", _s(32)),
        sa.Column("ma_xa_phuong", _s(16)), sa.Column("hinh_thuc_nop", _s(64)),
        sa.Column("loai_doi_tuong", _s(64)), sa.Column("trang_thai", _s(64)),
        sa.Column("ten_chu_ho_so", _s()), sa.Column("so_cmnd_cccd", _s(32)),
        sa.Column("dien_thoai", _s(32)), sa.Column("email", _s()), sa.Column("trich_yeu", sa.Text),
        sa.Column("le_phi", sa.Numeric(14, 0)), sa.Column("thanh_toan_tt", sa.SmallInteger),
        *(sa.Column(name, sa.DateTime) for name in (
            "ngay_nop", "ngay_nhan", "ngay_hen_tra", "ngay_tu_choi", "ngay_xu_ly_xong", "ngay_tra_kq")),
        sa.Column("ngay_cap_nhat", sa.DateTime, nullable=False, index=True),
    )  # fmt: skip
    xuly = sa.Table(
        "tbl_hoso_xuly", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("so_ho_so", _s(64), nullable=False, index=True),
        sa.Column("thoi_diem", sa.DateTime), sa.Column("trang_thai", _s(64)),
        sa.Column("noi_dung", sa.Text), sa.Column("can_bo", _s()), sa.Column("chuc_vu", _s()),
        sa.Column("phong_ban", _s()),
    )  # fmt: skip
    thutuc = sa.Table(
        "tbl_thutuc", metadata,
        sa.Column("ma_thu_tuc", _s(64), primary_key=True), sa.Column("ten_thu_tuc", sa.Text),
        sa.Column("ma_linh_vuc", _s(64)), sa.Column("ten_linh_vuc", _s()),
        sa.Column("cap_thuc_hien", sa.Integer), sa.Column("muc_do", sa.Integer),
        sa.Column("le_phi", sa.Numeric(14, 0)), sa.Column("so_ngay_giai_quyet", sa.Integer),
        sa.Column("ngay_cong_bo", sa.DateTime), sa.Column("ngay_cap_nhat", sa.DateTime, index=True),
    )  # fmt: skip

    def code(national: Any) -> str:
        return _A_OWN_CODES.get(str(national or ""), str(national or ""))

    hoso_rows, step_rows = [], []
    for d in dossiers:
        hoso_rows.append({
            "so_ho_so": d["MaHoSo"], "so_bien_nhan": d.get("SoBienNhan"),
            "ma_thu_tuc": code(d.get("MaTTHC")), "ten_thu_tuc": d.get("TenTTHC"),
            "ma_linh_vuc": d.get("MaLinhVuc"), "ten_linh_vuc": d.get("TenLinhVuc"),
            "ma_don_vi": d.get("DonViXuLy"), "ma_xa_phuong": d.get("NoiNopHoSo"),
            "hinh_thuc_nop": _label(_A_CHANNEL, d.get("KenhThucHien")),
            "loai_doi_tuong": _label(_A_APPLICANT, d.get("LoaiDoiTuong")),
            "trang_thai": _label(_A_STATUS, d.get("TrangThaiHoSo")),
            "ten_chu_ho_so": d.get("ChuHoSo"), "so_cmnd_cccd": d.get("SoGiayToChuHoSo"),
            "dien_thoai": d.get("SoDienThoai"), "email": d.get("Email"),
            "trich_yeu": d.get("TrichYeuHoSo"), "ngay_nop": _time(d.get("NgayNopHoSo")),
            "le_phi": fee_total(d.get("DanhSachLePhi")), "thanh_toan_tt": _int(d.get("DuocThanhToanTrucTuyen")),
            "ngay_nhan": _time(d.get("NgayTiepNhan")), "ngay_hen_tra": _time(d.get("NgayHenTra")),
            "ngay_tu_choi": _time(d.get("NgayTuChoi")),
            "ngay_xu_ly_xong": _time(d.get("NgayKetThucXuLy")),
            "ngay_tra_kq": _time(d.get("NgayTra")), "ngay_cap_nhat": _time(d.get("NgayCapNhat")),
        })  # fmt: skip
        for step in d.get("QuaTrinhXuLy") or []:
            step_rows.append({
                "so_ho_so": d["MaHoSo"], "thoi_diem": _time(step.get("ThoiDiemXuLy")),
                "trang_thai": _label(_A_STATUS, step.get("TrangThai")),
                "noi_dung": step.get("NoiDungXuLy"), "can_bo": step.get("NguoiXuLy"),
                "chuc_vu": step.get("ChucDanh"), "phong_ban": step.get("PhongBanXuLy"),
            })  # fmt: skip
    thutuc_rows = [{
        "ma_thu_tuc": code(p["MaTTHC"]), "ten_thu_tuc": p.get("TenTTHC"),
        "ma_linh_vuc": p.get("MaLinhVuc"), "ten_linh_vuc": p.get("TenLinhVuc"),
        "cap_thuc_hien": _int(p.get("CapThucHien")), "muc_do": _int(p.get("MucDo")),
        "le_phi": _int(p.get("PhiLePhi")), "so_ngay_giai_quyet": _int(p.get("ThoiHanGiaiQuyet")),
        "ngay_cong_bo": _time(p.get("NgayCongBo")), "ngay_cap_nhat": _time(p.get("NgayCapNhat")),
    } for p in procedures]  # fmt: skip
    return [(hoso, hoso_rows), (xuly, step_rows), (thutuc, thutuc_rows)]


# -- variant B: English-ish names, text times, abbreviations, lookup table ---------------------


def _build_b(
    metadata: sa.MetaData, dossiers: list[dict[str, Any]], procedures: list[dict[str, Any]]
) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
    dossier = sa.Table(
        "dossier", metadata,
        sa.Column("dossier_no", _s(64), primary_key=True), sa.Column("proc_id", _s(32)),
        sa.Column("proc_name", sa.Text), sa.Column("commune", _s(16)),
        sa.Column("channel", _s(16)), sa.Column("applicant_kind", _s(16)),
        sa.Column("status", _s(16)), sa.Column("applicant", _s()), sa.Column("id_no", _s(32)),
        sa.Column("summary", sa.Text), sa.Column("fee_total", sa.Numeric(14, 0)), sa.Column("paid_online", _s(4)),
        *(sa.Column(name, _s(19)) for name in ("received_at", "due_at", "finished_at", "returned_at")),
        sa.Column("modified_at", _s(19), nullable=False, index=True),
    )  # fmt: skip
    log = sa.Table(
        "dossier_log", metadata,
        sa.Column("log_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dossier_no", _s(64), nullable=False, index=True),
        sa.Column("logged_at", _s(19)), sa.Column("status", _s(16)), sa.Column("note", sa.Text),
        sa.Column("actor", _s()),
    )  # fmt: skip
    catalog = sa.Table(
        "procedure_catalog", metadata,
        sa.Column("proc_id", _s(32), primary_key=True), sa.Column("proc_name", sa.Text),
        sa.Column("field_code", _s(64)), sa.Column("field_name", _s()),
        sa.Column("online_level", sa.Integer), sa.Column("days", sa.Integer),
        sa.Column("modified_at", _s(19)),
    )  # fmt: skip
    proc_map = sa.Table(
        "proc_map",
        metadata,
        sa.Column("local_code", _s(32), primary_key=True),
        sa.Column("national_code", _s(64)),
    )
    nationals = sorted(
        {str(p["MaTTHC"]) for p in procedures if p.get("MaTTHC")}
        | {str(d["MaTTHC"]) for d in dossiers if d.get("MaTTHC")}
    )
    local = {code: f"KH-{n:04d}" for n, code in enumerate(nationals, start=1)}

    dossier_rows, log_rows = [], []
    for d in dossiers:
        dossier_rows.append({
            "dossier_no": d["MaHoSo"], "proc_id": local.get(str(d.get("MaTTHC") or ""), d.get("MaTTHC")),
            "proc_name": d.get("TenTTHC"), "commune": d.get("NoiNopHoSo"),
            "channel": _label(_B_CHANNEL, d.get("KenhThucHien")),
            "applicant_kind": _label(_B_APPLICANT, d.get("LoaiDoiTuong")),
            "status": _label(_B_STATUS, d.get("TrangThaiHoSo")), "applicant": d.get("ChuHoSo"),
            "id_no": d.get("SoGiayToChuHoSo"), "summary": d.get("TrichYeuHoSo"),
            "fee_total": fee_total(d.get("DanhSachLePhi")), "paid_online": d.get("DuocThanhToanTrucTuyen") or None,
            "received_at": _time_text(d.get("NgayTiepNhan")), "due_at": _time_text(d.get("NgayHenTra")),
            "finished_at": _time_text(d.get("NgayKetThucXuLy")),
            "returned_at": _time_text(d.get("NgayTra")), "modified_at": _time_text(d.get("NgayCapNhat")),
        })  # fmt: skip
        for step in d.get("QuaTrinhXuLy") or []:
            log_rows.append({
                "dossier_no": d["MaHoSo"], "logged_at": _time_text(step.get("ThoiDiemXuLy")),
                "status": _label(_B_STATUS, step.get("TrangThai")),
                "note": step.get("NoiDungXuLy"), "actor": step.get("NguoiXuLy"),
            })  # fmt: skip
    catalog_rows = [{
        "proc_id": local[str(p["MaTTHC"])], "proc_name": p.get("TenTTHC"),
        "field_code": p.get("MaLinhVuc"), "field_name": p.get("TenLinhVuc"),
        "online_level": _int(p.get("MucDo")), "days": _int(p.get("ThoiHanGiaiQuyet")),
        "modified_at": _time_text(p.get("NgayCapNhat")),
    } for p in procedures if p.get("MaTTHC")]  # fmt: skip
    map_rows = [{"local_code": code, "national_code": national} for national, code in local.items()]
    return [(dossier, dossier_rows), (log, log_rows), (catalog, catalog_rows), (proc_map, map_rows)]
