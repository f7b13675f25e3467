"""
### sync_national_portal

Pulls the procedure catalogue and the dossiers of the national public service portal (Cổng DVCQG)
into the warehouse: extract (paged, retried, incremental from the warehouse's watermark minus a
look-back) → normalise to the shared standard → Great Expectations quality gate (bad rows
quarantined with every failed rule) → one idempotent load per batch.

* Connection: `national_portal` (`AIRFLOW_CONN_NATIONAL_PORTAL=http://user:pass@host:port`).
* Params `start` / `end` (ISO-8601, Vietnam time if naive): backfill exactly that window instead
  of the incremental one; re-running the same window replaces the same batch.
* Produces the asset `lienthong://warehouse/dossiers`, which schedules `refresh_marts`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, Param, dag, get_current_context, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


def _portal_connection():
    from connectors.settings import ConnectionSettings

    conn = BaseHook.get_connection("national_portal")
    return ConnectionSettings.from_airflow(conn)


def _window() -> dict:
    params = get_current_context()["params"]
    return {"start": params.get("start"), "end": params.get("end")}


@dag(
    dag_id="sync_national_portal",
    schedule="@hourly",
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
    @task(retries=2, retry_delay=pendulum.duration(minutes=1))
    def sync_procedures() -> dict:
        from pipeline.tasks import run_sync

        return run_sync("national_portal", "procedures", _portal_connection(), **_window())

    @task(retries=2, retry_delay=pendulum.duration(minutes=1), outlets=[WAREHOUSE_DOSSIERS])
    def sync_dossiers() -> dict:
        from pipeline.tasks import run_sync

        return run_sync("national_portal", "dossiers", _portal_connection(), **_window())

    sync_procedures() >> sync_dossiers()


sync_national_portal()
