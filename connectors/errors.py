"""Errors a connector raises: one line each, naming the source, the place and what failed."""

from __future__ import annotations

import re

_MAX_DETAIL = 240


def one_line(text: object, limit: int = _MAX_DETAIL) -> str:
    """Collapse whitespace (newlines included) and cut `text` to `limit` characters."""
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SourceError(Exception):
    """A source could not be read; `str()` is `"<source> <where>: <what>"` on one line."""

    def __init__(self, source: str, where: str, what: str) -> None:
        self.source = source
        self.where = where
        self.what = one_line(what)
        super().__init__(str(self))

    def __str__(self) -> str:
        place = " ".join(part for part in (self.source, self.where) if part)
        return f"{place}: {self.what}"

    def __reduce__(self):  # keep the three fields when pickled (Celery workers, multiprocessing)
        return (type(self), (self.source, self.where, self.what))


class SourceUnavailable(SourceError):
    """Retries exhausted on timeouts, connection errors, HTTP 5xx or 429."""


class SourceProtocolError(SourceError):
    """The source answered, but not in its documented shape (not JSON, missing keys, error code)."""


class SourceIncomplete(SourceProtocolError):
    """The records read of a window fall short of the source's own count of it, after re-reads."""


class SourceAuthError(SourceError):
    """The source refused the credentials or the session."""


class ConnectionConfigError(ValueError):
    """A connection setting is missing or malformed (configuration, not the source's fault)."""


class MissingConnection(ConnectionConfigError):
    """No connection is configured under the expected name (e.g. an `AIRFLOW_CONN_*` variable)."""
