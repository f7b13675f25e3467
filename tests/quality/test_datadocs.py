"""Data Docs: with LIENTHONG_DATA_DOCS=1 the gate keeps its results and the batch's pages are built."""

from __future__ import annotations

import gc
import time

import pytest

from quality import QualityGate, datadocs
from quality.suites import suite_name
from tests.quality.test_gate import CATALOGUE, dossier_frame, dossier_row

SUITE = suite_name("dossier")


@pytest.fixture
def docs_dir(tmp_path, monkeypatch):
    directory = tmp_path / "gx"
    monkeypatch.setenv("LIENTHONG_DATA_DOCS", "1")
    monkeypatch.setenv("LIENTHONG_GX_DIR", str(directory))
    return directory


def _frame():
    return dossier_frame([dossier_row(0), dossier_row(1, channel=9), dossier_row(2)])


def test_a_batch_with_a_bad_row_gets_its_data_docs(docs_dir):
    gate = QualityGate("dossier", CATALOGUE)
    result = gate.split(_frame())
    assert list(result.bad["_row"]) == [1] and list(result.good["_row"]) == [0, 2]
    assert [list(r) for r in result.bad["failed_rules"]] == [["channel.in_codelist"]]

    del gate  # the batch is done: its pages and the index are built once, now
    gc.collect()
    index = datadocs.data_docs_index(docs_dir)
    assert index == docs_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.is_file()
    html = index.read_text(encoding="utf-8")
    assert SUITE in html
    pages = list((index.parent / "validations").rglob("*.html"))
    assert len(pages) == 1 and "chunk0001_rows0-2" in pages[0].name
    page = pages[0].read_text(encoding="utf-8")
    assert "channel" in page and "Failed" in page

    # build_data_docs renders everything kept, on demand, and says where the index is
    assert datadocs.build_data_docs(docs_dir) == index
    assert SUITE in index.read_text(encoding="utf-8")


def test_data_docs_do_not_change_the_split(docs_dir, monkeypatch):
    kept = QualityGate("dossier", CATALOGUE).split(_frame())
    monkeypatch.setenv("LIENTHONG_DATA_DOCS", "0")
    plain_gate = QualityGate("dossier", CATALOGUE)
    assert plain_gate._results is None
    plain = plain_gate.split(_frame())
    assert kept.rule_counts == plain.rule_counts
    assert kept.good.equals(plain.good)
    assert kept.bad.equals(plain.bad)


def test_data_docs_are_off_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("LIENTHONG_DATA_DOCS", raising=False)
    monkeypatch.setenv("LIENTHONG_GX_DIR", str(tmp_path / "gx"))
    assert QualityGate("dossier", CATALOGUE)._results is None
    assert not (tmp_path / "gx").exists()


def test_only_the_latest_runs_are_kept(docs_dir, monkeypatch):
    monkeypatch.setenv("LIENTHONG_DATA_DOCS_RUNS", "2")
    for _ in range(3):
        gate = QualityGate("dossier", CATALOGUE)
        gate.split(_frame())
        del gate
        gc.collect()
        time.sleep(0.01)  # distinct run times
    context = datadocs.open_context(docs_dir)
    runs = {key.run_id.run_time for key in context.validation_results_store.list_keys()}
    assert len(runs) == 2
    datadocs.build_data_docs(docs_dir)
    pages = list((datadocs.data_docs_index(docs_dir).parent / "validations").rglob("*.html"))
    assert len(pages) == 2


def test_a_broken_gx_folder_never_fails_the_batch(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the GX context should be")
    monkeypatch.setenv("LIENTHONG_DATA_DOCS", "1")
    monkeypatch.setenv("LIENTHONG_GX_DIR", str(blocker))
    gate = QualityGate("dossier", CATALOGUE)
    assert gate._results is None
    assert "Data Docs are off" in caplog.text
    assert list(gate.split(_frame()).bad["_row"]) == [1]


def test_a_result_that_cannot_be_stored_is_skipped(docs_dir, monkeypatch, caplog):
    gate = QualityGate("dossier", CATALOGUE)
    store = gate._results.context.validation_results_store

    def refuse(key, value):
        raise OSError("disk full")

    monkeypatch.setattr(store, "set", refuse)
    result = gate.split(_frame())
    assert list(result.bad["_row"]) == [1]
    assert gate._results.keys == [] and gate._results.skipped == ["chunk0001_rows0-2"]
    assert "could not be kept" in caplog.text
