"""Portal records → standard records: small tables in, expected values out."""

from __future__ import annotations

import json
import unicodedata
from datetime import date, datetime

import pandas as pd
import pytest

from transforms.identity import id_number_pseudonymise, pseudonymise
from transforms.portal import dossiers_to_frames, procedures_to_frame
from transforms.text import code_normalise, int_code, text_normalise
from transforms.timefmt import LOCAL_TZ, InvalidTime, format_portal_time, parse_portal_time

KEY = b"test-key"


def portal_dossier(**overrides):
    record = {
        "MaHoSo": "000.00.04.H62-160101-0001", "MaTTHC": "1.005190", "TenTTHC": "Đăng ký thành lập doanh nghiệp",
        "DonViXuLy": "000.00.04.H62", "NoiNopHoSo": "243", "KenhThucHien": "2", "LoaiDoiTuong": "2",
        "TrangThaiHoSo": "10", "NgayTiepNhan": "20160101080000", "NgayHenTra": "20160105170000",
        "NgayKetThucXuLy": "20160104100000", "NgayTra": "20160105090000", "NgayCapNhat": "20160105090000",
        "TrichYeuHoSo": "Đăng ký mới", "ChuHoSo": "Nguyễn Văn An", "SoGiayToChuHoSo": "001099012345",
        "SoDienThoai": "0912345678", "Email": "an@example.vn", "DuocThanhToanTrucTuyen": "1",
        "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": "001099012345"}],
        "DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "Gia": "50000"}, {"Gia": "100000"}],
        "QuaTrinhXuLy": [{"ThoiDiemXuLy": "20160104100000", "TrangThai": "9"},
                         {"ThoiDiemXuLy": "20160101080000", "TrangThai": "2"},
                         {"ThoiDiemXuLy": "20160105090000", "TrangThai": "10", "NoiDungXuLy": "Trả  kết quả"}],
    }
    record.update(overrides)
    return record


@pytest.mark.parametrize("raw, expected", [
    ("Nguye\u0302\u0303n  Va\u0306n   An ", "Nguyễn Văn An"),
    ("\tThủ tục\nđăng ký ", "Thủ tục đăng ký"),
    ("", None), ("   ", None), (None, None),
])
def test_text_normalise_composes_and_folds_spaces(raw, expected):
    out = text_normalise(raw)
    assert out == expected
    if out:
        assert unicodedata.is_normalized("NFC", out)


@pytest.mark.parametrize("raw, upper, expected", [
    (" 000.00.04.h62 ", True, "000.00.04.H62"), ("1.005 190", False, "1.005190"), ("", False, None),
])
def test_code_normalise(raw, upper, expected):
    assert code_normalise(raw, upper=upper) == expected


@pytest.mark.parametrize("raw, expected", [("2", (2, True)), (" 10 ", (10, True)), ("", (None, True)),
                                           ("abc", (None, False)), (3, (3, True))])
def test_int_code(raw, expected):
    assert int_code(raw) == expected


def test_portal_time_round_trip_is_local():
    moment = parse_portal_time("20170831235959")
    assert moment == datetime(2017, 8, 31, 23, 59, 59, tzinfo=LOCAL_TZ)
    assert moment.utcoffset().total_seconds() == 7 * 3600
    assert format_portal_time(moment) == "20170831235959"
    assert parse_portal_time("") is None


@pytest.mark.parametrize("bad", ["20160230103000", "20161345000000", "2016-01-01", "31/12/2016", "2016010108"])
def test_impossible_or_malformed_times_are_refused(bad):
    with pytest.raises(InvalidTime):
        parse_portal_time(bad)


@pytest.mark.parametrize("raw, id_type, valid", [
    ("001099012345", 1, True), ("012345678", 2, True), ("012 345 678", 2, True), ("012.345.678", 2, True),
    ("0123456789", None, False), ("01234567890", None, False), ("AB1234567", None, False), ("", None, True),
])
def test_id_numbers_are_typed_by_length_and_hashed(raw, id_type, valid):
    result = id_number_pseudonymise(KEY, raw)
    assert (result.id_type, result.valid) == (id_type, valid)
    if raw:
        digits = raw.replace(" ", "").replace(".", "")
        assert result.hash == pseudonymise(KEY, digits)
        assert digits not in result.hash


