"""Engines and URLs: the warehouse's connection settings per dialect."""

from __future__ import annotations

import sqlalchemy as sa

from warehouse import db
from warehouse.db import create_engine, warehouse_url


def test_warehouse_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://loader@db/warehouse")
    assert warehouse_url() == "postgresql+psycopg://loader@db/warehouse"
    monkeypatch.delenv("WAREHOUSE_URL")
    assert warehouse_url() == f"sqlite:///{db.REPO_DIR / 'var' / 'warehouse.db'}"
    assert (db.REPO_DIR / "var").is_dir()


def test_engine_settings(warehouse_url):
    engine = create_engine(warehouse_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                pragma = {
                    name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "busy_timeout", "foreign_keys")
                }
                assert pragma == {
                    "journal_mode": "wal",
                    "busy_timeout": db.SQLITE_BUSY_TIMEOUT_MS,
                    "foreign_keys": 1,
                }
            else:
                assert engine.dialect.driver == "psycopg"
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_transactions_include_ddl(sqlite_url):
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            with conn.begin() as txn:
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                txn.rollback()
            assert not sa.inspect(conn).has_table("t")
    finally:
        engine.dispose()
