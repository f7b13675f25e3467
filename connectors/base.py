"""Connector contract, and the HTTP JSON base that owns client, retries, session, paging, chunks."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from connectors.errors import (
    SourceAuthError,
    SourceProtocolError,
    SourceUnavailable,
    one_line,
)
from connectors.settings import ConnectionSettings
from transforms.timefmt import LOCAL_TZ

__all__ = [
    "LOCAL_TZ",
    "Connector",
    "HttpJsonConnector",
    "HttpStreamSpec",
    "Page",
    "PageCallback",
    "SessionExpired",
    "StreamSpec",
    "Window",
    "iter_chunks",
]


log = logging.getLogger("lienthong.connectors")

T = TypeVar("T")

# on_page(stream, page, total_pages, records_so_far): progress after each page is received.
PageCallback = Callable[[str, int, int, int], None]


# The portal-shaped dossier's required fields (the standard's required dossier columns, by their
# DVCQG names): every source that delivers portal-shaped dossiers declares these.
PORTAL_DOSSIER_REQUIRED = (
    "MaHoSo", "MaTTHC", "DonViXuLy", "KenhThucHien", "LoaiDoiTuong", "NgayTiepNhan", "TrangThaiHoSo", "NgayCapNhat",
)

# The portal record's fields (docs/INTERFACES.md §1) that sources fill and files may name as
# headers; `LePhi` is the fees in total, for a source that keeps no list of them (DanhSachLePhi).
PORTAL_DOSSIER_FIELDS = (
    "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "SoBienNhan", "ChuHoSo",
    "LoaiDoiTuong", "MaDoiTuong", "ThongTinKhac", "Email", "Fax", "SoDienThoai", "TrichYeuHoSo",
    "NgayTiepNhan", "NgayHenTra", "TrangThaiHoSo", "NgayTra", "ThongTinTra", "HinhThuc",
    "NgayKetThucXuLy", "DonViXuLy", "GhiChu", "KenhThucHien", "SoGiayToChuHoSo", "NoiNopHoSo",
    "HoSoCoThanhPhanSoHoa", "TaiKhoanDuocXacThucVoiVNeID", "DuocThanhToanTrucTuyen", "NgayTuChoi",
    "NgayNopHoSo", "NgayCapNhat", "LePhi",
)  # fmt: skip
PORTAL_PROCEDURE_FIELDS = (
    "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "MaCoQuanThucHien", "CapThucHien", "MucDo",
    "PhiLePhi", "ThoiHanGiaiQuyet", "NgayCongBo", "NgayBaiBo", "NgayCapNhat",
)  # fmt: skip


@dataclass(frozen=True)
class StreamSpec:
    """What a connector declares about one stream; the base class does the reading."""

    name: str  # "procedures" | "dossiers"
    entity: str  # standard entity: "procedure" | "dossier"
    key: tuple[str, ...]  # source key fields, e.g. ("MaHoSo",)
    replication_key: str | None  # "NgayCapNhat", or None for a full-table stream
    required_fields: tuple[str, ...]  # a record lacking one is still yielded (quality decides)

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(f"stream {self.name!r} declares no key field")


@dataclass(frozen=True)
class HttpStreamSpec(StreamSpec):
    """A stream of an HTTP JSON source; `endpoint` is the source's name for it (service, path)."""

    endpoint: str = ""

    @property
    def label(self) -> str:
        """How messages name the stream: the source's endpoint name, else the stream name."""
        return self.endpoint or self.name


@dataclass(frozen=True)
class Window:
    """A replication window `[start, end]` (both inclusive), timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"Window.{name} must be timezone-aware, got naive {value!r}")
        if self.start > self.end:
            raise ValueError(f"Window starts after it ends: {self.start} > {self.end}")


@dataclass(frozen=True)
class Page:
    """One page as a connector parsed it: its records and the total the source reports."""

    records: list[dict[str, Any]]
    total: int


class SessionExpired(Exception):
    """Raised by a connector's answer parser when the source no longer accepts the session."""