def test_dossier_maps_to_the_standard():
    frame, events = dossiers_to_frames([portal_dossier()], key=KEY, first_row=7)
    row = frame.iloc[0]
    assert row["dossier_code"] == "000.00.04.H62-160101-0001"
    assert (row["channel"], row["applicant_type"], row["status"], row["paid_online"]) == (2, 2, 10, 1)
    assert row["received_at"] == pd.Timestamp("2016-01-01 08:00", tz="Asia/Ho_Chi_Minh")
    assert str(frame["received_at"].dtype) == "datetime64[ns, Asia/Ho_Chi_Minh]"
    assert row["received_month"] == "2016-01" and row["finished_date"] == date(2016, 1, 4)
    assert row["fee"] == 150000.0
    assert row["applicant_id_type"] == 1 and row["applicant_id_hash"] == pseudonymise(KEY, "001099012345")
    assert row["_row"] == 7 and row["_errors"] == [] and row["_record_key"] == "000.00.04.H62-160101-0001"
    assert list(events["status"]) == [2, 9, 10] and list(events["seq"]) == [1, 2, 3]
    assert events.iloc[2]["note"] == "Trả kết quả"


def test_raw_personal_numbers_never_leave_the_transform():
    frame, _ = dossiers_to_frames([portal_dossier()], key=KEY)
    flat = json.dumps(frame.astype(str).to_dict(orient="records"), ensure_ascii=False)
    for secret in ("001099012345", "0912345678", "an@example.vn"):
        assert secret not in flat


def test_local_month_uses_vietnam_time_not_utc():
    # 00:30 on 1 June in Vietnam is still 31 May in UTC: the report month is June.
    frame, _ = dossiers_to_frames([portal_dossier(NgayTiepNhan="20160601003000")], key=KEY)
    assert frame.iloc[0]["received_month"] == "2016-06"


@pytest.mark.parametrize("overrides, errors", [
    ({"NgayTiepNhan": "20160230103000"}, ["received_at.valid_datetime"]),
    ({"KenhThucHien": "online"}, ["channel.in_codelist"]),
    ({"SoGiayToChuHoSo": "0123456789", "DinhDanhCHS": []}, ["applicant_id.valid_format"]),
    ({"MaTTHC": ""}, []),  # emptiness is the quality stage's `procedure_code.required`
    ({"DanhSachLePhi": [], "LePhi": "1,5"}, ["fee.valid_amount"]),  # a fraction of a đồng
    ({"DanhSachLePhi": [{"Gia": "50000"}, {"Gia": "12.34.567"}]}, ["fee.valid_amount"]),
])
def test_transform_flags_what_it_cannot_read(overrides, errors):
    frame, _ = dossiers_to_frames([portal_dossier(**overrides)], key=KEY)
    assert frame.iloc[0]["_errors"] == errors


def test_fee_written_with_vietnamese_grouping_is_read_in_dong_not_as_a_decimal():
    # "50.000" is fifty thousand đồng; it used to load as 50.
    records = [portal_dossier(DanhSachLePhi=[], LePhi="50.000"),
               portal_dossier(DanhSachLePhi=[{"Gia": "1.234.567 đ"}]),
               portal_dossier(DanhSachLePhi=[], LePhi="1,5"),
               portal_dossier(DanhSachLePhi=[], LePhi="")]
    frame, _ = dossiers_to_frames(records, key=KEY)
    assert frame["fee"].tolist()[:2] == [50000.0, 1234567.0]
    assert str(frame["fee"].dtype) == "float64"  # warehouse fee is NUMERIC(14, 2): whole values
    assert frame["_errors"].tolist() == [[], [], ["fee.valid_amount"], []]
    assert pd.isna(frame.iloc[2]["fee"]) and pd.isna(frame.iloc[3]["fee"])  # refused; no fee


