"""The demo data over every source, as `make demo` syncs them, give the seed figures (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from tests.province import TEST_KEY, run_sync_all_sources, split_sources, table_counts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_province(tmp_path_factory):
    from simulators.generator import generate_province

    out = tmp_path_factory.mktemp("demo-province")
    return out, generate_province(out)  # the demo's defaults: seed 2017, 20,000 filler dossiers


@pytest.fixture(scope="module")
def demo_sources(demo_province, tmp_path_factory):
    return split_sources(demo_province[0], tmp_path_factory.mktemp("demo-sources"), seed=2017)


def _report(capsys, monkeypatch, url, *args) -> list[dict]:
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    assert main(["report", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _value(rows, indicator, period, *, group=None, dimension=None, agency=None):
    found = [r["value"] for r in rows if r["indicator"] == indicator and r["period"] == period
             and r.get("group_code") == group and r.get("dimension") == dimension and r["agency_code"] == agency]
    assert len(found) == 1, (indicator, period, group, dimension, found)
    return found[0]


def test_seed_figures_through_the_report(warehouse_url, demo_sources, demo_province, tmp_path, capsys, monkeypatch):
    import shutil

    _, truth = demo_province
    sources_dir, _ = demo_sources
    shutil.copytree(sources_dir / "drop", tmp_path / "drop")
    run_sync_all_sources(warehouse_url, sources_dir, tmp_path / "drop")
    rows = _report(capsys, monkeypatch, warehouse_url, "--period", "2017-08-31")

    assert _value(rows, "procedures_total", "2017-08-31") == 1975
    assert _value(rows, "procedures_by_level", "2017-08-31", dimension="level_3") == 5
    assert _value(rows, "procedures_by_level", "2017-08-31", dimension="level_4") == 2
    assert (_value(rows, "procedures_by_level", "2017-08-31", dimension="level_1")
            + _value(rows, "procedures_by_level", "2017-08-31", dimension="level_2")) == 1968

    rows = _report(capsys, monkeypatch, warehouse_url)
    dpi, doj, dic = "000.00.04.H62", "000.00.03.H62", "000.00.11.H62"
    br = {m: _value(rows, "online_dossiers_by_group", m, group="business_registration", agency=dpi)
          for m in [f"2015-{n:02d}" for n in range(6, 13)]}
    assert set(br.values()) == {0}
    assert _value(rows, "online_dossiers_by_group", "2016", group="business_registration", agency=dpi) == 46
    assert sum(_value(rows, "online_dossiers_by_group", f"2017-{n:02d}", group="business_registration", agency=dpi)
               for n in range(1, 9)) == 244
    months = [f"2016-{n:02d}" for n in range(7, 13)] + [f"2017-{n:02d}" for n in range(1, 9)]
    judicial = [_value(rows, "online_dossiers_by_group", m, group="judicial_record", agency=doj) for m in months]
    assert all(3 <= n <= 5 for n in judicial), judicial
    printing = [_value(rows, "online_dossiers_by_group", m, group="printing_licence", agency=dic)
                for m in [f"{y}-{n:02d}" for y in (2014, 2015, 2016, 2017) for n in range(1, 13)]
                if "2014-12" <= m <= "2017-08"]
    assert len(printing) == 33 and sum(printing) == 0
    # the report agrees with the generator's own count of what it planted
    assert judicial == [truth["figures"]["judicial_record_online"].get(m, 0) for m in months]

    # the catalogue as it stood on an earlier day (level history is kept)
    end_2016 = _report(capsys, monkeypatch, warehouse_url, "--indicator", "procedures_by_level",
                       "--period", "2016-12-31", "--agency", "province")
    levels = {r["dimension"]: r["value"] for r in end_2016}
    assert levels["level_3"] == 6 and levels["level_4"] == 0
    assert table_counts(warehouse_url)["fact_dossier"] == truth["dossiers"]["expected_loaded_distinct"]

