"""
### refresh_marts

Recomputes the standard report indicators from the warehouse into `mart_indicator`, whenever a
source DAG has updated the dossiers (asset `lienthong://warehouse/dossiers`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import WAREHOUSE

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


@dag(
    dag_id="refresh_marts",
    schedule=[WAREHOUSE_DOSSIERS],
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "marts"],
)
def refresh_marts():
    @task(pool=WAREHOUSE.name)
    def refresh() -> dict:
        from pipeline.tasks import run_refresh_marts

        return run_refresh_marts()

    refresh()


refresh_marts()
