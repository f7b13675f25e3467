"""The ministry's registration API on loopback: the twin the ministry source is tested against."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from simulators.loopback import LoopbackHandler, LoopbackServer

PATH = "/api/v1/registrations"
MAX_LIMIT = 500


def cursor_of(record: dict[str, Any]) -> str:
    """The key-set cursor after `record`: its updated time and id."""
    return f"{record['updated_at']},{record['registration_id']}"


def _order(record: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(record["updated_at"]), record["registration_id"]


class MinistrySimulator(LoopbackServer):
    """Serves `registrations` as the ministry does: window, (updated_at, id) order, `after` cursor.

    `calls` holds the query of every request, in order; `registrations` may be changed between
    syncs (a new or updated registration), under `lock`.
    """

    def __init__(self, registrations: list[dict[str, Any]], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.handler = _MinistryHandler
        self.registrations = list(registrations)
        self.calls: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def upsert(self, record: dict[str, Any]) -> None:
        """Add a registration, or replace the one with its id."""
        with self.lock:
            self.registrations = [r for r in self.registrations if r["registration_id"] != record["registration_id"]]
            self.registrations.append(record)

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        """One answer: the registrations of the window after the cursor, at most `limit`."""
        with self.lock:
            self.calls.append(query)
            rows = sorted(self.registrations, key=_order)
        start = datetime.fromisoformat(query["updated_from"]) if "updated_from" in query else None
        end = datetime.fromisoformat(query["updated_to"]) if "updated_to" in query else None
        rows = [r for r in rows if (start is None or _order(r)[0] >= start) and (end is None or _order(r)[0] <= end)]
        if "after" in query:
            updated, _, registration_id = query["after"].partition(",")
            after = (datetime.fromisoformat(updated), registration_id)
            rows = [r for r in rows if _order(r) > after]
        limit = min(int(query.get("limit", 100)), MAX_LIMIT)
        items = rows[:limit]
        return {"items": items, "next": cursor_of(items[-1]) if len(rows) > limit else None}


class _MinistryHandler(LoopbackHandler):
    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        parts = urlsplit(self.path)
        if parts.path != PATH:
            self.send_payload(404, b'{"error": "not found"}')
            return
        answer = self.server.simulator.page(dict(parse_qsl(parts.query)))
        self.send_payload(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"))
