"""Amounts of money as Vietnamese sources write them → whole đồng (rule `amount.vn_grouping`)."""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from decimal import Decimal

# The currency a clerk writes after the number: đ, ₫, đồng, VNĐ, VND (any case, a trailing dot).
_UNIT = re.compile(r"\s*(?:đồng|vnđ|vnd|đ|₫)\.?$", re.IGNORECASE)
# Digits plain, or grouped by threes with one separator throughout (".", ",", a space, a
# no-break space); then, optionally, a decimal part of one or two digits after the other mark.
# A group of three after the last separator is a thousands group, never decimals.
_AMOUNT = re.compile(
    r"(?P<sign>-?)"
    r"(?P<whole>[0-9]+|[1-9][0-9]{0,2}(?P<sep>[., \u00a0\u202f])[0-9]{3}(?:(?P=sep)[0-9]{3})*)"
    r"(?:(?P<mark>[.,])(?P<decimals>[0-9]{1,2}))?"
)
_NOT_DIGIT = re.compile(r"[^0-9]")
# The largest amount read: a million billion đồng, beyond any fee. A larger number (10^400, a
# digit string pasted twice) is not an amount, and a float could not hold it.
MAX_DONG = 10**15


def amount_to_dong(value: object) -> tuple[int | None, bool]:
    """An amount as written → (whole đồng, True); empty → (None, True); unreadable → (None, False).

    Rule `amount.vn_grouping`: "1.234.567", "1,234,567", "1 234 567", "50.000 đ", "50.000VNĐ",
    "50000" and "50000.00" all read as the đồng they say; a lone group of three after one
    separator means thousands ("50.000" and "50,000" are both 50 000: Vietnamese and English
    grouping agree). A number (int, or a float or Decimal that is whole, from a JSON number or a
    database column) is taken as is. Anything else is not guessed — (None, False), which the
    transform reports as `fee.valid_amount`: a fraction of a đồng ("1,5", "1.234,5", 12.5; the
    đồng has no subunit), wrong grouping ("12.34.567", "1234.567", "0.500"), mixed separators
    ("1,234.567"), words or other currencies, and amounts beyond ±MAX_DONG (10^400, 1e300). A
    negative amount is read ("-50.000" → -50 000): the quality gate's `fee.minimum` refuses it.
    """
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, numbers.Integral):
        return _bounded(int(value))
    if isinstance(value, float | Decimal):
        amount, ok = _whole(value)
        return _bounded(amount) if ok and amount is not None else (amount, ok)
    if not isinstance(value, str):
        return None, False
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        return None, True
    match = _AMOUNT.fullmatch(_UNIT.sub("", text))
    if match is None or (match["sep"] and match["mark"] == match["sep"]):
        return None, False
    if match["decimals"] and match["decimals"].strip("0"):
        return None, False  # a fraction of a đồng is not an amount of đồng
    digits = _NOT_DIGIT.sub("", match["whole"]).lstrip("0") or "0"
    if len(digits) > len(str(MAX_DONG)):  # not turned into an int: Python refuses 4,300+ digits
        return None, False
    amount = int(digits)
    return _bounded(-amount if match["sign"] else amount)


def _bounded(amount: int) -> tuple[int | None, bool]:
    """An amount within ±MAX_DONG → (amount, True); a larger one is refused (None, False)."""
    return (amount, True) if abs(amount) <= MAX_DONG else (None, False)


def _whole(value: float | Decimal) -> tuple[int | None, bool]:
    """A number that is whole and finite → its int; NaN, infinities and fractions → refused."""
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return None, False
        return int(value), True
    if not math.isfinite(value) or not value.is_integer():
        return None, False
    return int(value), True


def to_portal_amount(value: object) -> object:
    """A database or spreadsheet number → the amount as a portal record carries it; text unchanged.

    A whole number becomes its digits ("50000", as sources write it); a fractional one (or NaN)
    stays a float, which `amount_to_dong` refuses — written as text, 50.125 would read as
    50 125 đồng. Anything that is not a number is returned as it is.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | float | Decimal):
        return value
    amount, ok = amount_to_dong(value)
    return str(amount) if ok else float(value)