@pytest.mark.parametrize("written, fee, errors", [
    ("200.000", 200000.0, []), ("200,000 đ", 200000.0, []), (200000, 200000.0, []),
    ("1,5", None, ["fee.valid_amount"]), ("12.34.567", None, ["fee.valid_amount"]),
])
def test_procedure_fee_is_read_as_dong(written, fee, errors):
    record = {"MaTTHC": "1.003725", "TenTTHC": "Cấp giấy phép hoạt động in", "PhiLePhi": written}
    row = procedures_to_frame([record]).iloc[0]
    assert pd.isna(row["fee"]) if fee is None else row["fee"] == fee
    assert row["_errors"] == errors


def test_cmnd_labelled_as_cccd_is_retyped():
    record = portal_dossier(DinhDanhCHS=[{"LoaiDinhDanh": "1", "SoDinhDanh": "012 345 678"}])
    frame, _ = dossiers_to_frames([record], key=KEY)
    assert frame.iloc[0]["applicant_id_type"] == 2 and frame.iloc[0]["_errors"] == []


def test_procedure_maps_with_its_level_history():
    record = {"MaTTHC": "1.003725", "TenTTHC": "Cấp giấy phép hoạt động in", "MaLinhVuc": "XB",
              "TenLinhVuc": "Xuất bản, in và phát hành", "MaCoQuanThucHien": "000.00.11.H62",
              "CapThucHien": "1", "MucDo": "3", "PhiLePhi": "0", "ThoiHanGiaiQuyet": "10",
              "NgayCongBo": "20080801000000", "NgayBaiBo": "", "NgayCapNhat": "20141201000000",
              "LichSuMucDo": [{"MucDo": "3", "TuNgay": "20141201000000"}, {"MucDo": "2", "TuNgay": "20080801000000"}]}
    frame = procedures_to_frame([record])
    row = frame.iloc[0]
    assert row["scope"] == "province" and row["processing_days"] == 10 and row["fee"] == 0.0
    assert row["published_on"] == date(2008, 8, 1) and row["abolished_on"] is None
    assert row["levels"] == [{"online_level": 2, "valid_from": date(2008, 8, 1)},
                             {"online_level": 3, "valid_from": date(2014, 12, 1)}]
    assert row["_errors"] == []


def _masked_by_pattern(text, name):
    """`name_mask` as it was written first: the name's pattern (`name_pattern`) substituted."""
    from transforms.portal import NAME_MASK, name_pattern

    clean, person = text_normalise(text), text_normalise(name)
    if clean is None or person is None:
        return clean
    return name_pattern(person).sub(NAME_MASK, clean)


@pytest.mark.parametrize("text, name", [
    ("Cấp phép - An", "an"), ("Anan an_an an", "an"), ("an an an", "an an"), ("An1 an", "an"),
    ("Xin cấp - NGUYỄN VĂN AN", "Nguyễn Văn An"), ("Straße - STRASSE", "straße"), ("İstanbul", "i"),
    ("ſam - Sam", "sam"), ("a - ", " "), ("Đăng ký - Lê Văn Anh, Lê Văn An", "Lê Văn An"),
])
def test_name_mask_finds_what_the_pattern_finds(text, name):
    from transforms.portal import name_mask

    assert name_mask(text, name) == _masked_by_pattern(text, name)


def test_name_mask_equals_the_pattern_on_a_generated_province(province_records):
    """Every summary and processing note of the generated province, with its applicant's name."""
    from transforms.portal import name_mask

    _, dossiers = province_records
    pairs = [(d.get("TrichYeuHoSo"), d.get("ChuHoSo")) for d in dossiers]
    pairs += [(step.get("NoiDungXuLy"), d.get("ChuHoSo")) for d in dossiers
              for step in d.get("QuaTrinhXuLy") or [] if isinstance(step, dict)]
    differing = [(t, n) for t, n in pairs if name_mask(t, n) != _masked_by_pattern(t, n)]
    assert len(pairs) > 10_000
    assert not differing, differing[:5]
