"""The data dictionary: the committed page is what the generator makes now; every column in vi and en."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from pipeline.cli import main
from reporting import dictionary
from warehouse.db import create_engine, upgrade
from warehouse.schema import metadata

REGENERATE = "run `lienthong docs dictionary --out docs/data_dictionary.md` and commit the result"


@pytest.fixture(scope="module")
def collected() -> dict:
    return dictionary.collect_dictionary()


def test_the_committed_dictionary_is_current(collected):
    committed = dictionary.DICTIONARY_FILE.read_text(encoding="utf-8")
    assert committed == dictionary.render_markdown(collected), f"docs/data_dictionary.md is stale: {REGENERATE}"


def test_every_table_and_view_is_in_the_dictionary(collected, tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        inspector = sa.inspect(engine)
        names = set(inspector.get_table_names()) - {"alembic_version"}
        names |= set(inspector.get_view_names())
        listed = {r["name"] for r in collected["relations"]}
        assert names <= listed
        assert listed == set(metadata.tables) | set(inspector.get_view_names())
    finally:
        engine.dispose()
    views = {r["name"] for r in collected["relations"] if r["kind"] == "view"}
    assert {"mart_dossier", "mart_dossier_received", "mart_procedure_level"} <= views


def test_every_column_is_described_in_vietnamese_and_english(collected):
    missing = [f"{r['name']}.{c['name']}" for r in collected["relations"] for c in r["columns"]
               if not c["vi"] or not c["en"] or c["vi"] == c["en"]]
    assert not missing, f"columns without a 'vi / en' description (comment= in warehouse/schema.py): {missing}"
    for relation in collected["relations"]:
        assert relation["en"], f"{relation['name']} has no description"
    fact = next(r for r in collected["relations"] if r["name"] == "fact_dossier")
    channel = next(c for c in fact["columns"] if c["name"] == "channel")
    assert (channel["vi"], channel["en"], channel["codelist"]) == (
        "Kênh thực hiện (dim_channel)", "Channel (dim_channel)", "channel")
    # a view column is described by the table it reads
    received = next(r for r in collected["relations"] if r["name"] == "mart_dossier_received")
    assert {c["name"]: c["en"] for c in received["columns"]}["received_month"].startswith("Month received")


def test_schema_comments_are_bilingual():
    for table in metadata.tables.values():
        for column in table.columns:
            vi, en = dictionary.split_bilingual(column.comment)
            assert vi and en, f"{table.name}.{column.name}: comment must read 'vi / en'"


def test_split_bilingual():
    assert dictionary.split_bilingual("Mã hồ sơ / Dossier code") == ("Mã hồ sơ", "Dossier code")
    assert dictionary.split_bilingual("A / B / C") == ("A", "B / C")
    assert dictionary.split_bilingual("English only") == ("", "English only")
    assert dictionary.split_bilingual(None) == ("", "")


def test_without_indicator_definitions_the_section_says_so(collected, monkeypatch, tmp_path):
    monkeypatch.setattr(dictionary, "INDICATORS_FILE", tmp_path / "indicators.yaml")
    assert dictionary._load_indicators() == []
    page = dictionary.render_markdown({**collected, "indicators": []})
    assert "`standards/indicators.yaml` is not there" in page


def test_the_cli_writes_the_dictionary_as_json(tmp_path, capsys):
    out = tmp_path / "dictionary.json"
    assert main(["docs", "dictionary", "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    history = next(r for r in data["relations"] if r["name"] == "dim_agency_version")
    assert [c["name"] for c in history["columns"]][:3] == ["agency_code", "valid_from", "valid_to"]
    assert "written to" in capsys.readouterr().err
