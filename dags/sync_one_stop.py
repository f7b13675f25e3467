"""
### sync_one_stop

Pulls dossiers from the agencies' one-stop-shop (một cửa) databases, one mapped task per database
(dynamic task mapping), each incremental from its own watermark. Schemas differ per agency: each
connection names its mapping file in its extra (`?mapping=onestop_variant_a`).

* Connections: the ids listed in `LIENTHONG_ONESTOP_CONNECTIONS` (comma-separated), e.g.
  `AIRFLOW_CONN_ONESTOP_DOJ=mysql://reader:pass@10.0.0.7:3306/motcua?mapping=onestop_variant_a`.
* Pool `one_stop_databases` limits how many agency databases are queried at once
  (`airflow pools set one_stop_databases 2 "one-stop-shop databases"`).
* Windows (`pipeline.tasks.choose_window`, as `sync_national_portal`): a scheduled run syncs its
  hourly data interval in every database, started the look-back earlier and reaching back to that
  database's watermark when it lags; `airflow backfill create --dag-id sync_one_stop …` runs
  exactly the intervals asked for. Params `start` / `end` (ISO-8601, Vietnam time if naive): a
  manual run syncs exactly that window in every database; re-running the same window replaces
  the same batches.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, CronDataIntervalTimetable, Param, dag, get_current_context, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import ONE_STOP_DATABASES

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


@dag(
    dag_id="sync_one_stop",
    schedule=CronDataIntervalTimetable("@hourly", timezone="Asia/Ho_Chi_Minh"),  # as sync_national_portal
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "source:one_stop"],
    params={
        "start": Param(None, type=["null", "string"], description="backfill window start (ISO-8601)"),
        "end": Param(None, type=["null", "string"], description="backfill window end (ISO-8601)"),
    },
)
def sync_one_stop():
    @task
    def agency_databases() -> list[str]:
        from pipeline.tasks import onestop_connection_ids

        return onestop_connection_ids()

    @task(pool=ONE_STOP_DATABASES.name, retries=2, retry_delay=pendulum.duration(minutes=1),
          outlets=[WAREHOUSE_DOSSIERS])
    def sync_database(conn_id: str) -> dict:
        from connectors.settings import ConnectionSettings
        from pipeline.tasks import run_sync

        return run_sync("one_stop", "dossiers", ConnectionSettings.from_airflow(BaseHook.get_connection(conn_id)),
                        context=get_current_context())

    sync_database.expand(conn_id=agency_databases())


sync_one_stop()
