"""DAG files: they import cleanly and thinly, and the demo runs every one through Airflow end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {p.stem for p in DAGS.glob("*.py") if p.stem != "__init__"}


def test_sync_dag_runs_procedures_before_dossiers_and_feeds_the_marts(dagbag):
    sync = dagbag.dags["sync_national_portal"]
    assert sync.get_task("sync_procedures").downstream_task_ids == {"sync_dossiers"}
    outlets = sync.get_task("sync_dossiers").outlets
    marts = dagbag.dags["refresh_marts"]
    assert [a.uri for a in outlets] == ["lienthong://warehouse/dossiers"]
    assert "lienthong://warehouse/dossiers" in str(marts.timetable.asset_condition)
    for dag in (sync, marts):
        assert dag.doc_md and dag.dag_id in dag.fileloc


def test_sync_files_waits_for_files_then_loads_dossiers_before_reports(dagbag):
    sync = dagbag.dags["sync_files"]
    sensor = sync.get_task("wait_for_files")
    assert (sensor.mode, sensor.soft_fail) == ("reschedule", True)  # no files: skipped, not failed
    assert sensor.downstream_task_ids == {"sync_justice_csv"}
    assert sync.get_task("sync_justice_csv").downstream_task_ids == {"sync_service_stat"}
    for task_id in ("sync_justice_csv", "sync_service_stat"):
        assert [a.uri for a in sync.get_task(task_id).outlets] == ["lienthong://warehouse/dossiers"]
    assert sync.doc_md and sync.dag_id in sync.fileloc


def test_only_dags_import_airflow():
    root = DAGS.parent
    for package in ("connectors", "transforms", "standards", "quality", "warehouse", "pipeline", "reporting",
                    "exchange", "simulators"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "import airflow" not in text and "from airflow" not in text, path


@pytest.mark.slow
def test_demo_runs_every_dag_through_airflow(tmp_path, monkeypatch, capsys):
    from simulators.demo import run_demo

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    # what run_demo sets for itself, set here so that it is undone after the test
    monkeypatch.setenv("LIENTHONG_DATA_DOCS", "1")
    monkeypatch.setenv("LIENTHONG_GX_DIR", str(tmp_path / "gx"))
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", "lienthong-demo-key-not-for-production")
    assert run_demo(filler_dossiers=1500, var_dir=tmp_path) == 0
    out = capsys.readouterr().out
    assert "Procedures in force on 2017-08-31: 1,975" in out
    assert (tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    # the cross-source duplicates merged and the report mismatches found, as the ground truth says
    truth = json.loads((tmp_path / "sim" / "sources" / "ground_truth.json").read_text(encoding="utf-8"))["sources"]
    assert f"; {len(truth['cross_source_duplicates'])} merged from more than one source" in out
    gaps = truth["reconciliation"]["expected_gaps"]
    cells = {(g["commune_code"], g["month"]) for g in gaps}
    assert f"Communes' reports vs dossiers: {len(gaps)} differences in {len(cells)} commune-months" in out
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        batches = conn.execute(sa.text("SELECT source, stream, status FROM ops_batch")).all()
        marts = conn.execute(sa.text("SELECT count(*) FROM mart_indicator")).scalar()
    engine.dispose()
    # every source's DAG (the sync_files sensor found the drop), then refresh_marts
    assert {(source.split(":")[0], stream) for source, stream, _ in batches} == {
        ("national_portal", "procedures"), ("national_portal", "dossiers"), ("one_stop", "dossiers"),
        ("lgsp", "dossiers"), ("file_drop", "justice_csv"), ("file_drop", "service_stat")}
    assert {status for _, _, status in batches} == {"loaded"} and marts > 0


def test_one_stop_maps_over_agency_databases_within_a_pool(dagbag):
    dag = dagbag.dags["sync_one_stop"]
    mapped = dag.get_task("sync_database")
    assert mapped.pool == "one_stop_databases"
    assert type(mapped).__name__.endswith("MappedOperator")  # one task instance per agency database
    assert [a.uri for a in dagbag.dags["sync_lgsp"].get_task("sync_messages").outlets] == [
        "lienthong://warehouse/dossiers"]


def test_push_dag_follows_the_warehouse_dossiers(dagbag):
    dag = dagbag.dags["push_national_portal"]
    assert "lienthong://warehouse/dossiers" in str(dag.timetable.asset_condition)
    assert set(dag.task_ids) == {"push_dossiers"} and dag.max_active_runs == 1
    assert dag.doc_md and dag.dag_id in dag.fileloc


def test_exchange_publishes_one_mapped_task_per_receiver_and_receives_the_inbox(dagbag):
    dag = dagbag.dags["exchange"]
    assert dag.get_task("receivers").downstream_task_ids == {"publish"}
    assert type(dag.get_task("publish")).__name__.endswith("MappedOperator")  # one task instance per receiver
    assert [a.uri for a in dag.get_task("receive_packages").outlets] == ["lienthong://warehouse/dossiers"]
    assert dag.doc_md and dag.dag_id in dag.fileloc


@pytest.mark.parametrize("dag_id", ["sync_national_portal", "sync_one_stop"])
def test_windowed_syncs_run_on_hourly_data_intervals_in_vietnam_time(dagbag, dag_id):
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    # a run's data interval is the hour before it (not the empty interval of a trigger timetable),
    # which the tasks sync (pipeline.tasks.choose_window) and `airflow backfill create` walks
    timetable = coerce_to_core_timetable(dagbag.dags[dag_id].timetable)
    vn = "Asia/Ho_Chi_Minh"
    interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 1, 1, 10, 30, tz=vn))
    assert (interval.start, interval.end) == (pendulum.datetime(2026, 1, 1, 9, tz=vn),
                                              pendulum.datetime(2026, 1, 1, 10, tz=vn))
    assert set(dagbag.dags[dag_id].params) >= {"start", "end"}  # manual runs still take a window


def test_the_task_sdk_run_types_choose_the_interval_window():
    from datetime import datetime
    from types import SimpleNamespace

    from airflow.sdk.api.datamodels._generated import DagRunType

    from pipeline.tasks import window_from_context
    from transforms.timefmt import LOCAL_TZ

    start, end = datetime(2017, 3, 1, 9, tzinfo=LOCAL_TZ), datetime(2017, 3, 1, 10, tzinfo=LOCAL_TZ)
    for run_type, reason in ((DagRunType.SCHEDULED, "scheduled interval"), (DagRunType.BACKFILL, "backfill interval"),
                             (DagRunType.MANUAL, "incremental")):
        context = {"params": {"start": None, "end": None}, "dag_run": SimpleNamespace(run_type=run_type),
                   "data_interval_start": start, "data_interval_end": end}
        assert window_from_context(context, 60).reason == reason
