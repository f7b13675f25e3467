"""File-drop connector against the drop-file writers: round trips, encodings, archive, rejects."""

from __future__ import annotations

import hashlib
import shutil
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import pytest

from connectors.filedrop import JUSTICE_AGENCY, FileDropConnector
from simulators.filedrop import (
    commune_report_rows,
    write_commune_report_xlsx,
    write_justice_csv,
    write_procedure_catalogue_xlsx,
)
from simulators.generator import generate_province, load_records
from tests.samples import justice_dossier
from transforms.legacy_encoding import encode_legacy
from transforms.portal import dossiers_to_frames

PROCEDURES = [
    {
        "MaTTHC": "1.001234", "TenTTHC": "Cấp bản sao trích lục hộ tịch", "MaLinhVuc": "HT",
        "TenLinhVuc": "Hộ tịch", "MaCoQuanThucHien": "000.00.03.H62", "CapThucHien": "1",
        "MucDo": "3", "PhiLePhi": "8000", "ThoiHanGiaiQuyet": "3", "NgayCongBo": "20150520000000",
    },
    {
        "MaTTHC": "2.000987", "TenTTHC": "Đăng ký khai sinh có yếu tố nước ngoài",
        "MaLinhVuc": "HT", "TenLinhVuc": "Hộ tịch", "MaCoQuanThucHien": "001.00.00.H62",
        "CapThucHien": "3", "MucDo": "2", "PhiLePhi": "0", "ThoiHanGiaiQuyet": "15",
        "NgayCongBo": "20161101083000",
    },
]

# Every tone (ngang, huyền, sắc, hỏi, ngã, nặng), đ/Đ, ư/ơ; no upper-case toned letter (TCVN3 has none).
NAMES = ["Nguyễn Thị Hường", "Đặng Đức Tuấn", "Trần Bảo Ngọc", "Lê Văn Mỹ", "Phạm Thị Thoa"]


DOSSIERS = [justice_dossier(n, name) for n, name in enumerate(NAMES, start=1)]
CSV_FIELDS = [field for field in DOSSIERS[0] if field != "DanhSachLePhi"]
REPORT = [
    {"procedure_code": "1.001234", "procedure_name": "Chứng thực bản sao", "received": 40,
     "online": 3, "on_time": 35, "late": 2, "pending": 3},
    {"procedure_code": "2.000987", "procedure_name": "Đăng ký khai sinh", "received": 12,
     "online": 0, "on_time": 12, "late": 0, "pending": 0},
]


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict]]:
    """The generated province without filler dossiers: its procedures and its dossiers."""
    out = tmp_path_factory.mktemp("province")
    generate_province(out, seed=2017, filler_dossiers=0)
    return list(load_records(out / "procedures.jsonl")), list(load_records(out / "dossiers.jsonl"))


def _read_all(connector: FileDropConnector, stream: str) -> list[dict[str, Any]]:
    return [record for chunk in connector.read(stream) for record in chunk]


def _fee(record: dict[str, Any]) -> int:
    return sum(int(item["Gia"]) for item in record["DanhSachLePhi"])


def test_catalogue_round_trip(tmp_path: Path) -> None:
    write_procedure_catalogue_xlsx(tmp_path / "catalogue_2017.xlsx", PROCEDURES)

    records = _read_all(FileDropConnector(tmp_path), "procedure_catalogue")

    assert [{field: r[field] for field in PROCEDURES[0]} for r in records] == PROCEDURES
    assert records[1]["LichSuMucDo"] == [{"MucDo": "2", "TuNgay": "20161101083000"}]


def test_commune_report_round_trip(tmp_path: Path) -> None:
    write_commune_report_xlsx(tmp_path / "baocao_08707_2017-05.xlsx", "08707", "2017-05", REPORT,
                              commune_name="Phường Tích Sơn")

    records = _read_all(FileDropConnector(tmp_path), "service_stat")

    fields = ("procedure_code", "received", "online", "on_time", "late", "pending")
    assert records == [
        {"commune_code": "08707", "month": "2017-05", **{f: row[f] for f in fields},
         "_file": "baocao_08707_2017-05.xlsx"}
        for row in REPORT
    ]


