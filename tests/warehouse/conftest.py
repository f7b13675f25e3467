"""An upgraded warehouse engine, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from warehouse.db import create_engine, upgrade


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[sa.Engine]:
    upgrade(warehouse_url)
    engine = create_engine(warehouse_url)
    try:
        yield engine
    finally:
        engine.dispose()