def iter_chunks(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Group `records` into lists of at most `size`, holding one list at a time."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Connector(ABC):
    """A source: it declares its streams; `read` yields chunks of raw records, never all."""

    source: ClassVar[str]
    streams: ClassVar[tuple[StreamSpec, ...]]

    def stream(self, name: str) -> StreamSpec:
        """The declared stream called `name`."""
        for spec in self.streams:
            if spec.name == name:
                return spec
        known = ", ".join(spec.name for spec in self.streams)
        raise ValueError(f"{self.source} has no stream {name!r} (streams: {known})")

    @abstractmethod
    def read(self, stream: str, window: Window | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks (lists of raw source records) of at most `chunk_size` records."""

    def close(self) -> None:  # noqa: B027 — optional hook: most connectors hold nothing to release
        """Release what the connector holds (clients, sessions)."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Transient(Exception):
    """A failure worth retrying: timeout, connection error, HTTP 5xx or 429."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class _Garbled(Exception):
    """A 2xx answer whose body is not usable JSON (empty, HTML, malformed): retried at most once."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _wait_retry_after(wait_base):
    """Wait what the server asked for (Retry-After, capped), else the exponential backoff."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return self.fallback(retry_state)


class HttpJsonConnector(Connector):
    """Base of JSON-over-HTTP sources: client, timeouts, retries, session, paging and chunking.

    A subclass declares `source` and `streams` (of `HttpStreamSpec`) and fills three hooks:
    `open_session()` (log in; default: no session), `page_request()` (path and JSON body of one
    page) and `parse_page()` (check an answer, return its records and total, raise
    `SessionExpired` when the source rejects the session). Paging runs pages
    `1..ceil(total / page_size)`, stopping early on an empty page.
    """

    streams: ClassVar[tuple[HttpStreamSpec, ...]]
    max_page_size: ClassVar[int | None] = None
    # An unusable body on a 2xx answer may be a glitch; retry it once, not max_retries times.
    protocol_retries: ClassVar[int] = 1

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        page_size: int = 500,
        chunk_size: int = 2000,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        on_page: PageCallback | None = None,
    ) -> None:
        if page_size < 1 or (self.max_page_size and page_size > self.max_page_size):
            limit = f"1..{self.max_page_size}" if self.max_page_size else "at least 1"
            raise ValueError(f"{self.source}: page_size must be {limit}, got {page_size}")
        if chunk_size < 1:
            raise ValueError(f"{self.source}: chunk_size must be at least 1, got {chunk_size}")
        if timeout <= 0 or max_retries < 0 or backoff_base < 0 or backoff_max < 0:
            raise ValueError(f"{self.source}: timeout, retries and backoff must be positive")
        self.settings = settings
        self.page_size = page_size
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_page = on_page
        self._client: httpx.Client | None = None
        self._session: str | None = None
        self._has_session = False

    # -- hooks a connector fills ------------------------------------------------------------

    def open_session(self) -> str | None:
        """Log in and return the session token (use `post_json`); the default source needs none."""
        return None

    @abstractmethod
    def page_request(
        self, spec: HttpStreamSpec, window: Window | None, page: int, session: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The path and JSON body that ask for `page` (1-based) of `spec` within `window`."""

    @abstractmethod
    def parse_page(self, spec: HttpStreamSpec, answer: Any, where: str) -> Page:
        """Check a decoded answer; return its records and the reported total.

        Raise `SourceProtocolError` for an answer out of contract and `SessionExpired` when the
        source says the session is no longer valid.
        """

    # -- the work --------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """The one HTTP client of this connector, created on first use."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.settings.base_url,
                timeout=httpx.Timeout(self.timeout),
                headers={"Accept": "application/json", "User-Agent": "lienthong-connectors"},
            )
        return self._client

    def close(self) -> None:
        """Close the HTTP client and forget the session."""
        self._forget_session()
        if self._client is not None:
            self._client.close()
            self._client = None

    def read(self, stream: str, window: Window | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks of at most `chunk_size` raw records of `stream` within `window`.

        Records come as received (duplicates and incomplete records included); at most one chunk
        and one page are held at a time.
        """
        spec = self.stream(stream)
        assert isinstance(spec, HttpStreamSpec)
        return iter_chunks(self._iter_records(spec, window), self.chunk_size)

    def post_json(self, path: str, body: dict[str, Any], where: str) -> Any:
        """POST `body` to `path` and return the decoded JSON answer, retrying transient failures.

        Timeouts, connection errors, HTTP 5xx and 429 are retried with exponential backoff and
        jitter (429 waits its Retry-After, capped at `backoff_max`); after `max_retries` retries
        `SourceUnavailable` carries the last cause. An empty, HTML or malformed 2xx body is
        retried `protocol_retries` times, then raises `SourceProtocolError`. HTTP 401 raises
        `SessionExpired`.
        """
        garbled = 0

        def worth_retrying(exc: BaseException) -> bool:
            nonlocal garbled
            if isinstance(exc, _Transient):
                return True
            if isinstance(exc, _Garbled):
                garbled += 1
                return garbled <= self.protocol_retries
            return False

        retrying = Retrying(
            retry=retry_if_exception(worth_retrying),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=_wait_retry_after(
                wait_exponential_jitter(
                    initial=self.backoff_base, max=self.backoff_max, jitter=self.backoff_base
                ),
                cap=self.backoff_max,
            ),
            before_sleep=lambda state: self._log_retry(where, state),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._post_once(path, body, where)
        except _Garbled as exc:
            raise SourceProtocolError(self.source, where, exc.detail) from None
        except RetryError as exc:
            last = exc.last_attempt.exception()
            if isinstance(last, _Garbled):
                raise SourceProtocolError(self.source, where, last.detail) from None
            attempts = exc.last_attempt.attempt_number
            raise SourceUnavailable(
                self.source, where, f"gave up after {attempts} attempts: {last}"
            ) from last
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _post_once(self, path: str, body: dict[str, Any], where: str) -> Any:
        try:
            response = self.client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise _Transient(f"no answer within {self.timeout:g} s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(
                f"connection to {self.settings.base_url} failed ({type(exc).__name__})"
            ) from exc
        return self._decode(response, where)

    def _decode(self, response: httpx.Response, where: str) -> Any:
        """The JSON of `response`, or the internal exception that says what to do about it."""
        status = response.status_code
        text = response.text
        unusable = _unusable_body(response, text)
        if status == 429:
            raise _Transient("HTTP 429 (too many requests)", _retry_after_seconds(response))
        if status >= 500:
            retry_after = _retry_after_seconds(response)  # a 503 may say when to come back
            if unusable == "HTML page":
                detail = f"response is not JSON (HTML error page, HTTP {status})"
            else:
                detail = f"HTTP {status}" + (f" ({unusable})" if unusable else "")
            raise _Transient(detail, retry_after)
        if status == 401:
            raise SessionExpired("HTTP 401")
        if not 200 <= status < 300:
            detail = unusable or one_line(text, 120)
            raise SourceProtocolError(self.source, where, f"HTTP {status} ({detail})")
        if unusable == "empty body":
            raise _Garbled(f"empty response body (HTTP {status})")
        if unusable:
            raise _Garbled(f"response is not JSON ({unusable}, HTTP {status})")
        try:
            return response.json()
        except ValueError as exc:
            reason = getattr(exc, "msg", type(exc).__name__)
            pos = getattr(exc, "pos", None)
            at = f" at char {pos}" if pos is not None else ""
            raise _Garbled(
                f"response is not JSON (malformed JSON: {reason}{at}, HTTP {status})"
            ) from None

    def _iter_records(
        self, spec: HttpStreamSpec, window: Window | None
    ) -> Iterator[dict[str, Any]]:
        page = 1
        total: int | None = None
        total_pages = 1
        received = 0
        while page <= total_pages:
            result = self._fetch_page(spec, window, page)
            if total is None:
                total = result.total
            elif result.total != total:
                log.warning(
                    "%s %s page %d: total changed from %d to %d while paging; continuing",
                    self.source,
                    spec.label,
                    page,
                    total,
                    result.total,
                )
                total = result.total
            total_pages = max(page, math.ceil(total / self.page_size))
            received += len(result.records)
            log.debug(
                "%s %s page %d/%d: %d records",
                self.source,
                spec.label,
                page,
                total_pages,
                len(result.records),
            )
            if self.on_page is not None:
                self.on_page(spec.name, page, total_pages, received)
            if not result.records:
                if page < total_pages:
                    log.warning(
                        "%s %s page %d of %d is empty; stopping early",
                        self.source,
                        spec.label,
                        page,
                        total_pages,
                    )
                break
            yield from result.records
            del result  # hold one page at a time, not two while the next one downloads
            page += 1
        log.info("%s %s: %d records received", self.source, spec.label, received)

    def post_in_session(
        self,
        request: Callable[[str | None], tuple[str, dict[str, Any]]],
        parse: Callable[[Any, str], T],
        where: str,
    ) -> T:
        """POST what `request(session)` builds, `parse(answer, where)` the answer, in a session.

        Retries as `post_json`; when `parse` (or the HTTP status) says the session expired, logs in
        again once and sends the same request with the new session. For calls that are not pages
        of a stream (e.g. pushing records to the source).
        """
        for fresh_login in (False, True):
            session = self._ensure_session()
            path, body = request(session)
            try:
                return parse(self.post_json(path, body, where), where)
            except SessionExpired as exc:
                self._forget_session()
                if fresh_login:
                    raise SourceAuthError(
                        self.source, where, f"session rejected again after a new login ({exc})"
                    ) from None
                log.info("%s %s: session expired (%s); logging in again", self.source, where, exc)
        raise AssertionError("unreachable")

    def _fetch_page(self, spec: HttpStreamSpec, window: Window | None, page: int) -> Page:
        """One page; on an expired session log in again once and ask for the same page."""
        return self.post_in_session(
            lambda session: self.page_request(spec, window, page, session),
            lambda answer, where: self.parse_page(spec, answer, where),
            f"{spec.label} page {page}",
        )

    def _ensure_session(self) -> str | None:
        if not self._has_session:
            try:
                self._session = self.open_session()
            except SessionExpired as exc:
                raise SourceAuthError(self.source, "login", f"login refused ({exc})") from None
            self._has_session = True
        return self._session

    def _forget_session(self) -> None:
        self._session = None
        self._has_session = False

    def _log_retry(self, where: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s %s: %s; retry %d of %d in %.2f s",
            self.source,
            where,
            exc,
            state.attempt_number,
            self.max_retries,
            wait,
        )


def _unusable_body(response: httpx.Response, text: str) -> str | None:
    """Why a body cannot be JSON at a glance ("empty body", "HTML page"), or None if it may be."""
    stripped = text.lstrip()
    if not stripped:
        return "empty body"
    content_type = response.headers.get("content-type", "").lower()
    if "html" in content_type or stripped[:1] == "<":
        return "HTML page"
    return None


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
