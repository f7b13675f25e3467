"""The Airflow pools the DAGs run their tasks in: one per source system, one for the warehouse.

A pool caps how many tasks query that system at once, whatever DAG runs them: the national portal
is asked by its sync and by the push, each agency's one-stop database is one slot of
`one_stop_databases`, each drop folder one of `file_drops`. Tasks that work on the warehouse
alone (the marts, the exchange packages) share `warehouse`; every sync also takes one of the
warehouse's load slots (LIENTHONG_WAREHOUSE_LOAD_SLOTS, warehouse/locks.py) while it writes.
Create them once per deployment: `airflow pools set <name> <slots> "<description>"` (see
docs/operations.md), or `lienthong`'s cluster test does it through the REST API.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pool:
    name: str
    slots: int
    description: str


NATIONAL_PORTAL = Pool("national_portal", 1, "the national public service portal's API (sync and push)")
LGSP = Pool("lgsp", 1, "the provincial LGSP message bus")
ONE_STOP_DATABASES = Pool("one_stop_databases", 2, "the agencies' one-stop-shop databases, one slot each")
FILE_DROPS = Pool("file_drops", 2, "the agencies' drop folders, one slot each")
WAREHOUSE = Pool("warehouse", 2, "work on the warehouse alone: marts, exchange packages")

POOLS = (NATIONAL_PORTAL, LGSP, ONE_STOP_DATABASES, FILE_DROPS, WAREHOUSE)


def pools_json() -> str:
    """The pools as `airflow pools import <file>` reads them (`lienthong pools --out <file>`)."""
    import json

    return json.dumps({pool.name: {"slots": pool.slots, "description": pool.description, "include_deferred": False}
                       for pool in POOLS}, ensure_ascii=False, indent=2) + "\n"
