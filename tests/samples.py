"""Sample records shared by tests of several packages."""

from __future__ import annotations

from typing import Any


def justice_dossier(n: int, name: str, **overrides: Any) -> dict[str, Any]:
    """Dossier `n` of the Dept. of Justice in the portal shape (a TCVN3-writable name), with `overrides`."""
    record = {
        "MaHoSo": f"000.00.03.H62-170{n:03d}-{n:04d}", "SoBienNhan": f"TP-{n:04d}",
        "MaTTHC": "1.001234", "TenTTHC": "Cấp phiếu lý lịch tư pháp cho công dân Việt Nam",
        "MaLinhVuc": "LLTP", "TenLinhVuc": "Lý lịch tư pháp", "ChuHoSo": name,
        "LoaiDoiTuong": "1", "SoGiayToChuHoSo": f"0260{n:08d}", "SoDienThoai": "0912345678",
        "Email": "", "TrichYeuHoSo": f"Đề nghị cấp phiếu lý lịch tư pháp số 1; \"khẩn\" - {name}",
        "NgayNopHoSo": "20170301080000", "NgayTiepNhan": f"201703{n + 1:02d}081530",
        "NgayHenTra": f"201703{n + 11:02d}000000", "NgayKetThucXuLy": f"201703{n + 9:02d}163000",
        "NgayTra": "", "NgayCapNhat": f"201703{n + 9:02d}163000", "TrangThaiHoSo": "9",
        "KenhThucHien": "2" if n % 2 else "1", "NoiNopHoSo": "08707",
        "DuocThanhToanTrucTuyen": "3",
        "DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "MaPhiLePhi": "", "HinhThucThu": "1",
                           "Gia": "200000", "LoaiPhiLePhi": "2"}] if n % 2 else [],
    }
    record.update(overrides)
    return record
