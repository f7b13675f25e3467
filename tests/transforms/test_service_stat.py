"""Commune report rows → the service_stat frame: counts, and what is no count."""

from __future__ import annotations

import pandas as pd
import pytest

from transforms.service_stat import MAX_COUNT, service_stats_to_frame


def _row(received: object) -> dict:
    return {"commune_code": "08707", "month": "2017-03", "procedure_code": "1.001234", "received": received,
            "online": 0, "on_time": 0, "late": 0, "pending": 0, "_file": "baocao_08707_2017-03.xlsx"}


@pytest.mark.parametrize(("cell", "count", "errors"), [
    (3, 3, []),
    (0, 0, []),
    (MAX_COUNT, MAX_COUNT, []),
    (-1, -1, []),  # read: the schema's minimum refuses it (received.minimum)
    (None, None, []),  # empty: received.required
    (MAX_COUNT + 1, None, ["received.valid_integer"]),  # beyond the warehouse's INTEGER
    (10**30, None, ["received.valid_integer"]),  # was: "Python int too large to convert to C long"
    (-(10**30), None, ["received.valid_integer"]),
    (3.5, None, ["received.valid_integer"]),
    ("=1+2", None, ["received.valid_integer"]),  # a formula, read as its text
    (True, None, ["received.valid_integer"]),
])
def test_a_count_is_a_whole_number_the_warehouse_holds(cell, count, errors):
    frame = service_stats_to_frame([_row(cell)])
    value = frame.loc[0, "received"]
    assert (None if pd.isna(value) else int(value)) == count
    assert frame.loc[0, "_errors"] == errors
