"""File drops through the pipeline: Justice CSV dossiers, commune reports, and their reconciliation."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest

from pipeline.cli import main
from simulators.filedrop import commune_report_rows, write_commune_report_xlsx, write_justice_csv
from tests.province import TEST_KEY, query_rows, run_sync
from transforms.legacy_encoding import LegacyEncodingError, encode_legacy
from transforms.portal import NAME_MASK

DOJ = "000.00.03.H62"
COMMUNES = ("08707", "08710", "08713")  # Tích Sơn, Liên Bảo, Hội Hợp
MONTHS = ("2017-05", "2017-06")
TEXT_FIELDS = ("ChuHoSo", "TrichYeuHoSo", "TenTTHC", "TenLinhVuc")


def _encodable(dossier: dict) -> bool:
    try:
        for field in TEXT_FIELDS:
            encode_legacy(dossier.get(field, ""), "tcvn3")
    except LegacyEncodingError:  # TCVN3 has no upper-case toned letters
        return False
    return True


@pytest.fixture(scope="module")
def drop_province(tmp_path_factory) -> dict:
    """Clean dossiers of two months, filed in three communes: some for the portal, some for Justice CSVs."""
    from simulators.generator import generate_province, load_records

    out = tmp_path_factory.mktemp("drop_province")
    truth = generate_province(out, seed=7, filler_dossiers=0)
    bad = set(truth["expected_rules"]) | set(truth["defects"]["duplicate_record"]["keys"])
    stamps = {m.replace("-", "") for m in MONTHS}
    portal, justice = [], []
    per_month = dict.fromkeys(stamps, 0)
    for record in load_records(out / "dossiers.jsonl"):
        month = record["NgayTiepNhan"][:6]
        if record["MaHoSo"] in bad or month not in stamps:
            continue
        if record["DonViXuLy"] == DOJ and len(justice) < 12 and _encodable(record):
            justice.append({**record, "NoiNopHoSo": COMMUNES[0]})
        elif per_month[month] < 75:
            per_month[month] += 1
            portal.append({**record, "NoiNopHoSo": COMMUNES[len(portal) % len(COMMUNES)]})
    used = {d["MaTTHC"] for d in portal + justice}
    procedures = list(load_records(out / "procedures.jsonl"))
    spare = next(p["MaTTHC"] for p in procedures if p["MaTTHC"] not in used)
    return {"portal": portal, "justice": justice, "spare": spare,
            "procedures": [p for p in procedures if p["MaTTHC"] in used | {spare}]}


def _plant_reports(drop: Path, dossiers: list[dict], spare: str) -> set[tuple]:
    """Write every commune-month report as the dossiers say, with a few cells altered.

    Returns the planted gaps as (commune, month, procedure, measure, reported, counted).
    """
    reports = {(c, m): commune_report_rows(dossiers, c, m) for c in COMMUNES for m in MONTHS}
    assert all(reports.values())
    planted = set()
    # 1. a count reported too high
    row = reports[COMMUNES[0], MONTHS[0]][0]
    planted.add((COMMUNES[0], MONTHS[0], row["procedure_code"], "received", row["received"] + 2, row["received"]))
    row["received"] += 2
    # 2. a procedure reported with no dossiers behind it
    reports[COMMUNES[1], MONTHS[0]].append({"procedure_code": spare, "received": 3, "online": 0,
                                            "on_time": 3, "late": 0, "pending": 0})
    planted |= {(COMMUNES[1], MONTHS[0], spare, "received", 3, 0), (COMMUNES[1], MONTHS[0], spare, "on_time", 3, 0)}
    # 3. a procedure with dossiers left out of the report
    left_out = reports[COMMUNES[2], MONTHS[1]].pop(0)
    planted |= {(COMMUNES[2], MONTHS[1], left_out["procedure_code"], measure, 0, left_out[measure])
                for measure in ("received", "online", "on_time", "late", "pending") if left_out[measure]}
    # 4. an empty report (no procedure row) for a commune-month that has dossiers
    emptied = reports[COMMUNES[1], MONTHS[1]]
    planted |= {(COMMUNES[1], MONTHS[1], row["procedure_code"], measure, 0, row[measure])
                for row in emptied for measure in ("received", "online", "on_time", "late", "pending") if row[measure]}
    emptied.clear()
    # 5. a row that breaks a rule (online > received): quarantined, so it shows no gap
    reports[COMMUNES[2], MONTHS[0]].append({"procedure_code": spare, "received": 1, "online": 5,
                                            "on_time": 0, "late": 0, "pending": 1})
    for (commune, month), rows in reports.items():
        write_commune_report_xlsx(drop / f"baocao_{commune}_{month}.xlsx", commune, month, rows)
    return planted


def _gaps(capsys) -> set[tuple]:
    assert main(["report", "--format", "json", "--indicator", "reconciliation_gap"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert row["dimension"] == f"{row['commune_code']}/{row['measure']}" and row["month"] == row["period"]
        assert row["group_code"] == row["procedure_code"]
        assert row["value"] == row["reported"] - row["counted"]
    return {(r["commune_code"], r["period"], r["procedure_code"], r["measure"], r["reported"], r["counted"])
            for r in rows}


def test_file_drop_loads_dossiers_and_reports_and_shows_only_the_planted_gaps(
        warehouse_url, drop_province, tmp_path, monkeypatch, capsys):
    from simulators.portal import PortalSimulator

    portal_dossiers, justice = drop_province["portal"], drop_province["justice"]
    with PortalSimulator(procedures=drop_province["procedures"], dossiers=portal_dossiers) as portal:
        run_sync(warehouse_url, portal)
    drop = tmp_path / "drop"
    drop.mkdir()
    half = len(justice) // 2
    write_justice_csv(drop / "tuphap_2017-05_a.csv", justice[:half], encoding="tcvn3")
    write_justice_csv(drop / "tuphap_2017-05_b.csv", justice[half:], encoding="vni")
    planted = _plant_reports(drop, portal_dossiers + justice, drop_province["spare"])
    (drop / "baocao_08713_2017-07.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("AIRFLOW_CONN_FILE_DROP", drop.as_uri())

    assert main(["sync", "files"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"file_drop.justice_csv: read {len(justice)}, loaded {len(justice)} ")
    assert "archived 2 (tuphap_2017-05_a.csv, tuphap_2017-05_b.csv)" in out[0]
    assert out[1].startswith("file_drop.service_stat: read ") and "quarantined 1 [online.at_most_received 1]" in out[1]
    assert "archived 6" in out[1] and "rejected 1 (baocao_08713_2017-07.xlsx: not a readable xlsx" in out[1]

    # the Justice dossiers: loaded in NFC, their lineage says file_drop
    codes = [d["MaHoSo"] for d in justice]
    loaded = query_rows(warehouse_url, "SELECT dossier_code, procedure_name, summary, source_system FROM fact_dossier "
                    "WHERE dossier_code IN :c", c=codes)
    assert len(loaded) == len(justice)
    by_code = {d["MaHoSo"]: d for d in justice}
    for code, name, summary, source in loaded:
        assert source == "file_drop"
        assert unicodedata.is_normalized("NFC", name) and unicodedata.is_normalized("NFC", summary)
        # the summary in NFC, without the applicant's name (Decree 13/2023: docs/INTERFACES.md)
        record = by_code[code]
        expected = unicodedata.normalize("NFC", " ".join(record["TrichYeuHoSo"].split()))
        name = unicodedata.normalize("NFC", " ".join(record["ChuHoSo"].split()))
        assert summary == expected.replace(name, NAME_MASK) and name not in summary
    lineage = query_rows(
        warehouse_url, "SELECT DISTINCT source_system FROM fact_dossier_source WHERE dossier_code IN :c", c=codes)
    assert lineage == [("file_drop",)]
    # the bad report row is quarantined with its rule; the corrupt workbook is set aside with a reason
    quarantined = query_rows(warehouse_url,
                         "SELECT record_key, failed_rules FROM ops_quarantine WHERE source = 'file_drop'")
    assert quarantined == [(f"{COMMUNES[2]}/{MONTHS[0]}/{drop_province['spare']}", '["online.at_most_received"]')]
    reason = (drop / "rejected" / "baocao_08713_2017-07.xlsx.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("not a readable xlsx workbook")
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == []

    assert main(["report", "--format", "csv"]) == 0  # the extra JSON keys stay out of the CSV
    assert "reconciliation_gap" in capsys.readouterr().out
    assert _gaps(capsys) == planted

    # a file dropped again is skipped, and nothing new is loaded
    before = query_rows(warehouse_url, "SELECT count(*) FROM fact_dossier")[0][0], \
        query_rows(warehouse_url, "SELECT count(*) FROM fact_service_stat")[0][0]
    archived = next((drop / "archive").glob("*__tuphap_2017-05_a.csv"))
    shutil.copy(archived, drop / "tuphap_2017-05_a.csv")
    assert main(["sync", "files"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("file_drop.justice_csv: read 0, loaded 0 ")
    assert "skipped 1 (tuphap_2017-05_a.csv)" in out[0]
    assert out[1].startswith("file_drop.service_stat: read 0, loaded 0 ")
    assert (query_rows(warehouse_url, "SELECT count(*) FROM fact_dossier")[0][0],
            query_rows(warehouse_url, "SELECT count(*) FROM fact_service_stat")[0][0]) == before

    # a report re-sent for the same commune and month replaces the earlier one: the gap is gone
    (drop / "tuphap_2017-05_a.csv").unlink()
    fixed = commune_report_rows(portal_dossiers + justice, COMMUNES[0], MONTHS[0])
    write_commune_report_xlsx(drop / f"baocao_{COMMUNES[0]}_{MONTHS[0]}.xlsx", COMMUNES[0], MONTHS[0], fixed)
    assert main(["sync", "files", "--stream", "service_stat"]) == 0
    capsys.readouterr()
    assert _gaps(capsys) == {gap for gap in planted if gap[:2] != (COMMUNES[0], MONTHS[0])}

    # refresh_marts materialises the same rows
    from reporting.indicators import refresh_marts
    from warehouse.db import create_engine

    engine = create_engine(warehouse_url)
    try:
        refresh_marts(engine)
    finally:
        engine.dispose()
    marts = query_rows(warehouse_url, "SELECT period, group_code, dimension, value FROM mart_indicator "
                   "WHERE indicator = 'reconciliation_gap'")
    assert {(p, g, d, int(v)) for p, g, d, v in marts} == {
        (m, proc, f"{c}/{measure}", rep - cnt) for c, m, proc, measure, rep, cnt in planted
        if (c, m) != (COMMUNES[0], MONTHS[0])}


def test_missing_drop_folder_is_one_error_line(sqlite_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("AIRFLOW_CONN_FILE_DROP", (tmp_path / "nowhere").as_uri())

    assert main(["sync", "files"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lienthong: error: file_drop: drop folder {tmp_path / 'nowhere'} does not exist "
                   "(connection file_drop, e.g. AIRFLOW_CONN_FILE_DROP=file:///srv/drop)"]


def test_a_failed_batch_leaves_its_files_in_the_drop_folder(sqlite_url, drop_province, tmp_path, monkeypatch,
                                                            capsys):
    drop = tmp_path / "drop"
    drop.mkdir()
    write_justice_csv(drop / "tuphap_2017-05.csv", drop_province["justice"], encoding="vni")
    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("AIRFLOW_CONN_FILE_DROP", drop.as_uri())

    # an empty catalogue: every dossier fails procedure_code.in_catalogue, over the threshold
    assert main(["sync", "files", "--stream", "justice_csv"]) == 1
    assert "failed quality" in capsys.readouterr().err
    assert sorted(p.name for p in drop.iterdir()) == ["tuphap_2017-05.csv"]  # not archived
    assert query_rows(sqlite_url, "SELECT status FROM ops_batch") == [("failed",)]
    assert query_rows(sqlite_url, "SELECT count(*) FROM fact_dossier") == [(0,)]


def test_a_file_connection_names_a_local_folder():
    from connectors.settings import connection_from_uri

    assert connection_from_uri("file:///srv/drop/vinhphuc").local_path == "/srv/drop/vinhphuc"
    assert connection_from_uri("file://localhost/srv/drop").local_path == "/srv/drop"
    with pytest.raises(ValueError, match="three slashes"):
        _ = connection_from_uri("file://srv/drop").local_path


def test_service_stat_schema_is_valid_json_schema():
    from jsonschema import Draft202012Validator

    import standards

    schema = standards.load_schema("service_stat")
    Draft202012Validator.check_schema(schema)
    assert set(schema["x-key"]) <= set(schema["required"]) <= set(schema["properties"])


def test_the_sensor_sees_only_the_files_the_sync_reads(tmp_path):
    from connectors.settings import connection_from_uri
    from pipeline.tasks import drop_files_waiting

    connection = connection_from_uri(tmp_path.as_uri())
    assert drop_files_waiting(connection) == []
    for name in ("tuphap_2017.CSV", "baocao_08707_2017-05.xlsx", "catalogue_2017.xlsx", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "archive").mkdir()
    assert drop_files_waiting(connection) == ["baocao_08707_2017-05.xlsx", "tuphap_2017.CSV"]


def test_each_agencys_drop_folder_is_a_source_of_its_own_and_loads_beside_the_others(
        sqlite_url, drop_province, tmp_path, monkeypatch, capsys):
    """Two drop folders (LIENTHONG_FILE_DROP_CONNECTIONS), each naming its agency: their batches,
    lineage and locks are `file_drop:<agency>`, so one folder's running sync does not stop the other's."""
    import os
    import subprocess
    import sys

    from simulators.portal import PortalSimulator

    justice = drop_province["justice"]
    with PortalSimulator(procedures=drop_province["procedures"], dossiers=[]) as portal:
        run_sync(sqlite_url, portal)
    folders = {"000.00.03.H62": justice[:5], "000.00.04.H62": justice[5:]}
    for n, (agency, dossiers) in enumerate(folders.items()):
        folder = tmp_path / agency
        folder.mkdir()
        write_justice_csv(folder / "tuphap_2017-05.csv", dossiers, encoding="vni")
        monkeypatch.setenv(f"AIRFLOW_CONN_DROP_{n}", f"{folder.as_uri()}?agency={agency}")
    monkeypatch.setenv("LIENTHONG_FILE_DROP_CONNECTIONS", "drop_0,drop_1")
    monkeypatch.setenv("WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)

    # another process holds the first agency's justice_csv stream: only that folder waits
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom warehouse.db import create_engine\nfrom warehouse.locks import "
         "lock_stream\nwith lock_stream(create_engine(sys.argv[1]), 'file_drop:000.00.03.H62', 'justice_csv'):\n"
         "    print('held', flush=True); sys.stdin.read()", sqlite_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["sync", "files", "--stream", "justice_csv", "--connection", "drop_1"]) == 0
        assert main(["sync", "files", "--stream", "justice_csv", "--connection", "drop_0"]) == 1
        assert "file_drop:000.00.03.H62.justice_csv is already being synced by another run" in capsys.readouterr().err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert main(["sync", "files", "--stream", "justice_csv"]) == 0  # every folder of the setting
    out = capsys.readouterr().out
    assert "file_drop:000.00.03.H62.justice_csv: read 5, loaded 5" in out
    assert "file_drop:000.00.04.H62.justice_csv: read 0" in out  # loaded before, its file archived
    lineage = dict(query_rows(sqlite_url, "SELECT source_system, count(*) FROM fact_dossier GROUP BY source_system"))
    assert lineage == {f"file_drop:{agency}": len(dossiers) for agency, dossiers in folders.items()}
    batches = query_rows(sqlite_url, "SELECT source, status FROM ops_batch WHERE stream = 'justice_csv'")
    assert sorted(batches) == [("file_drop:000.00.03.H62", "loaded"), ("file_drop:000.00.04.H62", "loaded"),
                               ("file_drop:000.00.04.H62", "loaded")]


def test_a_drop_folders_agency_must_be_an_agency_code(tmp_path):
    from connectors.filedrop import FileDropConnector

    with pytest.raises(ValueError, match=r"agency 'doj' of drop folder .* is not an agency code"):
        FileDropConnector(tmp_path, agency="doj")
    assert FileDropConnector(tmp_path).source == "file_drop"
    assert FileDropConnector(tmp_path, agency="000.00.03.H62").source == "file_drop:000.00.03.H62"
