"""Source time formats → timezone-aware datetimes in Vietnam local time."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PORTAL_FORMAT = "%Y%m%d%H%M%S"
# The years a source time may fall in. Beyond them a time is a placeholder ("00010101…",
# "9999…" for "never") or a typo, and pandas' nanosecond times (1677–2262) could not hold it.
MIN_YEAR, MAX_YEAR = 1900, 2199


class InvalidTime(ValueError):
    """A source time text that is not a real time in its declared format."""


def parse_portal_time(value: object) -> datetime | None:
    """`yyyyMMddHHmmss` in local time (no offset written) → aware datetime; `""` → None.

    Raises InvalidTime for text that is not 14 digits, not a real calendar time (Feb 30), or
    outside the years MIN_YEAR–MAX_YEAR (years 0001 and 9999 are placeholders, not times).
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) != 14 or not text.isdigit():
        raise InvalidTime(f"{text!r} is not yyyyMMddHHmmss")
    if not MIN_YEAR <= int(text[0:4]) <= MAX_YEAR:
        raise InvalidTime(f"{text!r} is outside the years {MIN_YEAR}–{MAX_YEAR}")
    try:
        # fields by position: ~20x faster than strptime, which dominated the transform
        return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                        int(text[10:12]), int(text[12:14]), tzinfo=LOCAL_TZ)
    except ValueError as exc:
        raise InvalidTime(f"{text!r} is not a real date and time ({exc})") from None


def format_portal_time(moment: datetime) -> str:
    """Aware datetime → `yyyyMMddHHmmss` in local time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: give it a timezone (Asia/Ho_Chi_Minh)")
    return moment.astimezone(LOCAL_TZ).strftime(PORTAL_FORMAT)


def local_date(moment: datetime | None) -> date | None:
    """The calendar date of a moment in Vietnam."""
    return moment.astimezone(LOCAL_TZ).date() if moment is not None else None


def local_month(moment: datetime | None) -> str | None:
    """`YYYY-MM` of a moment in Vietnam (the month grain of the reports)."""
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m") if moment is not None else None
