"""Load: the warehouse schema, migrations, roles, history, the batch loader and the indicator views.
May import transforms/ and standards/ only."""

from __future__ import annotations

from warehouse.db import create_engine, upgrade, warehouse_url
from warehouse.load import BatchResult, BatchWriter
from warehouse.state import get_watermark, list_batches
from warehouse.views import level_on, procedures_by_level

__all__ = [
    "BatchResult", "BatchWriter", "create_engine", "get_watermark", "level_on",
    "list_batches", "procedures_by_level", "upgrade", "warehouse_url",
]
