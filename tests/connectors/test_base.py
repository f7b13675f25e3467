"""The HTTP base's public seam against a real loopback server: methods, bodies, deadlines, retries, errors."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from connectors.base import (
    HttpJsonConnector,
    HttpStreamSpec,
    Page,
    ResponseTooLarge,
    SessionExpired,
    spool_body,
)
from connectors.errors import SourceProtocolError, SourceUnavailable
from connectors.settings import connection_from_uri
from simulators.loopback import LoopbackHandler, LoopbackServer

DRIP_INTERVAL = 0.2  # seconds between two bytes of a dripping answer


class ProbeServer(LoopbackServer):
    """A loopback server with a route per behaviour, and faults served before the next answers."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0)
        self.handler = _ProbeHandler
        self.requests: list[str] = []
        self.faults: deque[str] = deque()
        self.stopping = threading.Event()  # ends the dripping and silent answers at teardown
        self.lock = threading.Lock()

    def inject(self, *faults: str) -> None:
        """Answer the next requests with these faults, in order: 500, 429, 401, garbled, html."""
        self.faults.extend(faults)

    def stop(self) -> None:
        self.stopping.set()
        super().stop()


class _ProbeHandler(LoopbackHandler):
    server: Any

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        self._answer(None)

    def do_POST(self) -> None:  # noqa: N802 — http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(json.loads(body) if body else None)

    def _answer(self, body: Any) -> None:
        probe: ProbeServer = self.server.simulator
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        with probe.lock:
            probe.requests.append(f"{self.command} {self.path}")
            fault = probe.faults.popleft() if probe.faults else None
        if fault == "500":
            self.send_payload(500, b'{"error": "boom"}')
        elif fault == "429":
            self.send_payload(429, b"{}", headers={"Retry-After": "1"})
        elif fault == "401":
            self.send_payload(401, b'{"error": "who are you"}')
        elif fault == "garbled":
            self.send_payload(200, b'{"items": [1, 2')
        elif fault == "html":
            self.send_payload(200, b"<html><body>maintenance</body></html>", content_type="text/html")
        elif parts.path == "/items":
            self.send_payload(200, json.dumps({"method": self.command, "query": query, "body": body}).encode())
        elif parts.path == "/file":
            self.send_payload(200, b"x" * int(query["size"]), content_type="application/xml")
        elif parts.path == "/pages":  # keyset paging: three records per page, 7 records in all
            after = int(query.get("after", 0))
            records = [{"n": n} for n in range(after + 1, min(after + 3, 7) + 1)]
            following = None if not records or records[-1]["n"] == 7 else records[-1]["n"]
            if query.get("stuck"):
                following = after or 3  # a source whose cursor never moves on
            self.send_payload(200, json.dumps({"records": records, "next": following}).encode())
        elif parts.path == "/drip-body":
            self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        elif parts.path == "/drip-headers":
            self._drip(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        elif parts.path == "/silent":
            self._drip(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", interval=None)
        elif parts.path == "/slow-json":  # a whole answer, a byte every 50 ms: 0.6 s in all
            body = b'{"ok": true}'
            self._drip(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body), 0.05, body)
        else:
            self.send_payload(404, b'{"error": "no such route"}')

    def _drip(self, head: bytes, interval: float | None = DRIP_INTERVAL, body: bytes | None = None) -> None:
        """Send `head`, then one byte of `body` every `interval` (None: nothing).

        Without a `body`, the drip goes on until the client goes away (or the server stops).
        """
        probe: ProbeServer = self.server.simulator
        self.close_connection = True
        left = deque(body) if body is not None else None
        try:
            self.wfile.write(head)
            self.wfile.flush()
            while (left is None or left) and not probe.stopping.wait(interval if interval is not None else 0.05):
                if interval is not None:
                    self.wfile.write(bytes([left.popleft()]) if left is not None else b"a")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client cut the exchange: what the deadline is for


class ProbeConnector(HttpJsonConnector):
    """The least a connector declares: one keyset stream over `GET /pages`."""

    source: ClassVar[str] = "probe"
    streams: ClassVar[tuple[HttpStreamSpec, ...]] = (
        HttpStreamSpec(name="numbers", entity="dossier", key=("n",), replication_key=None, required_fields=("n",),
                       endpoint="pages", method="GET", paging="keyset"),
    )
    stuck = False

    def page_request(self, spec, window, page, session):
        params: dict[str, Any] = {"stuck": "1"} if self.stuck else {}
        if page is not None:
            params["after"] = page
        return "/pages", params

    def parse_page(self, spec, answer, where):
        return Page(records=answer["records"], next_page=answer["next"])


@pytest.fixture
def server():
    with ProbeServer() as probe:
        yield probe


def probe(server: ProbeServer, **options) -> ProbeConnector:
    options = {"timeout": 0.5, "max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.05, **options}
    return ProbeConnector(connection_from_uri(server.url), **options)


# -- what the seam sends and returns ----------------------------------------------------------


def test_get_with_a_query_returns_the_decoded_json(server):
    with probe(server) as conn:
        answer = conn.request("GET", "/items", params={"after": "2017-06-01T08:00:00+07:00,REG-1"}, where="list")
    assert answer == {"method": "GET", "query": {"after": "2017-06-01T08:00:00+07:00,REG-1"}, "body": None}


def test_post_json_sends_the_body_and_returns_the_decoded_json(server):
    with probe(server) as conn:
        assert conn.request("POST", "/items", json={"a": [1, "ư"]}, where="push")["body"] == {"a": [1, "ư"]}
        assert conn.post_json("/items", {"b": 2}, "push")["body"] == {"b": 2}  # the thin shorthand


def test_streamed_body_goes_to_the_sink_as_it_arrives(server):
    size = 3 << 20  # above spool_body's in-memory part: spooled to disk
    with probe(server, timeout=5.0) as conn:
        spool = conn.request("GET", f"/file?size={size}", where="file", sink=spool_body)
    with spool:
        assert spool.read() == b"x" * size


def test_a_body_above_max_bytes_is_refused_at_once_without_retry(server):
    with probe(server, max_retries=3) as conn, pytest.raises(ResponseTooLarge) as caught:
        conn.request("GET", "/file?size=5000", where="message 7", sink=spool_body, max_bytes=4096)
    assert str(caught.value) == "probe message 7: answer larger than 4096 bytes"
    assert isinstance(caught.value, SourceProtocolError)
    assert len(server.requests) == 1


def test_keyset_paging_follows_next_until_none(server):
    seen: list[tuple[int, int | None, int]] = []
    with probe(server, chunk_size=5, on_page=lambda _, page, pages, so_far: seen.append((page, pages, so_far))) as conn:
        chunks = list(conn.read("numbers"))
    assert [[r["n"] for r in chunk] for chunk in chunks] == [[1, 2, 3, 4, 5], [6, 7]]
    assert server.requests == ["GET /pages", "GET /pages?after=3", "GET /pages?after=6"]
    assert seen == [(1, None, 3), (2, None, 6), (3, None, 7)]  # no total: keyset sources do not say


def test_keyset_paging_refuses_a_cursor_that_does_not_move(server):
    with probe(server) as conn:
        conn.stuck = True
        with pytest.raises(SourceProtocolError, match="probe pages page 2: next page 3 is the one just read"):
            list(conn.read("numbers"))


# -- the total deadline -----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "sink"), [("/drip-body", None), ("/drip-body", spool_body),
                                            ("/drip-headers", None), ("/silent", None)],
                         ids=["json-body", "streamed-body", "headers", "silent"])
