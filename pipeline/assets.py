"""Names shared by the DAGs (kept here so producer and consumer cannot drift apart)."""

from __future__ import annotations

WAREHOUSE_DOSSIERS_URI = "lienthong://warehouse/dossiers"
