"""DAG files: they import cleanly and thinly, map over agencies, run in pools, take Airflow's data intervals."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_sync_files_waits_for_files_then_loads_each_folder_dossiers_before_reports(dagbag):
    sync = dagbag.dags["sync_files"]
    sensor = sync.get_task("wait_for_files")
    assert (sensor.mode, sensor.soft_fail) == ("reschedule", True)  # no files: skipped, not failed
    justice, reports = (sync.get_task(f"load_drop.{name}") for name in ("sync_justice_csv", "sync_service_stat"))
    # one mapped task group per folder with files waiting: the sensor's list maps both tasks
    assert sensor.downstream_task_ids == {justice.task_id, reports.task_id}
    assert justice.downstream_task_ids == {reports.task_id}  # one agency's files, one after the other
    for task in (justice, reports):
        assert type(task.task_group).__name__ == "MappedTaskGroup"  # one group instance per folder
        assert task.pool == "file_drops"
        assert [a.uri for a in task.outlets] == ["lienthong://warehouse/dossiers"]
    assert sync.doc_md and sync.dag_id in sync.fileloc


def test_every_task_runs_in_a_declared_pool(dagbag):
    from pipeline.pools import POOLS

    declared = {pool.name for pool in POOLS}
    pools = {(dag_id, task.task_id): task.pool for dag_id, dag in dagbag.dags.items() for task in dag.tasks}
    # the sources' tasks in their system's pool, the warehouse-only ones in `warehouse`
    assert {pools[("sync_national_portal", "sync_dossiers")], pools[("push_national_portal", "push_dossiers")]} \
        == {"national_portal"}
    assert pools[("sync_lgsp", "sync_messages")] == "lgsp"
    assert pools[("refresh_marts", "refresh")] == pools[("exchange", "publish")] == "warehouse"
    assert {pool for pool in pools.values() if pool != "default_pool"} == declared


def test_only_dags_import_airflow():
    root = DAGS.parent
    for package in ("connectors", "transforms", "standards", "quality", "warehouse", "pipeline", "reporting",
                    "exchange", "simulators"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "import airflow" not in text and "from airflow" not in text, path


# The demo through Airflow (every DAG under `airflow dags test`) is run once, by
# tests/test_secrets.py::test_the_demo_runs_every_dag_and_no_secret_is_in_its_output_logs_or_files,
# which checks its figures as well as its files; on a real cluster: `make cluster-test`.


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
