"""Indicator views generated from the standard: one `mart_<id>` view per indicator with a formula.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from warehouse import indicator_sql, views

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The views are generated at migration time from standards/indicators.yaml, as 0001 creates the
# views of warehouse/views.py: one source for the definitions, no 1,000 lines of frozen SQL here.
# The trade-off: this revision builds whatever the standard says when it runs, so a warehouse
# migrated before a later change of the yaml keeps the older views. A change to a definition
# therefore needs its own revision that drops and re-creates the views (drop_indicator_views then
# create_indicator_views), as a change to warehouse/views.py does.


def upgrade() -> None:
    conn = op.get_bind()
    for view in indicator_sql.indicator_views():
        conn.exec_driver_sql(view.create_sql(conn.dialect.name))
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"COMMENT ON VIEW {view.name} IS {views._sql_string(view.doc)}")


def downgrade() -> None:
    conn = op.get_bind()
    # Every generated view this revision may have made: the ids of the standard now, and any
    # other `mart_<id>` view not of warehouse/views.py (an id since removed from the yaml).
    keep = {v.name for v in views.VIEWS}
    names = {v.name for v in indicator_sql.indicator_views()}
    names |= {n for n in sa.inspect(conn).get_view_names() if n.startswith("mart_") and n not in keep}
    for name in sorted(names):
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