def test_an_answer_that_never_completes_is_cut_at_the_deadline(server, path, sink):
    timeout, retries, backoff = 0.5, 1, 0.05
    conn = probe(server, timeout=timeout, max_retries=retries, backoff_max=backoff)
    started = time.monotonic()
    with conn, pytest.raises(SourceUnavailable) as caught:
        conn.request("GET", path, where="drip", sink=sink)
    elapsed = time.monotonic() - started
    # each attempt ends at its deadline, not at a per-read timeout that the drip never trips
    assert timeout * (retries + 1) <= elapsed < timeout * (retries + 1) + backoff + 0.75
    assert str(caught.value) == "probe drip: gave up after 2 attempts: no complete answer within 0.5 s"
    assert len(server.requests) == retries + 1


def test_a_reused_connection_that_drips_its_headers_is_cut_too(server):
    with probe(server, timeout=0.5, max_retries=0) as conn:
        conn.request("GET", "/items", where="first")  # leaves a keep-alive connection in the pool
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="no complete answer within 0.5 s"):
            conn.request("GET", "/drip-headers", where="drip")
        assert time.monotonic() - started < 0.5 + DRIP_INTERVAL + 0.5
        assert conn.request("GET", "/items", where="after")["method"] == "GET"  # a new client takes over


def test_the_deadline_bounds_the_whole_answer_not_each_read(server):
    # every byte comes 50 ms after the one before, well within a per-read limit of 0.3 s …
    with probe(server, timeout=0.3, max_retries=0) as conn, pytest.raises(SourceUnavailable, match="within 0.3 s"):
        conn.request("GET", "/slow-json", where="slow")
    # … and an answer that completes within the deadline is kept
    with probe(server, timeout=3.0, max_retries=0) as conn:
        assert conn.request("GET", "/slow-json", where="slow") == {"ok": True}


