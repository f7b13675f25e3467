"""
### exchange

The dossier exchange between agencies (`docs/INTERFACES.md` §13). Every hour:

* `publish` — one mapped task per receiving agency (`LIENTHONG_EXCHANGE_RECEIVERS`, comma-separated
  agency codes): the signed package of that agency's dossiers changed since its last package
  (`<message_id>.zip`: `message.xml` valid against `standards/xsd/exchange_package.xsd` and
  `manifest.json` with its SHA-256 and an Ed25519 signature). Nothing changed: no package. It goes
  to `LIENTHONG_OUTBOX` and/or is POSTed to `LIENTHONG_EXCHANGE_ENDPOINT`; receipts are kept in
  `ops_package`. Signing key: `LIENTHONG_SIGNING_KEY`, `LIENTHONG_SIGNING_KEY_ID`.
* `receive_packages` — the packages dropped in `LIENTHONG_EXCHANGE_INBOX` (`*.zip`): each is
  verified against `LIENTHONG_TRUSTED_KEYS` before anything of it is read, then loaded through the
  quality gate (source `exchange:<sender>`), and moved to `received/` or `refused/` (with its
  reason). No inbox configured: the task does nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from pipeline.assets import WAREHOUSE_DOSSIERS_URI
from pipeline.pools import WAREHOUSE

WAREHOUSE_DOSSIERS = Asset(WAREHOUSE_DOSSIERS_URI)


@dag(
    dag_id="exchange",
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "exchange"],
)
def exchange():
    @task
    def receivers() -> list[str]:
        from exchange.packages import receivers_from_env

        return receivers_from_env()

    @task(pool=WAREHOUSE.name, retries=2, retry_delay=pendulum.duration(minutes=5))
    def publish(receiver: str) -> dict:
        from exchange.packages import publish_from_env

        outcome = publish_from_env(receiver)
        return {"receiver": receiver, "status": outcome.status, "message_id": outcome.message_id,
                "dossiers": outcome.dossier_count}

    @task(pool=WAREHOUSE.name, outlets=[WAREHOUSE_DOSSIERS])
    def receive_packages() -> dict:
        import os

        from exchange.packages import receive_inbox

        inbox = os.environ.get("LIENTHONG_EXCHANGE_INBOX", "").strip()
        return receive_inbox(inbox) if inbox else {"inbox": []}

    publish.expand(receiver=receivers())
    receive_packages()


exchange()
