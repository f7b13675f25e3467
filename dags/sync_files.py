"""
### sync_files

Watches the folders where agencies drop files, and loads those where some are waiting, one
mapped task group per folder (dynamic task mapping): different agencies' folders load side by
side, one agency's files one after the other.

1. `wait_for_files` — a sensor (mode `reschedule`: it frees its worker slot between pokes) that
   pokes every drop folder (the connections of `LIENTHONG_FILE_DROP_CONNECTIONS`, comma-separated;
   default the one connection `file_drop`) every 5 minutes (`LIENTHONG_FILE_POKE_SECONDS`) for files the pipeline
   reads (`tuphap_*.csv`, `baocao_*.xlsx`) and returns the folders that have some; with none
   after 50 minutes (`LIENTHONG_FILE_WAIT_SECONDS`) it ends **skipped** (soft fail), and so does
   the rest of the run.
2. `load_drop` (mapped over those folders), in pool `file_drops` (one slot per folder loading):
   * `sync_justice_csv` — the Department of Justice CSV exports (TCVN3/VNI → NFC) as dossiers,
     through the standard transform and quality gate; source `file_drop` (`file_drop:<agency>`
     when the connection names its agency), same precedence as an agency's one-stop database;
   * `sync_service_stat` — the communes' monthly report workbooks (`fact_service_stat`; a
     re-sent report replaces the earlier one), reconciled with the dossiers by `refresh_marts`
     (indicator `reconciliation_gap`).

Files are archived under their SHA-256 only once their batch is loaded (never read twice);
unreadable ones are moved to `rejected/` with a `.reason.txt`. The procedure-catalogue workbook
is not loaded here: the catalogue's authority is the national portal.

* Connections: `file_drop` (`AIRFLOW_CONN_FILE_DROP=file:///absolute/path/to/drop`), or those of
  `LIENTHONG_FILE_DROP_CONNECTIONS`, each with its agency
  (`AIRFLOW_CONN_DROP_DOJ=file:///srv/drop/doj?agency=000.00.03.H62`).
* Produces the asset `lienthong://warehouse/dossiers`, which schedules `refresh_marts`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import Asset, BaseHook, PokeReturnValue, dag, task, task_group

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import FILE_DROPS

if TYPE_CHECKING:
    from connectors.settings import ConnectionSettings

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)
POKE_SECONDS = float(os.environ.get("LIENTHONG_FILE_POKE_SECONDS") or 300)
WAIT_SECONDS = float(os.environ.get("LIENTHONG_FILE_WAIT_SECONDS") or 3000)


def _drop_connection(conn_id: str) -> ConnectionSettings:
    from connectors.settings import ConnectionSettings

    return ConnectionSettings.from_airflow(BaseHook.get_connection(conn_id))


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
    @task.sensor(poke_interval=POKE_SECONDS, timeout=WAIT_SECONDS, mode="reschedule", soft_fail=True)
    def wait_for_files() -> PokeReturnValue:
        from pipeline.tasks import drop_connection_ids, drop_files_waiting

        ready = [conn_id for conn_id in drop_connection_ids() if drop_files_waiting(_drop_connection(conn_id))]
        return PokeReturnValue(is_done=bool(ready), xcom_value=ready)

    @task_group
    def load_drop(conn_id: str) -> None:
        @task(pool=FILE_DROPS.name, retries=2, retry_delay=pendulum.duration(minutes=1),
              outlets=[WAREHOUSE_DOSSIERS])
        def sync_justice_csv(conn_id: str) -> dict:
            from pipeline.tasks import run_sync

            return run_sync("file_drop", "justice_csv", _drop_connection(conn_id))

        @task(pool=FILE_DROPS.name, retries=2, retry_delay=pendulum.duration(minutes=1),
              outlets=[WAREHOUSE_DOSSIERS])
        def sync_service_stat(conn_id: str) -> dict:
            from pipeline.tasks import run_sync

            return run_sync("file_drop", "service_stat", _drop_connection(conn_id))

        sync_justice_csv(conn_id) >> sync_service_stat(conn_id)

    load_drop.expand(conn_id=wait_for_files())


sync_files()
