"""Alembic environment of the warehouse: migrates the given connection or WAREHOUSE_URL."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context

from warehouse.db import create_engine, warehouse_url
from warehouse.schema import metadata

config = context.config
target_metadata = metadata


def _configure(**kwargs: Any) -> None:  # forwarded as is to context.configure
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    """Emit the SQL script instead of running it (`alembic upgrade head --sql`)."""
    url = config.get_main_option("sqlalchemy.url") or warehouse_url()
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
               render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: sa.Connection) -> None:
    # SQLite alters tables by copying them: batch mode keeps future migrations portable.
    # Its DDL is transactional too on warehouse engines (db.create_engine emits BEGIN itself).
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite",
               transactional_ddl=True)
    with context.begin_transaction():  # joins the caller's transaction when there is one
        context.run_migrations()


def main() -> None:
    given = config.attributes.get("connection")
    if given is not None:  # warehouse.db.upgrade(): the caller owns logging and the transaction
        run_online(given)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        run_offline()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or warehouse_url())
    try:
        with engine.connect() as connection:
            run_online(connection)
    finally:
        engine.dispose()


main()
