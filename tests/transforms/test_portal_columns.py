"""The column-by-column dossier transform gives what the record-by-record one gave.

`tests/transforms/portal_reference.py` keeps the transform as it was first written, one record at
a time; `transforms.portal.dossiers_to_frames` reads a chunk column by column (times parsed
together, repeated values normalised once). Both must give the same frames for every record of a
generated province and for records that break every rule the transform itself reports.
"""

from __future__ import annotations

import copy
import json
import random

import pandas as pd
import pytest

from tests.transforms import portal_reference
from transforms.identity import KeyChain
from transforms.portal import dossiers_to_frames

KEY = KeyChain.of([b"old-key", b"new-key"])


def _same_frames(records: list[dict]) -> None:
    frame, events = dossiers_to_frames(records, key=KEY, first_row=3)
    expected, expected_events = portal_reference.dossiers_to_frames(records, key=KEY, first_row=3)
    # the payload is the same JSON; its spacing is the encoder's
    assert [json.loads(p) for p in frame.pop("_payload")] == [json.loads(p) for p in expected.pop("_payload")]
    pd.testing.assert_frame_equal(frame, expected, check_dtype=True)
    pd.testing.assert_frame_equal(events, expected_events, check_dtype=True)


def test_every_record_of_a_generated_province(province_records):
    _, dossiers = province_records
    for start in range(0, len(dossiers), 5000):
        _same_frames(dossiers[start:start + 5000])


# Values that each break one rule the transform reports, or sit at the edge of one.
HOSTILE = {
    "NgayTiepNhan": ["20160230103000", " 20160101080000", "2016-01-01 08:00", "00010101000000",
                     "99991231235959", "18991231235959", "21991231235959", "19591231233000",
                     "19430101003000", "２０１６０１０１０８００００", 20160101080000, "", None, [], "2016010108"],
    "NgayCapNhat": ["20161301000000", "20160101240000", "20160101236000", "20160229235959", "20150229000000"],
    "KenhThucHien": ["online", " 2 ", 3, True, 2.0, "99999999999999999999", "-1", "", None, "٣"],
    "TrangThaiHoSo": ["10", "abc", 10**30, None],
    "SoGiayToChuHoSo": ["012 345 678", "012.345.678", "0123456789", "AB1234567", "", 123456789],
    "DinhDanhCHS": [[], [{"SoDinhDanh": " "}], [{"SoDinhDanh": "001099012345"}], "x", [1, None]],
    "DanhSachLePhi": [[], [{"Gia": "1,5"}], [{"Gia": "50.000 đ"}, {"Gia": ""}], [{"Gia": 10**13}], ["x"], None],
    "LePhi": ["1,5", "50.000", 12.5, "", None, "1e3"],
    "MaHoSo": [" 000.00.04.h62-160101-0001 ", "A\x00B", "", None, 12345, "Mã-hồ-sơ"],
    "MaTTHC": ["1.005190", " 1.005 190", "", None, 7],
    "TenTTHC": ["Nguye\u0302\u0303n  Va\u0306n", "a\x1bb", "", None],
    "TrichYeuHoSo": ["Đề nghị - NGUYỄN VĂN AN", "Straße - STRASSE", "", None, "An1 an - an"],
    "ChuHoSo": ["Nguyễn Văn An", "straße", "an", " ", None],
    "QuaTrinhXuLy": [None, "x", [1, {"ThoiDiemXuLy": "20160101080000", "TrangThai": "2"}],
                     [{"ThoiDiemXuLy": "20160230000000", "TrangThai": "2"},
                      {"ThoiDiemXuLy": "20160101080000", "TrangThai": "99"},
                      {"ThoiDiemXuLy": "20160101090000", "TrangThai": "4", "NoiDungXuLy": "Gặp  nguyễn văn an",
                       "NguoiXuLy": "Cán bộ"},
                      {"ThoiDiemXuLy": "20160101080000", "TrangThai": 2, "NoiDungXuLy": None}]],
}


def test_records_that_break_the_rules(province_records):
    _, dossiers = province_records
    base = dossiers[:200]
    records = []
    for field, values in HOSTILE.items():
        for value in values:
            record = copy.deepcopy(base[(len(records) * 7) % len(base)])
            record[field] = value
            records.append(record)
    rng = random.Random(11)
    for _ in range(300):  # and several at once
        record = copy.deepcopy(rng.choice(base))
        for field in rng.sample(sorted(HOSTILE), 3):
            record[field] = rng.choice(HOSTILE[field])
        records.append(record)
    _same_frames(records)


@pytest.mark.parametrize("size", [0, 1])
def test_an_empty_or_single_chunk(province_records, size):
    _, dossiers = province_records
    _same_frames(dossiers[:size])