def test_commune_report_rows_count_portal_dossiers() -> None:
    rows = commune_report_rows(DOSSIERS, "08707", "2017-03")

    assert rows == [{"procedure_code": "1.001234", "procedure_name": DOSSIERS[0]["TenTTHC"],
                     "received": 5, "online": 3, "on_time": 5, "late": 0, "pending": 0}]


@pytest.mark.parametrize("encoding", ["tcvn3", "vni"])
@pytest.mark.parametrize("declared", ["argument", "sidecar", "detected"])
def test_justice_csv_round_trips_to_nfc(tmp_path: Path, encoding: str, declared: str) -> None:
    path = tmp_path / "tuphap_2017-03.csv"
    write_justice_csv(path, DOSSIERS, encoding=encoding)
    assert encode_legacy("Nguyễn Thị Hường", encoding) in path.read_bytes()
    encodings = {path.name: encoding} if declared == "argument" else None
    if declared == "sidecar":
        path.with_name(path.name + ".encoding").write_text(encoding + "\n")

    records = _read_all(FileDropConnector(tmp_path, encodings=encodings), "justice_csv")

    assert [{f: r[f] for f in CSV_FIELDS} for r in records] == [{f: d[f] for f in CSV_FIELDS}
                                                                 for d in DOSSIERS]
    assert [_fee(r) for r in records] == [_fee(d) for d in DOSSIERS]
    assert {r["DonViXuLy"] for r in records} == {JUSTICE_AGENCY}
    for record in records:
        assert unicodedata.is_normalized("NFC", record["ChuHoSo"])


def test_justice_csv_dates_become_portal_times(tmp_path: Path) -> None:
    (tmp_path / "tuphap_x.csv").write_bytes(
        "Mã hồ sơ;Mã TTHC;Ngày tiếp nhận;Ngày hẹn trả;Trạng thái\r\n"
        "HS-1;1.001234;05/03/2017 08:15;7/3/2017;2\r\n"
        "HS-2;1.001234;31/02/2017;;2\r\n".encode()
    )

    records = _read_all(FileDropConnector(tmp_path), "justice_csv")

    assert [(r["NgayTiepNhan"], r["NgayHenTra"]) for r in records] == [
        ("20170305081500", "20170307000000"), ("31/02/2017", "")]


def test_justice_records_transform_without_errors(tmp_path: Path) -> None:
    write_justice_csv(tmp_path / "tuphap_2017-03.csv", DOSSIERS, encoding="vni")
    records = _read_all(FileDropConnector(tmp_path), "justice_csv")

    frame, _events = dossiers_to_frames(records, key=b"k")

    assert frame["_errors"].map(len).sum() == 0
    assert list(frame["agency_code"].unique()) == [JUSTICE_AGENCY]
    assert frame["fee"].fillna(0).tolist() == [200000.0, 0.0, 200000.0, 0.0, 200000.0]


def test_records_come_in_chunks(tmp_path: Path) -> None:
    write_justice_csv(tmp_path / "tuphap_a.csv", DOSSIERS, encoding="tcvn3")

    chunks = list(FileDropConnector(tmp_path, chunk_size=2).read("justice_csv"))

    assert [len(chunk) for chunk in chunks] == [2, 2, 1]


