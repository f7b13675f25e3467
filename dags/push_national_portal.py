"""
### push_national_portal

Pushes the dossiers changed in the warehouse since the last push to the national public service
portal (Cổng DVCQG): `DongBoHoSoMC` (in chunks of `LIENTHONG_PUSH_CHUNK`, `isUpdating` "False"
for a dossier the portal never accepted, "True" after), then each accepted dossier's processing
steps with `CapNhatTienDoHoSoMC`. The portal's verdict on every record is kept in `ops_push`; an
accepted version is never sent again, a rejected one goes again once corrected in the warehouse.

* Connection: `national_portal` (`AIRFLOW_CONN_NATIONAL_PORTAL=http://user:pass@host:port`).
* Scheduled on the asset `lienthong://warehouse/dossiers`: it runs after every sync that changed
  the dossiers (the portal sync is hourly). Rejections do not fail the task: they are logged one
  line each and returned in its summary; a portal that stays unreachable does.
* Param `dry_run`: count what would be sent, send and write nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, Param, dag, get_current_context, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import NATIONAL_PORTAL

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


@dag(
    dag_id="push_national_portal",
    schedule=[WAREHOUSE_DOSSIERS],
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "target:national_portal"],
    params={"dry_run": Param(False, type="boolean", description="count only; send nothing")},
)
def push_national_portal():
    @task(pool=NATIONAL_PORTAL.name, retries=2, retry_delay=pendulum.duration(minutes=5))
    def push_dossiers() -> dict:
        from connectors.settings import ConnectionSettings
        from exchange.push import run_push

        connection = ConnectionSettings.from_airflow(BaseHook.get_connection("national_portal"))
        dry_run = bool(get_current_context()["params"].get("dry_run"))
        return run_push(connection, dry_run=dry_run).as_dict()

    push_dossiers()


push_national_portal()
