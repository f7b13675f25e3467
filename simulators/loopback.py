"""A loopback HTTP server on a background thread: the common ground of the simulators."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler with one way to answer; simulators subclass it."""

    # headers and body are written separately: without this, Nagle + delayed ACK add ~40 ms a call
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base's name
        """Silent: tests and the demo should not see a line per request."""

    def send_payload(self, status: int, payload: bytes, content_type: str = "application/json",
                     headers: dict[str, str] | None = None) -> None:
        """Answer with `payload`; a client that went away (its timeout fired) is not an error."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class LoopbackHTTPServer(ThreadingHTTPServer):
    """Threading server that knows its simulator (`self.server.simulator` in handlers)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, simulator: Any):
        self.simulator = simulator
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) is not an error worth printing.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """Start/stop of a loopback HTTP server on a background thread."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._requested_port = port
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Any:
        if self._server is None:
            self._server = LoopbackHTTPServer((self._host, self._requested_port), self.handler, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"{type(self).__name__}:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"


def serve_until_interrupted(server: LoopbackServer) -> int:
    """Start `server`, print its URL, serve until Ctrl-C (SIGINT) or SIGTERM; the exit code.

    Both signals are handled here even when the process started with them ignored (a shell
    starts a background job with SIGINT ignored, and Python then leaves it ignored).
    """
    import signal
    import time

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    with server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0