def test_file_is_archived_by_checksum_and_never_loaded_twice(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    path = drop / "tuphap_2017-03.csv"
    write_justice_csv(path, DOSSIERS, encoding="tcvn3")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    kept = tmp_path / "copy.csv"
    shutil.copy(path, kept)

    first = FileDropConnector(drop)
    assert len(_read_all(first, "justice_csv")) == len(DOSSIERS)
    assert first.commit_files() == [drop / "archive" / f"{digest}__tuphap_2017-03.csv"]
    assert not path.exists()

    shutil.copy(kept, path)  # dropped again
    shutil.copy(kept, drop / "tuphap_renamed.csv")  # and a renamed copy
    second = FileDropConnector(drop)
    assert _read_all(second, "justice_csv") == []
    assert second.skipped == [path, drop / "tuphap_renamed.csv"]
    assert second.processed == []
    assert second.commit_files() == []


def test_renamed_copy_in_the_same_drop_is_read_once(tmp_path: Path) -> None:
    write_justice_csv(tmp_path / "tuphap_a.csv", DOSSIERS, encoding="vni")
    shutil.copy(tmp_path / "tuphap_a.csv", tmp_path / "tuphap_b.csv")

    connector = FileDropConnector(tmp_path)

    assert len(_read_all(connector, "justice_csv")) == len(DOSSIERS)
    assert connector.skipped == [tmp_path / "tuphap_b.csv"]


def test_files_stay_until_commit_files(tmp_path: Path) -> None:
    write_procedure_catalogue_xlsx(tmp_path / "catalogue.xlsx", PROCEDURES)

    connector = FileDropConnector(tmp_path)
    _read_all(connector, "procedure_catalogue")

    assert connector.processed == [tmp_path / "catalogue.xlsx"]
    assert (tmp_path / "catalogue.xlsx").exists()
    # A failed load: no commit; the next run reads the file again.
    assert len(_read_all(FileDropConnector(tmp_path), "procedure_catalogue")) == len(PROCEDURES)


def test_unreadable_files_are_rejected_and_the_others_read(tmp_path: Path) -> None:
    write_procedure_catalogue_xlsx(tmp_path / "catalogue_a.xlsx", PROCEDURES)
    (tmp_path / "catalogue_b.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    write_commune_report_xlsx(tmp_path / "catalogue_c.xlsx", "08707", "2017-05", REPORT)  # wrong sheet
    write_justice_csv(tmp_path / "tuphap_good.csv", DOSSIERS, encoding="tcvn3")
    # 0x80 is Windows-1252's euro sign, which a TCVN3 file may hold (mapped); 0x81 is a letter of
    # neither TCVN3 nor VNI, nothing in Windows-1252, nor valid UTF-8.
    (tmp_path / "tuphap_bad.csv").write_bytes(
        encode_legacy("Mã hồ sơ;Mã TTHC;Ngày tiếp nhận;Trạng thái\r\nHS-1;1.001234;01/03/2017;", "tcvn3")
        + b"\x80\x81\r\n")
    (tmp_path / "tuphap_bad.csv.encoding").write_text("tcvn3")

    connector = FileDropConnector(tmp_path)
    procedures = _read_all(connector, "procedure_catalogue")
    dossiers = _read_all(connector, "justice_csv")

    assert [p["MaTTHC"] for p in procedures] == [p["MaTTHC"] for p in PROCEDURES]
    assert len(dossiers) == len(DOSSIERS)
    assert connector.rejected == [tmp_path / "catalogue_b.xlsx", tmp_path / "catalogue_c.xlsx",
                                  tmp_path / "tuphap_bad.csv"]
    rejected = tmp_path / "rejected"
    for name in ("catalogue_b.xlsx", "catalogue_c.xlsx", "tuphap_bad.csv"):
        assert not (tmp_path / name).exists()
        assert (rejected / name).exists()
        reason = (rejected / f"{name}.reason.txt").read_text(encoding="utf-8")
        assert reason.endswith("\n") and reason.count("\n") == 1
    assert "xlsx" in (rejected / "catalogue_b.xlsx.reason.txt").read_text(encoding="utf-8")
    assert "Mã TTHC" in (rejected / "catalogue_c.xlsx.reason.txt").read_text(encoding="utf-8")
    assert "byte 0x81 at offset 26" in (rejected / "tuphap_bad.csv.reason.txt").read_text(encoding="utf-8")
    digests = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
               for name in ("catalogue_a.xlsx", "tuphap_good.csv")}
    assert sorted(p.name for p in connector.commit_files()) == sorted(
        f"{digest}__{name}" for name, digest in digests.items())


def test_report_whose_title_contradicts_its_name_is_rejected(tmp_path: Path) -> None:
    write_commune_report_xlsx(tmp_path / "baocao_08710_2017-05.xlsx", "08707", "2017-05", REPORT)

    connector = FileDropConnector(tmp_path)

    assert _read_all(connector, "service_stat") == []
    reason = (tmp_path / "rejected" / "baocao_08710_2017-05.xlsx.reason.txt").read_text(encoding="utf-8")
    assert "08707" in reason and "08710" in reason


def test_generated_catalogue_round_trips(tmp_path: Path, province: tuple[list[dict], list[dict]]) -> None:
    procedures, _ = province
    write_procedure_catalogue_xlsx(tmp_path / "catalogue.xlsx", procedures)

    records = _read_all(FileDropConnector(tmp_path, chunk_size=500), "procedure_catalogue")

    fields = list(PROCEDURES[0])
    assert [{f: r[f] for f in fields} for r in records] == [{f: p[f] for f in fields} for p in procedures]


@pytest.mark.parametrize("encoding", ["tcvn3", "vni"])
def test_generated_justice_dossiers_round_trip(tmp_path: Path, province: tuple[list[dict], list[dict]],
                                               encoding: str) -> None:
    justice = [d for d in province[1] if d["DonViXuLy"] == JUSTICE_AGENCY][:600]
    write_justice_csv(tmp_path / "tuphap_2017.csv", justice, encoding=encoding)

    records = _read_all(FileDropConnector(tmp_path), "justice_csv")

    assert [{f: r[f] for f in CSV_FIELDS} for r in records] == [{f: d.get(f, "") for f in CSV_FIELDS}
                                                                 for d in justice]


def test_sheet_damaged_mid_file_yields_nothing_of_it(tmp_path: Path) -> None:
    source = tmp_path / "good.xlsx"
    write_procedure_catalogue_xlsx(source, PROCEDURES * 200)
    with zipfile.ZipFile(source) as whole, zipfile.ZipFile(tmp_path / "catalogue_cut.xlsx", "w") as cut:
        for item in whole.infolist():
            content = whole.read(item)
            if item.filename.startswith("xl/worksheets/"):
                content = content[: len(content) // 2]  # rows readable up to here, then broken XML
            cut.writestr(item, content)

    connector = FileDropConnector(tmp_path)

    assert _read_all(connector, "procedure_catalogue") == []
    assert connector.rejected == [tmp_path / "catalogue_cut.xlsx"]
    assert "XML" in (tmp_path / "rejected" / "catalogue_cut.xlsx.reason.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "sidecar", "reason"),
    [
        (encode_legacy("Mã hồ sơ;Chủ hồ sơ\r\nHS-1;Lê Văn Mỹ\r\n", "vni"), "vni", "missing column"),
        (b"M\x81 h\x8d;x\r\n", None, "not valid UTF-8, TCVN3, VNI or cp1258"),
        (encode_legacy("Mã hồ sơ;Mã TTHC;Ngày tiếp nhận;Trạng thái\r\nHS-1;1.001234\r\n", "tcvn3"),
         "tcvn3", "line 2: 2 fields"),
        (b"Ma ho so;Ma TTHC\r\n", "koi8-r", "koi8-r"),
    ],
    ids=["wrong-header", "undetectable", "short-line", "bad-sidecar"],
)
def test_unreadable_csv_is_rejected_with_its_sidecar(tmp_path: Path, content: bytes, sidecar: str | None,
                                                     reason: str) -> None:
    path = tmp_path / "tuphap_bad.csv"
    path.write_bytes(content)
    if sidecar:
        path.with_name(path.name + ".encoding").write_text(sidecar)

    connector = FileDropConnector(tmp_path)

    assert _read_all(connector, "justice_csv") == []
    assert connector.rejected == [path]
    assert reason in (tmp_path / "rejected" / "tuphap_bad.csv.reason.txt").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rejected"]
