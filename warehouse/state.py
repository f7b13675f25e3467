"""Sync state and batch history of the warehouse, for the pipeline and its operators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from warehouse.db import connection_of
from warehouse.schema import ops_batch, ops_sync_state


def get_watermark(engine: sa.Engine | sa.Connection, source: str, stream: str) -> datetime | None:
    """The greatest replication-key value loaded for a source stream (tz-aware UTC), or None."""
    query = sa.select(ops_sync_state.c.watermark).where(
        ops_sync_state.c.source == source, ops_sync_state.c.stream == stream)
    with connection_of(engine) as conn:
        return conn.execute(query).scalar_one_or_none()


def batch_loaded(engine: sa.Engine | sa.Connection, batch_id: str) -> bool:
    """Whether `batch_id` is recorded `loaded` (committed whole) in ops_batch."""
    query = sa.select(ops_batch.c.status).where(ops_batch.c.batch_id == batch_id)
    with connection_of(engine) as conn:
        return conn.execute(query).scalar_one_or_none() == "loaded"


def list_batches(engine: sa.Engine | sa.Connection, limit: int = 20, *, source: str | None = None,
                 stream: str | None = None) -> list[dict[str, Any]]:
    """The latest batches (newest first), each as a dict of its ops_batch columns."""
    query = (sa.select(ops_batch)
             .order_by(ops_batch.c.started_at.desc(), ops_batch.c.batch_id)
             .limit(limit))
    if source is not None:
        query = query.where(ops_batch.c.source == source)
    if stream is not None:
        query = query.where(ops_batch.c.stream == stream)
    with connection_of(engine) as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
