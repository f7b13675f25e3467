"""Every source of one province: a partition of the generated dossiers, with its planted defects in the truth."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from connectors.filedrop import FileDropConnector
from connectors.lgsp import load_message_schema
from simulators.filedrop import commune_report_rows
from simulators.generator import generate_province, load_records
from simulators.province import DOJ, DPI, LGSP_MESSAGE_SIZE, build_sources, lgsp_messages


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, dict]:
    data = tmp_path_factory.mktemp("province")
    generate_province(data, seed=11, filler_dossiers=3000)
    sources = build_sources(data, seed=11)
    return data, data / "sources", sources


def _codes(records) -> Counter:
    return Counter(r["MaHoSo"] for r in records)


def _onestop_codes(path: Path, table: str, key: str) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text(f"SELECT {key} FROM {table}"))]
    finally:
        engine.dispose()


def test_deterministic_and_leaves_the_province_untouched(built, tmp_path):
    data, out, sources = built
    before = (data / "ground_truth.json").read_bytes()
    again = build_sources(data, tmp_path / "again", seed=11)
    assert again == sources
    assert (data / "ground_truth.json").read_bytes() == before
    assert "sources" not in json.loads(before)
    assert json.loads((out / "ground_truth.json").read_bytes())["sources"] == sources
    for name in ("portal/dossiers.jsonl", "lgsp/00001.xml", "drop/tuphap_2015.csv"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_every_dossier_lives_in_exactly_one_source_besides_the_planted_duplicates(built):
    data, out, sources = built
    truth = json.loads((data / "ground_truth.json").read_text(encoding="utf-8"))
    everything = _codes(load_records(data / "dossiers.jsonl"))  # the portal-only province
    portal = _codes(load_records(out / "portal" / "dossiers.jsonl"))
    doj = Counter(_onestop_codes(out / "onestop" / "doj.sqlite", "tbl_hoso", "so_ho_so"))
    dpi = Counter(_onestop_codes(out / "onestop" / "dpi.sqlite", "dossier", "dossier_no"))
    lgsp = Counter()
    for message in lgsp_messages(out):
        lgsp.update(el.text for el in etree.fromstring(message).iter("{*}MaHoSo"))
    drop = FileDropConnector(out / "drop")
    csv = Counter(r["MaHoSo"] for chunk in drop.read("justice_csv") for r in chunk)

    duplicates = sources["cross_source_duplicates"]
    others = doj + dpi + lgsp + csv
    assert max(others.values()) == 1
    # the portal holds the rest once (twice for its own planted duplicates) plus the cross-source copies
    assert portal - Counter(list(duplicates)) + others == everything
    assert set(duplicates) <= set(others)
    assert len(duplicates) == 130
    homes = Counter(tuple(s for s in systems if s != "national_portal") for systems in duplicates.values())
    assert homes == {(f"one_stop:{DOJ}",): 40, (f"one_stop:{DPI}",): 30, ("lgsp",): 40, ("file_drop",): 20}
    # every record with a planted defect stayed on the portal
    defective = set(truth["expected_rules"]).union(*(d["keys"] for d in truth["defects"].values()))
    assert not defective & set(others)
    assert sources["records"]["national_portal"] == sum(portal.values())
    assert sources["records"]["lgsp"] == sum(lgsp.values())


def test_lgsp_messages_are_valid_and_bounded(built):
    _, out, sources = built
    schema = load_message_schema()
    messages = lgsp_messages(out)
    assert len(messages) == sources["lgsp_messages"] > 1
    for message in messages:
        tree = etree.fromstring(message)
        schema.assertValid(tree)
        assert 1 <= len(tree.findall(".//{*}Dossier")) <= LGSP_MESSAGE_SIZE


def test_justice_exports_one_declared_tcvn3_and_one_detected_vni(built):
    _, out, sources = built
    drop = out / "drop"
    assert (drop / "tuphap_2014.csv.encoding").read_text().strip() == "tcvn3"
    assert not (drop / "tuphap_2015.csv.encoding").exists()
    connector = FileDropConnector(drop)
    records = [r for chunk in connector.read("justice_csv") for r in chunk]
    assert not connector.rejected
    assert len(records) == sum(sources["records"]["file_drop.justice_csv"].values())
    assert {r["DonViXuLy"] for r in records} == {DOJ}
    assert all(r["NgayTiepNhan"] < "20160101000000" for r in records)


def test_commune_reports_hold_the_counts_except_the_planted_mismatches(built):
    data, out, sources = built
    truth = sources["reconciliation"]
    connector = FileDropConnector(out / "drop")
    rows = [r for chunk in connector.read("service_stat") for r in chunk]
    assert not connector.rejected
    assert len(list((out / "drop").glob("baocao_*.xlsx"))) == truth["reports"]
    assert len(rows) == truth["report_rows"]

    quarantined = set(json.loads((data / "ground_truth.json").read_text())["expected_rules"])
    dossiers = [r for r in load_records(data / "dossiers.jsonl") if r["MaHoSo"] not in quarantined]
    gaps = set()
    reports = {tuple(path.stem.split("_")[1:]) for path in (out / "drop").glob("baocao_*.xlsx")}
    reported = {(r["commune_code"], r["month"], r["procedure_code"]): r for r in rows}
    for commune, month in reports:
        for row in commune_report_rows(dossiers, commune, month):
            key = (commune, month, row["procedure_code"])
            for measure in ("received", "online", "on_time", "late", "pending"):
                if reported.get(key, {}).get(measure, 0) != row[measure]:
                    gaps.add((*key, measure, reported.get(key, {}).get(measure, 0), row[measure]))
            reported.pop(key, None)
        for key, row in list(reported.items()):
            if key[:2] == (commune, month):
                for measure in ("received", "online", "on_time", "late", "pending"):
                    if row[measure]:
                        gaps.add((*key, measure, row[measure], 0))
    expected = {(g["commune_code"], g["month"], g["procedure_code"], g["measure"], g["reported"], g["counted"])
                for g in truth["expected_gaps"]}
    assert gaps == expected
    assert len(truth["planted"]) == 7
    assert {(p["commune_code"], p["month"], p["procedure_code"]) for p in truth["planted"]} == {g[:3] for g in gaps}


def test_the_cli_splits_a_province_and_refuses_to_serve_an_empty_feed(built, tmp_path, capsys):
    from pipeline.cli import main

    data, _, sources = built
    assert main(["simulate", "sources", "--data-dir", str(data), "--out", str(tmp_path / "s"), "--seed", "11"]) == 0
    out = capsys.readouterr().out
    assert f"LGSP {sources['records']['lgsp']} in {sources['lgsp_messages']} messages" in out
    assert json.loads((tmp_path / "s" / "ground_truth.json").read_text())["sources"] == sources

    assert main(["simulate", "lgsp", "--sources-dir", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no messages" in err[0] and err[0].startswith("lienthong: error:")
