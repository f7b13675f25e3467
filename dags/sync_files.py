"""
### sync_files

Watches the drop folder where agencies leave files, and loads them when some are there:

1. `wait_for_files` — a sensor (mode `reschedule`: it frees its worker slot between pokes) that
   pokes the folder every 5 minutes for files the pipeline reads (`tuphap_*.csv`,
   `baocao_*.xlsx`); with none after 50 minutes it ends **skipped** (soft fail), and so does the
   rest of the run.
2. `sync_justice_csv` — the Department of Justice CSV exports (TCVN3/VNI → NFC) as dossiers,
   through the standard transform and quality gate; source `file_drop`, same precedence as an
   agency's one-stop-shop database.
3. `sync_service_stat` — the communes' monthly report workbooks (`fact_service_stat`; a re-sent
   report replaces the earlier one), reconciled with the dossiers by `refresh_marts`
   (indicator `reconciliation_gap`).

Files are archived under their SHA-256 only once their batch is loaded (never read twice);
unreadable ones are moved to `rejected/` with a `.reason.txt`. The procedure-catalogue workbook
is not loaded here: the catalogue's authority is the national portal.

* Connection: `file_drop` (`AIRFLOW_CONN_FILE_DROP=file:///absolute/path/to/drop`).
* Produces the asset `lienthong://warehouse/dossiers`, which schedules `refresh_marts`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, PokeReturnValue, dag, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


def _drop_connection():
    from connectors.settings import ConnectionSettings

    return ConnectionSettings.from_airflow(BaseHook.get_connection("file_drop"))


@dag(
    dag_id="sync_files",
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "source:file_drop"],
)
def sync_files():
    @task.sensor(poke_interval=300, timeout=3000, mode="reschedule", soft_fail=True)
    def wait_for_files() -> PokeReturnValue:
        from pipeline.tasks import drop_files_waiting

        names = drop_files_waiting(_drop_connection())
        return PokeReturnValue(is_done=bool(names), xcom_value=names)

    @task(retries=2, retry_delay=pendulum.duration(minutes=1), outlets=[WAREHOUSE_DOSSIERS])
    def sync_justice_csv() -> dict:
        from pipeline.tasks import run_sync

        return run_sync("file_drop", "justice_csv", _drop_connection())

    @task(retries=2, retry_delay=pendulum.duration(minutes=1), outlets=[WAREHOUSE_DOSSIERS])
    def sync_service_stat() -> dict:
        from pipeline.tasks import run_sync

        return run_sync("file_drop", "service_stat", _drop_connection())

    wait_for_files() >> sync_justice_csv() >> sync_service_stat()


sync_files()
