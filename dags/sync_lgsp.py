"""
### sync_lgsp

Reads the provincial integration platform's (LGSP) feed of XML messages (business-registration and
judicial-record dossiers relayed from ministries' systems) after the acknowledged cursor. Each
message is parsed streaming and checked against `standards/xsd/lgsp_message.xsd`; a hostile or
off-schema message is refused and quarantined with its reason, and the feed goes on. The cursor is
acknowledged only once the batch is loaded.

* Connection: `lgsp` (`AIRFLOW_CONN_LGSP=http://user:pass@host:port`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, dag, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import LGSP

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


@dag(
    dag_id="sync_lgsp",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "source:lgsp"],
)
def sync_lgsp():
    @task(pool=LGSP.name, retries=2, retry_delay=pendulum.duration(minutes=1), outlets=[WAREHOUSE_DOSSIERS])
    def sync_messages() -> dict:
        from connectors.settings import ConnectionSettings
        from pipeline.tasks import run_sync

        return run_sync("lgsp", "dossiers", ConnectionSettings.from_airflow(BaseHook.get_connection("lgsp")))

    sync_messages()


sync_lgsp()
