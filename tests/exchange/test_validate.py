"""`lienthong validate`: planted defects listed by row, field and rule in every input format; clean
files pass; unreadable files end in one line and exit 2; every rule the gate emits has a message."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from openpyxl import Workbook

from connectors.filedrop import JUSTICE_AGENCY, JUSTICE_COLUMNS, JUSTICE_DATE_FIELDS
from exchange.validate import gate_rule_ids, load_messages
from pipeline.cli import main
from simulators.filedrop import write_justice_csv, write_procedure_catalogue_xlsx
from simulators.lgsp import build_message, build_xxe_message
from tests.samples import justice_dossier

NAMES = ["Nguyễn Thị Hường", "Đặng Đức Tuấn", "Trần Bảo Ngọc", "Lê Văn Mỹ", "Phạm Thị Thoa",
         "Vũ Minh Châu", "Hoàng Văn Bình"]


def _dossier(n: int, name: str) -> dict[str, Any]:
    """A clean Dept. of Justice dossier (portal shape): no rule of the standard broken."""
    return justice_dossier(n, name, TrichYeuHoSo=f"Đề nghị cấp phiếu lý lịch tư pháp số 1 - {name}",
                           DonViXuLy=JUSTICE_AGENCY)


CLEAN = [_dossier(n, name) for n, name in enumerate(NAMES, start=1)]
# Planted defects: record index → (changes, portal field, rule). Records 5 and 6 stay clean.
DEFECTS = {
    0: ({"NgayTiepNhan": ""}, "NgayTiepNhan", "received_at.required"),
    1: ({"NgayTiepNhan": "2017-13-45"}, "NgayTiepNhan", "received_at.valid_datetime"),
    2: ({"DonViXuLy": "000.00.99.H62"}, "DonViXuLy", "agency_code.in_codelist"),
    3: ({"NgayHenTra": "20170101000000"}, "NgayHenTra", "due_at.not_before_received_at"),
    4: ({"SoGiayToChuHoSo": "0123456789"}, "SoGiayToChuHoSo", "applicant_id.valid_format"),
}
DEFECTIVE = [{**record, **DEFECTS[i][0]} if i in DEFECTS else record for i, record in enumerate(CLEAN)]
FLAT_FIELDS = [f for f in CLEAN[0] if f != "DanhSachLePhi"]


def _expected(first_row: int, skip: tuple[int, ...] = ()) -> set[tuple[int, str, str]]:
    return {(first_row + i, field, rule) for i, (_, field, rule) in DEFECTS.items() if i not in skip}


def _write_csv(path: Path, records: list[dict], delimiter: str = ",") -> None:
    lines = [delimiter.join(FLAT_FIELDS)]
    lines += [delimiter.join(str(r[f]) for f in FLAT_FIELDS) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_justice_xlsx(path: Path, records: list[dict]) -> None:
    """The Justice export's Vietnamese headers under a two-row title block (data from row 4)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["SỞ TƯ PHÁP TỈNH VĨNH PHÚC — DANH SÁCH HỒ SƠ"])
    sheet.append([])
    sheet.append(list(JUSTICE_COLUMNS))
    for record in records:
        row = []
        for field in JUSTICE_COLUMNS.values():
            value = record.get(field, "")
            if field == "DanhSachLePhi":
                value = sum(int(i["Gia"]) for i in value) if value else ""
            elif field in JUSTICE_DATE_FIELDS and re.fullmatch(r"\d{14}", str(value)):
                value = f"{value[6:8]}/{value[4:6]}/{value[:4]} {value[8:10]}:{value[10:12]}"
            row.append(value)
        sheet.append(row)
    workbook.save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input format, defective and clean, plus unreadable files, written once."""
    out = tmp_path_factory.mktemp("validate")
    made: dict[str, Path] = {}

    def put(name: str, data: bytes | str) -> None:
        made[name] = out / name
        if isinstance(data, bytes):
            made[name].write_bytes(data)
        else:
            made[name].write_text(data, encoding="utf-8")

    put("bad.json", json.dumps(DEFECTIVE, ensure_ascii=False, indent=1))
    put("good.json", json.dumps({"error_code": "00", "result": CLEAN}, ensure_ascii=False))
    put("bad.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in DEFECTIVE))
    for name, records in (("bad.csv", DEFECTIVE), ("good.csv", CLEAN)):
        made[name] = out / name
        _write_csv(made[name], records)
    made["bad_tcvn3.txt"] = out / "bad_tcvn3.txt"  # the content, not the name, says CSV
    write_justice_csv(made["bad_tcvn3.txt"], DEFECTIVE, encoding="tcvn3")
    made["good_vni.csv"] = out / "good_vni.csv"
    write_justice_csv(made["good_vni.csv"], CLEAN, encoding="vni")
    for name, records in (("bad.xlsx", DEFECTIVE), ("good.xlsx", CLEAN)):
        made[name] = out / name
        _write_justice_xlsx(made[name], records)
    # XML: the schema itself refuses an empty or malformed NgayTiepNhan, so plant those apart.
    xml_defects = [{**r, **DEFECTS[i][0]} if i in (2, 3, 4) else r for i, r in enumerate(CLEAN)]
    put("bad.xml", build_message(xml_defects, "000.00.03.H62", "000.00.00.H62", "msg-1"))
    put("good.xml", build_message(CLEAN, "000.00.03.H62", "000.00.00.H62", "msg-2"))
    # One violation near the top of a pretty-printed message (line numbers to find), one further on.
    schema_bad = [DEFECTIVE[1], CLEAN[5], {**CLEAN[6], "NgayCapNhat": "201703"}]
    message = build_message(schema_bad, "000.00.03.H62", "000.00.00.H62", "msg-3")
    put("schema.xml", etree.tostring(etree.fromstring(message), pretty_print=True,
                                     xml_declaration=True, encoding="UTF-8"))
    put("procedures.json", json.dumps([
        {"MaTTHC": "1.001234", "TenTTHC": "Cấp phiếu lý lịch tư pháp", "MaLinhVuc": "LLTP",
         "TenLinhVuc": "Lý lịch tư pháp", "MaCoQuanThucHien": JUSTICE_AGENCY, "CapThucHien": "1",
         "MucDo": "3", "LichSuMucDo": [{"MucDo": "3", "TuNgay": "20150520000000"}],
         "PhiLePhi": "200000", "ThoiHanGiaiQuyet": "10", "NgayCongBo": "20150520000000",
         "NgayBaiBo": "", "NgayCapNhat": "20150520000000"},
        {"MaTTHC": "2.000987", "TenTTHC": "Đăng ký khai sinh", "MaLinhVuc": "HT",
         "TenLinhVuc": "Hộ tịch", "MaCoQuanThucHien": JUSTICE_AGENCY, "CapThucHien": "9",
         "MucDo": "2", "LichSuMucDo": [{"MucDo": "2", "TuNgay": "20161101000000"}],
         "PhiLePhi": "0", "ThoiHanGiaiQuyet": "15", "NgayCongBo": "20161101000000",
         "NgayBaiBo": "", "NgayCapNhat": "20161101000000"},
    ], ensure_ascii=False))
    made["catalogue.xlsx"] = out / "catalogue.xlsx"
    write_procedure_catalogue_xlsx(made["catalogue.xlsx"], [
        {"MaTTHC": "1.001234", "TenTTHC": "Cấp phiếu lý lịch tư pháp", "MaLinhVuc": "LLTP",
         "TenLinhVuc": "Lý lịch tư pháp", "MaCoQuanThucHien": JUSTICE_AGENCY, "CapThucHien": "1",
         "MucDo": "3", "PhiLePhi": "200000", "ThoiHanGiaiQuyet": "10",
         "NgayCongBo": "20150520000000"}])
    # Unreadable.
    text = made["bad.json"].read_bytes()
    put("cut.json", text[: len(text) // 2])
    xlsx = made["good.xlsx"].read_bytes()
    put("cut.xlsx", xlsx[: len(xlsx) // 2])
    put("random.csv", os.urandom(4096))
    put("image.json", b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    put("xxe.xml", build_xxe_message())
    put("headers.csv", "a;b;c\n1;2;3\n")
    return made


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *map(str, argv)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _findings(capsys, path: Path, *options: str) -> tuple[int, dict]:
    code, out, _ = _run(capsys, path, "--format", "json", *options)
    return code, json.loads(out)


def _triples(report: dict) -> set[tuple[int, str, str]]:
    return {(f["row"], f["field"], f["rule"]) for f in report["findings"] if f["row"] is not None}


# ── planted defects ──────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name, fmt, encoding, first_row, skip", [
    ("bad.json", "json", "utf-8", 1, ()),  # record index, 1-based
    ("bad.jsonl", "jsonl", "utf-8", 1, ()),  # line of the file
    ("bad.csv", "csv", "utf-8", 2, ()),  # line, the header being line 1
    ("bad_tcvn3.txt", "csv", "tcvn3", 2, (2,)),  # the Justice export has no agency column
    ("bad.xlsx", "xlsx", None, 4, (2,)),  # sheet row, under a title block and the header
])
def test_planted_defects_are_listed_by_row_field_and_rule(capsys, files, name, fmt, encoding,
                                                          first_row, skip):
    code, report = _findings(capsys, files[name])

    assert code == 1
    assert (report["format"], report["encoding"], report["entity"]) == (fmt, encoding, "dossier")
    assert _triples(report) == _expected(first_row, skip)
    assert report["rows"] == len(CLEAN)
    assert report["invalid_rows"] == len(DEFECTS) - len(skip)


def test_text_report_lines_and_summary(capsys, files):
    code, out, _ = _run(capsys, files["bad.csv"])

    assert code == 1
    lines = out.splitlines()
    assert ('dòng 3, NgayTiepNhan: received_at.valid_datetime — Ngày tiếp nhận (NgayTiepNhan) '
            'không đúng định dạng yyyyMMddHHmmss (giá trị: "2017-13-45")') in lines
    assert "dòng 2, NgayTiepNhan: received_at.required — Thiếu ngày tiếp nhận (NgayTiepNhan)" in lines
    assert lines[-1] == "7 dòng, 5 dòng lỗi, 5 lỗi"
    # The ID number is never shown in full.
    assert "0123456789" not in out
    assert '(giá trị: "01******89")' in out


def test_vietnamese_headers_are_named_as_written(capsys, files):
    code, out, _ = _run(capsys, files["bad_tcvn3.txt"])

    assert code == 1
    assert "Tệp bad_tcvn3.txt: CSV, mã hoá tcvn3, hồ sơ" in out
    assert "dòng 3, Ngày tiếp nhận (NgayTiepNhan): received_at.valid_datetime" in out


def test_english(capsys, files):
    code, out, _ = _run(capsys, files["bad.xlsx"], "--lang", "en")

    assert code == 1
    assert "row 4, Ngày tiếp nhận (NgayTiepNhan): received_at.required — Receipt date " \
           "(NgayTiepNhan) is missing" in out
    assert out.splitlines()[-1] == "7 rows, 4 invalid rows, 4 errors"
    assert "Rule procedure_code.in_catalogue (procedure code in the catalogue) not checked" in out


def test_json_matches_text(capsys, files):
    _, report = _findings(capsys, files["bad.json"])
    _, out, _ = _run(capsys, files["bad.json"])

    assert set(report) == {"file", "format", "encoding", "entity", "rows", "invalid_rows",
                           "findings", "notes"}
    for finding in report["findings"]:
        assert {"row", "field", "rule", "value", "message"} <= set(finding)
        assert f"bản ghi {finding['row']}, {finding['field']}: {finding['rule']} — " \
               f"{finding['message']}" in out
    assert out.splitlines()[-1] == f"7 dòng, 5 dòng lỗi, {len(report['findings'])} lỗi"
    assert any("procedure_code.in_catalogue" in note for note in report["notes"])


def test_xml_row_defects_by_dossier_position(capsys, files):
    code, report = _findings(capsys, files["bad.xml"])

    assert code == 1
    assert report["format"] == "xml"
    assert _triples(report) == _expected(1, skip=(0, 1))


def test_xml_schema_violations_are_file_findings_with_their_lines(capsys, files):
    code, report = _findings(capsys, files["schema.xml"])

    assert code == 1
    file_level = [f for f in report["findings"] if f["row"] is None]
    assert [(f["rule"], f["field"], f["value"]) for f in file_level] == [
        ("message.refused", "NgayTiepNhan", "2017-13-45"), ("message.refused", "NgayCapNhat", "201703")]
    lines = files["schema.xml"].read_text(encoding="utf-8").splitlines()
    for finding in file_level:
        assert f"<{finding['field']}>{finding['value']}<" in lines[finding["line"] - 1]
    assert _triples(report) == {(1, "NgayTiepNhan", "received_at.valid_datetime"),
                                (3, "NgayCapNhat", "updated_at.valid_datetime")}
    _, out, _ = _run(capsys, files["schema.xml"])
    assert f"dòng {file_level[0]['line']} của tệp, NgayTiepNhan: message.refused — " in out


def test_catalogue_rule_checked_when_a_catalogue_is_given(capsys, files):
    records = [dict(r) for r in CLEAN[:2]]
    records[1]["MaTTHC"] = "2.000111"
    path = files["good.json"].with_name("catalogue_check.json")
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")

    code, report = _findings(capsys, path, "--catalogue", files["catalogue.xlsx"])

    assert code == 1
    assert _triples(report) == {(2, "MaTTHC", "procedure_code.in_catalogue")}
    assert not any("not checked" in n or "Chưa kiểm tra" in n for n in report["notes"])


def test_catalogue_from_the_warehouse(capsys, files, monkeypatch, sqlite_url):
    from datetime import UTC, date, datetime

    from warehouse.db import create_engine, upgrade
    from warehouse.schema import dim_procedure

    upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(dim_procedure.insert(), [{
            "procedure_code": "2.000111", "name": "Thủ tục khác", "field_code": "HT",
            "agency_code": JUSTICE_AGENCY, "scope": "province", "published_on": date(2015, 5, 20),
            "source_system": "file_drop", "batch_id": "test", "updated_at": datetime(2017, 1, 1, tzinfo=UTC)}])
    engine.dispose()
    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)

    code, report = _findings(capsys, files["good.json"], "--warehouse")

    assert code == 1  # 1.001234 is not in that warehouse's catalogue
    assert _triples(report) == {(i, "MaTTHC", "procedure_code.in_catalogue") for i in range(1, 8)}


def test_missing_dossier_code_is_one_finding(capsys, files):
    path = files["good.json"].with_name("no_code.json")
    path.write_text(json.dumps([{**CLEAN[0], "MaHoSo": ""}], ensure_ascii=False), encoding="utf-8")

    code, report = _findings(capsys, path, "--lang", "en")

    assert code == 1
    assert [(f["field"], f["rule"], f["message"]) for f in report["findings"]] == [
        ("MaHoSo", "dossier_code.required", "Dossier code (MaHoSo) is missing")]


def test_procedures_are_detected_and_checked(capsys, files):
    code, report = _findings(capsys, files["procedures.json"])

    assert code == 1
    assert report["entity"] == "procedure"
    assert _triples(report) == {(2, "CapThucHien", "scope.in_codelist")}


# ── clean and unreadable files ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name, fmt", [
    ("good.json", "json"), ("good.csv", "csv"), ("good_vni.csv", "csv"), ("good.xlsx", "xlsx"),
    ("good.xml", "xml"),
])
def test_clean_file_exits_0(capsys, files, name, fmt):
    code, out, err = _run(capsys, files[name])

    assert code == 0, out
    assert out.splitlines()[-1] == "7 dòng, 0 dòng lỗi, 0 lỗi"
    assert f": {fmt.upper()}, " in out.splitlines()[0]
    assert err == ""


def test_legacy_encoding_is_detected(capsys, files):
    _, report = _findings(capsys, files["good_vni.csv"])
    assert report["encoding"] == "vni"


@pytest.mark.parametrize("name, words", [
    ("cut.json", "JSON"),
    ("cut.xlsx", "xlsx"),
    ("random.csv", "nhị phân"),
    ("image.json", "PNG"),
    ("xxe.xml", "an toàn"),
    ("headers.csv", "tiêu đề"),
])
def test_unreadable_file_exits_2_with_one_line(capsys, files, name, words):
    code, out, err = _run(capsys, files[name])

    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lienthong: error: {files[name]}: ")
    assert words in lines[0]


def test_unreadable_in_english(capsys, files):
    code, _, err = _run(capsys, files["xxe.xml"], "--lang", "en")
    assert code == 2
    assert "refused for safety (external entity declared)" in err


# ── the message catalogue ────────────────────────────────────────────────────────────────────────


def test_every_rule_the_gate_can_emit_has_both_messages():
    rules = load_messages()["rules"]
    emitted = gate_rule_ids("dossier") | gate_rule_ids("procedure")
    # The transform's own rule ids, read from its source: a new one needs a message too.
    source = (Path(__file__).parents[2] / "transforms" / "portal.py").read_text(encoding="utf-8")
    literal = set(re.findall(r'errors\.append\("([a-z_]+\.[a-z_]+)"\)', source))
    timed = {f"{c}.valid_datetime" for c in re.findall(r'_time\(record, "\w+", "(\w+)"', source)}
    assert literal and timed
    assert literal | timed <= emitted
    missing = sorted(r for r in emitted | {"message.refused"} if r not in rules)
    assert not missing, f"rules without a message in standards/messages.yaml: {missing}"
    for rule in emitted:
        assert rules[rule]["vi"].strip() and rules[rule]["en"].strip(), rule