# -- retries and error mapping ----------------------------------------------------------------


def test_5xx_is_retried_then_succeeds(server, caplog):
    server.inject("500", "500")
    with probe(server, max_retries=2) as conn:
        assert conn.request("GET", "/items", where="list")["method"] == "GET"
    assert len(server.requests) == 3
    assert "probe list: HTTP 500; retry 1 of 2" in caplog.text


def test_5xx_until_retries_run_out_is_source_unavailable(server):
    server.inject("500", "500", "500")
    with probe(server, max_retries=2) as conn, pytest.raises(SourceUnavailable) as caught:
        conn.request("POST", "/items", json={}, where="push")
    assert str(caught.value) == "probe push: gave up after 3 attempts: HTTP 500"


def test_429_waits_its_retry_after(server):
    server.inject("429")
    started = time.monotonic()
    with probe(server, backoff_max=5.0) as conn:  # backoff alone would wait ~0.01 s
        conn.request("GET", "/items", where="list")
    assert 1.0 <= time.monotonic() - started < 2.5


def test_401_is_session_expired(server):
    server.inject("401")
    with probe(server, max_retries=3) as conn, pytest.raises(SessionExpired, match="HTTP 401"):
        conn.request("GET", "/items", where="list")
    assert len(server.requests) == 1


@pytest.mark.parametrize(("fault", "detail"), [
    ("garbled", "response is not JSON (malformed JSON: Expecting ',' delimiter at char 15, HTTP 200)"),
    ("html", "response is not JSON (HTML page, HTTP 200)"),
])
def test_garbled_body_is_retried_once_then_a_protocol_error(server, fault, detail):
    server.inject(fault, fault)
    with probe(server, max_retries=5) as conn, pytest.raises(SourceProtocolError) as caught:
        conn.request("GET", "/items", where="list")
    assert str(caught.value) == f"probe list: {detail}"
    assert len(server.requests) == 2


def test_other_4xx_is_a_protocol_error_without_retry(server):
    with probe(server, max_retries=3) as conn, pytest.raises(SourceProtocolError) as caught:
        conn.request("GET", "/nowhere", where="list")
    assert str(caught.value) == 'probe list: HTTP 404 ({"error": "no such route"})'
    assert len(server.requests) == 1
