"""Amounts as Vietnamese sources write them → whole đồng, or refused: a table in, expected out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from transforms.amounts import amount_to_dong, to_portal_amount

REFUSED = (None, False)  # the transform's `fee.valid_amount`
NO_FEE = (None, True)


@pytest.mark.parametrize("written, expected", [
    # grouped by thousands: Vietnamese dots, English commas, spaces
    ("1.234.567", (1234567, True)),
    ("1,234,567", (1234567, True)),
    ("1 234 567", (1234567, True)),
    ("1\u00a0234\u00a0567", (1234567, True)),  # no-break spaces, as spreadsheets format
    ("1.000.000.000", (1000000000, True)),
    # a lone group of three after one separator is thousands, in either grouping
    ("50.000", (50000, True)),
    ("50,000", (50000, True)),
    ("50 000", (50000, True)),
    # the currency written after it
    ("1.234.567 đ", (1234567, True)),
    ("50.000đ", (50000, True)),
    ("50.000 VNĐ", (50000, True)),
    ("50,000 VND", (50000, True)),
    ("50.000 đồng", (50000, True)),
    ("50.000 Đ.", (50000, True)),
    ("50 000₫", (50000, True)),
    ("50.000 đo\u0302\u0300ng", (50000, True)),  # NFD from an old system
    # plain digits, surrounding spaces, zero
    ("50000", (50000, True)),
    (" 50000 ", (50000, True)),
    ("0", (0, True)),
    # whole amounts written with a zero decimal part (the exchange package writes Numeric(14,2))
    ("50000.00", (50000, True)),
    ("1.234.567,00", (1234567, True)),
    ("1,234,567.00", (1234567, True)),
    # numbers from a JSON number or a database column, taken as is when whole
    (50000, (50000, True)),
    (50000.0, (50000, True)),
    (Decimal("50000.00"), (50000, True)),
    # negative: read, then refused by the gate's `fee.minimum`
    ("-50.000", (-50000, True)),
    (-20000, (-20000, True)),
    # empty: no fee
    ("", NO_FEE),
    ("   ", NO_FEE),
    (None, NO_FEE),
    # a fraction of a đồng: the đồng has no subunit
    ("1,5", REFUSED),
    ("1.5", REFUSED),
    ("1.234,5", REFUSED),
    ("12.50", REFUSED),
    ("1,234.56", REFUSED),
    (12.5, REFUSED),
    (Decimal("1.5"), REFUSED),
    (float("nan"), REFUSED),
    # wrong grouping
    ("12.34.567", REFUSED),
    ("1234.567", REFUSED),
    ("1.234.56", REFUSED),
    ("0.500", REFUSED),
    ("1  234", REFUSED),
    # mixed separators
    ("1,234.567", REFUSED),
    ("1.234,567", REFUSED),
    ("1 234.567", REFUSED),
    ("1.234.00", REFUSED),
    # not an amount at all
    ("abc", REFUSED),
    ("50k", REFUSED),
    ("50 nghìn", REFUSED),
    ("1e5", REFUSED),
    ("đ", REFUSED),
    ("$50", REFUSED),
    ("(50.000)", REFUSED),
    (True, REFUSED),
    ([50000], REFUSED),
])
def test_amount_to_dong(written, expected):
    assert amount_to_dong(written) == expected


@pytest.mark.parametrize("value, expected", [
    (50000, "50000"), (50000.0, "50000"), (Decimal("1234567.00"), "1234567"),
    ("50.000 đ", "50.000 đ"), (None, None),
])
def test_to_portal_amount_writes_whole_numbers_as_digits(value, expected):
    assert to_portal_amount(value) == expected


@pytest.mark.parametrize("value", [50.125, Decimal("50.125"), 1.5])
def test_a_fractional_source_number_is_never_turned_into_grouped_text(value):
    # "50.125" as text reads as 50 125 đồng: the number stays a number, and is refused.
    kept = to_portal_amount(value)
    assert isinstance(kept, float) and amount_to_dong(kept) == REFUSED
