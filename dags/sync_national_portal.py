"""
### sync_national_portal

Pulls the procedure catalogue and the dossiers of the national public service portal (Cổng DVCQG)
into the warehouse: extract (paged, retried, incremental from the warehouse's watermark minus a
look-back) → normalise to the shared standard → Great Expectations quality gate (bad rows
quarantined with every failed rule) → one idempotent load per batch.

* Connection: `national_portal` (`AIRFLOW_CONN_NATIONAL_PORTAL=http://user:pass@host:port`).
* Windows (`pipeline.tasks.choose_window`): a scheduled run syncs its data interval (the hour
  before it, Vietnam time) started `LIENTHONG_LOOKBACK_MINUTES` earlier, and reaches back to the
  watermark when that lags (missed or failed runs); `airflow backfill create --dag-id
  sync_national_portal --from-date … --to-date …` runs exactly the intervals of that period, and
  a re-run of an interval replaces its batch.
* Params `start` / `end` (ISO-8601, Vietnam time if naive): a manual run syncs exactly that
  window; a manual run without them is incremental from the watermark.
* Produces the asset `lienthong://warehouse/dossiers`, which schedules `refresh_marts`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, CronDataIntervalTimetable, Param, dag, get_current_context, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import NATIONAL_PORTAL

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


def _portal_connection():
    from connectors.settings import ConnectionSettings

    conn = BaseHook.get_connection("national_portal")
    return ConnectionSettings.from_airflow(conn)


@dag(
    dag_id="sync_national_portal",
    # Hourly data intervals (a bare "@hourly" is a CronTriggerTimetable in Airflow 3, whose runs
    # have an empty interval): each run syncs the hour before it.
    schedule=CronDataIntervalTimetable("@hourly", timezone="Asia/Ho_Chi_Minh"),
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "source:national_portal"],
    params={
        "start": Param(None, type=["null", "string"], description="backfill window start (ISO-8601)"),
        "end": Param(None, type=["null", "string"], description="backfill window end (ISO-8601)"),
    },
)
def sync_national_portal():
    @task(pool=NATIONAL_PORTAL.name, retries=2, retry_delay=pendulum.duration(minutes=1))
    def sync_procedures() -> dict:
        from pipeline.tasks import run_sync

        return run_sync("national_portal", "procedures", _portal_connection(), context=get_current_context())

    @task(pool=NATIONAL_PORTAL.name, retries=2, retry_delay=pendulum.duration(minutes=1),
          outlets=[WAREHOUSE_DOSSIERS])
    def sync_dossiers() -> dict:
        from pipeline.tasks import run_sync

        return run_sync("national_portal", "dossiers", _portal_connection(), context=get_current_context())

    sync_procedures() >> sync_dossiers()


sync_national_portal()
