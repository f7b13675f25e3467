"""Connector contract, and the HTTP JSON base that owns client, retries, session, paging, chunks."""

from __future__ import annotations

import array
import hashlib
import json as jsonlib
import logging
import math
import re
import socket
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import IO, Any, ClassVar, Literal, Self, TypeVar, overload

import httpx
import msgspec
import numpy as np
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
    SourceIncomplete,
    SourceProtocolError,
    SourceUnavailable,
    one_line,
)
from connectors.settings import ConnectionSettings
from transforms.timefmt import LOCAL_TZ

__all__ = [
    "LOCAL_TZ",
    "PAGING_STYLES",
    "BodySink",
    "Connector",
    "HttpJsonConnector",
    "HttpStreamSpec",
    "DuplicateKey",
    "JsonRefused",
    "MAX_JSON_DEPTH",
    "Page",
    "PageCallback",
    "ResponseTooLarge",
    "SessionExpired",
    "StreamSpec",
    "Window",
    "decode_json",
    "nested_deeper",
    "iter_chunks",
    "spool_body",
    "unique_keys",
]


log = logging.getLogger("lienthong.connectors")

T = TypeVar("T")

# on_page(stream, page, total_pages, records_so_far): progress after each page is received;
# total_pages is None when the source does not say (keyset paging).
PageCallback = Callable[[str, int, "int | None", int], None]
# sink(chunks) → what the caller wants of a streamed answer body (e.g. `spool_body`: a file).
BodySink = Callable[[Iterator[bytes]], T]
PagingStyle = Literal["page_number", "keyset"]
PAGING_STYLES: tuple[PagingStyle, ...] = ("page_number", "keyset")
# A streamed body is held in memory up to this size, then spooled to disk.
SPOOL_IN_MEMORY = 1 << 20
# Arrays and objects nested deeper than this in an answer are refused (`decode_json`); the
# sources' answers nest a few levels (the portal's: answer, result, record, fee list, fee).
MAX_JSON_DEPTH = 64


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
# Fields holding an amount of đồng (in a flat file, `DanhSachLePhi` is the fee list's total): a
# source's number goes through `transforms.amounts.to_portal_amount`, never through plain text.
PORTAL_AMOUNT_FIELDS = frozenset({"LePhi", "PhiLePhi", "DanhSachLePhi"})


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
    """A stream of an HTTP JSON source: its endpoint, how a page is asked for, and how pages follow.

    `endpoint` is the source's name for it (service, path). `method` says how `page_request`'s
    parameters travel: the JSON body of a POST, or the query of a GET. `paging` is
    "page_number" (pages 1..ceil(total / page_size)) or "keyset" (each page names the next).
    """

    endpoint: str = ""
    method: Literal["GET", "POST"] = "POST"
    paging: PagingStyle = "page_number"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in ("GET", "POST"):
            raise ValueError(f"stream {self.name!r}: method must be GET or POST, got {self.method!r}")
        if self.paging not in PAGING_STYLES:
            raise ValueError(f"stream {self.name!r}: paging must be one of {PAGING_STYLES}, got {self.paging!r}")

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
    """One page as a connector parsed it: its records, and what says whether more pages follow.

    A "page_number" stream gives `total` (the records of the whole window, as the source reports
    it); a "keyset" stream gives `next_page` (what asks for the following page, e.g. the source's
    cursor after the last record), None on the last page.
    """

    records: list[dict[str, Any]]
    total: int | None = None
    next_page: Any = None


class SessionExpired(Exception):
    """Raised by a connector's answer parser when the source no longer accepts the session."""


class ResponseTooLarge(SourceProtocolError):
    """An answer body above the `max_bytes` its request allowed: refused, never retried."""


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


def spool_body(chunks: Iterable[bytes], *, in_memory: int = SPOOL_IN_MEMORY) -> IO[bytes]:
    """A body sink: the chunks written to a temporary file (memory up to `in_memory`, disk beyond).

    Returns the file rewound to its start; the caller closes it. On any failure while the body
    arrives (the deadline, a size limit) the file is closed and the failure raised.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=in_memory)  # noqa: SIM115 — returned to the caller
    try:
        for block in chunks:
            spool.write(block)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


class JsonRefused(ValueError):
    """JSON that parses but that no source's contract allows; `str()` says what (one line)."""


def decode_json(body: bytes | str) -> Any:
    """`body` as JSON, refusing with `JsonRefused` what would mislead or break the stages after.

    - a key twice in one object: readers disagree on which value counts (Python keeps the last),
      so the answer is ambiguous;
    - `NaN`, `Infinity`, `-Infinity`: not JSON (RFC 8259), though Python reads them;
    - a number a finite double or a 64-bit integer cannot hold (`1e999` would read as infinity,
      a 400-digit integer overflows every column and frame it reaches);
    - nesting deeper than `MAX_JSON_DEPTH`: no source's answer nests like that, and such a value
      would exhaust the recursion of whatever prints or re-encodes it later.
    Malformed JSON and invalid UTF-8 raise `ValueError` (`json.JSONDecodeError`,
    `UnicodeDecodeError`) as `json.loads` does.

    An answer is first read by msgspec (a page of the portal in a tenth of `json`'s time) and
    checked as a whole (`_plainly_valid`); one it cannot vouch for is read again by `json` with
    the checks above made value by value, which also says what is wrong.
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    try:
        value = _FAST_JSON.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        pass
    else:
        if _plainly_valid(value, data):
            return value
    return _decode_checked(body)


_FAST_JSON = msgspec.json.Decoder()
# A key's closing quote, JSON whitespace, its colon; and the same quote escaped (inside a text).
_KEY_END = re.compile(rb'"[ \t\n\r]*:')
_ESCAPED_KEY_END = re.compile(rb'\\"[ \t\n\r]*:')


def _plainly_valid(value: Any, data: bytes) -> bool:
    """Whether a decoded answer has no key twice, no integer beyond 64 bits and no deep nesting.

    Keys are counted in the text: every key ends with a quote before its colon. Quotes before a
    colon that are not a key's end (an escaped one, or one opening a text that starts with ":")
    are only ever more, so as many as the decoded objects hold means no key was read twice. An
    escaped backslash could make an escaped quote look like an end: such a text is not vouched for.
    """
    keys = _keys_if_shallow(value)
    if keys is None or b"\\\\" in data:
        return False
    return len(_KEY_END.findall(data)) - len(_ESCAPED_KEY_END.findall(data)) == keys


def _keys_if_shallow(value: Any) -> int | None:
    """The keys of every object in `value`; None when it nests deeper than `MAX_JSON_DEPTH` or
    holds an integer a 64-bit one cannot (walked without recursion)."""
    if type(value) is int:
        return 0 if _INT64_MIN <= value <= _INT64_MAX else None
    if type(value) is not dict and type(value) is not list:
        return 0
    keys = 0
    stack = [(value, 1)]
    children: Iterable[Any]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return None
        if type(item) is dict:
            keys += len(item)
            children = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int and not _INT64_MIN <= child <= _INT64_MAX:
                return None
    return keys


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _decode_checked(body: bytes | str) -> Any:
    """`decode_json` by `json`, each object, number and level checked as it is read."""
    try:
        value = jsonlib.loads(
            body, object_pairs_hook=unique_keys, parse_constant=_no_constant, parse_float=_finite_float,
            parse_int=_int64,
        )
    except RecursionError:
        raise JsonRefused(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if nested_deeper(value, MAX_JSON_DEPTH):
        raise JsonRefused(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


class DuplicateKey(JsonRefused):
    """A JSON object with a key twice; `key` is that key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {one_line(repr(key), 60)} in an object")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`'s `object_pairs_hook` refusing a key twice (`DuplicateKey`): readers disagree
    on which value counts (Python keeps the last, others the first)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateKey(name)
            seen.add(name)
    return obj


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"number {one_line(text, 40)} is out of range (not a finite double)")
    return value


def _int64(text: str) -> int:
    # the length first: int() of thousands of digits is slow, and refused beyond 4300 digits
    value = int(text) if len(text) <= 20 else None
    if value is None or not -(2**63) <= value < 2**63:
        shown = text if len(text) <= 40 else f"of {len(text.lstrip('-'))} digits"
        raise JsonRefused(f"integer {shown} is out of range (not a 64-bit integer)")
    return value


def nested_deeper(value: Any, limit: int) -> bool:
    """True when arrays and objects nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


class Connector(ABC):
    """A source: it declares its streams; `read` yields chunks of raw records, never all."""

    source: ClassVar[str]
    streams: ClassVar[tuple[StreamSpec, ...]]
    # Whether the runner may read the connector in a forked process of its own (a second core):
    # true when nothing of a read is asked of the connector afterwards (no cursor to acknowledge,
    # no files to archive, no refused messages to quarantine) and it opens its clients lazily.
    reads_apart: ClassVar[bool] = False

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

    def after_fork(self) -> None:  # noqa: B027 — optional hook: most connectors hold nothing open
        """In a process forked to read (`reads_apart`): forget, without closing, what the parent
        opened (its connections are the parent's to close)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Transient(Exception):
    """A failure worth retrying: timeout, deadline, connection error, HTTP 5xx or 429."""

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


class _Deadline:
    """The whole time one HTTP exchange may take: connect, send, headers and every read of the body.

    httpx's timeouts bound each socket operation, so a server dripping its answer a byte at a time
    never trips them. This bounds their sum: `check()` runs between the chunks of the body, and a
    timer shuts the exchange's socket down when time is up, so that a read blocked on a silent or
    dripping server returns at once (closing the socket would not wake it). The socket is known
    from httpcore's `trace` hook for a new connection, and from the answer once its headers are in;
    a connection reused from the pool that is still waiting for headers is cut by closing the
    client, which ends the blocked read at the server's next byte (or its per-read timeout).
    """

    def __init__(self, seconds: float, client: httpx.Client) -> None:
        self.seconds = seconds
        self.passed = False
        self._ends = time.monotonic() + seconds
        self._client = client
        self._stream: Any = None  # httpcore's network stream of the exchange, once known
        self._lock = threading.Lock()
        self._over = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:  # waits for a cut under way: none starts once the exchange is over
            self._over = True
        self._timer.cancel()

    @property
    def message(self) -> str:
        return f"no complete answer within {self.seconds:g} s"

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's `trace` extension: note a new connection's stream (TCP, then TLS) as it opens."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self._stream = info.get("return_value")

    def watch(self, response: httpx.Response) -> None:
        """The headers are in: the answer's connection (perhaps reused from the pool) is the one to cut."""
        self._stream = response.extensions.get("network_stream", self._stream)

    def check(self) -> None:
        """Raise the transient failure once the deadline has passed."""
        if self.passed or time.monotonic() >= self._ends:
            self.passed = True
            raise _Transient(self.message)

    def _cut(self) -> None:
        with self._lock:
            if self._over:
                return
            self.passed = True
            sock = self._stream.get_extra_info("socket") if self._stream is not None else None
            # The exchange may have closed its socket meanwhile: then there is nothing left to cut.
            with suppress(OSError):
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                else:  # no stream known: waiting for headers on a reused connection; close the pool
                    self._client.close()


class HttpJsonConnector(Connector):
    """Base of JSON-over-HTTP sources: client, deadlines, retries, session, paging and chunking.

    A subclass declares `source` and `streams` (of `HttpStreamSpec`: endpoint, method, paging) and
    fills three hooks: `open_session()` (log in; default: no session), `page_request()` (path and
    parameters of one page) and `parse_page()` (check an answer, return its records and either the
    total or the next page's token, raise `SessionExpired` when the source rejects the session).
    "page_number" paging runs pages `1..ceil(total / page_size)` and checks them against the total,
    reading again from page 1 when they disagree (`_numbered_records`: at most `paging_restarts`
    times, then `SourceIncomplete`); "keyset" paging follows `Page.next_page` until it is None or
    a page is empty.
    Any other call to the source goes through `request` (or `post_json`, `request_in_session`).
    """

    streams: ClassVar[tuple[HttpStreamSpec, ...]]
    max_page_size: ClassVar[int | None] = None
    # An unusable body on a 2xx answer may be a glitch; retry it once, not max_retries times.
    protocol_retries: ClassVar[int] = 1
    # Page-number paging: passes read again from page 1 before a short read fails the batch.
    paging_restarts: ClassVar[int] = 3
    # What the source calls its count of a window's records (messages name it), e.g. "tongso".
    total_name: ClassVar[str] = "total"

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
        """`timeout` is the deadline of one HTTP exchange in all, in seconds (see `request`)."""
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
        self, spec: HttpStreamSpec, window: Window | None, page: Any, session: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The path and parameters that ask for `page` of `spec` within `window`.

        The parameters are sent as the stream's `method` says: the JSON body of a POST, the query
        of a GET. `page` is the page's number (1-based) for "page_number" paging; for "keyset"
        paging it is the previous page's `next_page`, None for the first page.
        """

    @abstractmethod
    def parse_page(self, spec: HttpStreamSpec, answer: Any, where: str) -> Page:
        """Check a decoded answer; return its records and the total ("page_number") or next page ("keyset").

        Raise `SourceProtocolError` for an answer out of contract and `SessionExpired` when the
        source says the session is no longer valid.
        """

    # -- the work --------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """The one HTTP client of this connector, created on first use (and after a deadline closed it)."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.Client(
                base_url=self.settings.base_url,
                timeout=httpx.Timeout(self.timeout),  # each operation; `request` bounds their sum
                headers={"Accept": "application/json", "User-Agent": "lienthong-connectors"},
            )
        return self._client

    def after_fork(self) -> None:
        """Forget the parent's HTTP client and session: this process opens its own."""
        self._client = None
        self._forget_session()

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
        return iter_chunks(self.records(stream, window), self.chunk_size)

    def records(self, stream: str, window: Window | None = None) -> Iterator[dict[str, Any]]:
        """The raw records of `stream` within `window`, one page at a time, paged as the stream declares."""
        spec = self.stream(stream)  # here, not when the first record is asked for: a bad name fails now
        assert isinstance(spec, HttpStreamSpec)
        if spec.paging == "keyset":
            return self._keyset_records(spec, window)
        return self._numbered_records(spec, window)

    @overload
    def request(
        self, method: str, path: str, *, where: str, json: Any = None, params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None, sink: None = None, max_bytes: int | None = None,
    ) -> Any: ...

    @overload
    def request(
        self, method: str, path: str, *, where: str, json: Any = None, params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None, sink: BodySink[T], max_bytes: int | None = None,
    ) -> T: ...

    def request(
        self,
        method: str,
        path: str,
        *,
        where: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        sink: BodySink[Any] | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """Send `method path` and return the decoded JSON answer, or what `sink` makes of the body.

        `json` is the body, `params` the query; `where` names the call in errors and logs. Each
        attempt must end within `timeout` seconds in all: connect, send, and every read of the
        answer together, not each read alone (a server dripping its answer is cut at the deadline).
        The deadline, timeouts, connection errors, HTTP 5xx and 429 are retried with exponential
        backoff and jitter (a Retry-After is waited, capped at `backoff_max`); after `max_retries`
        retries `SourceUnavailable` carries the last cause, e.g. "no complete answer within 30 s".
        HTTP 401 raises `SessionExpired`, another non-2xx status `SourceProtocolError`. An empty,
        HTML or malformed JSON answer is retried `protocol_retries` times, then raises
        `SourceProtocolError`. With `sink` (e.g. `spool_body`), the body of a 2xx answer is handed
        to `sink(chunks)` as it arrives, afresh on each attempt, and its result returned. A body
        above `max_bytes` raises `ResponseTooLarge` at once, without retry.
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
        options = {"json": json, "params": params, "headers": headers}
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(method, path, options, where, sink, max_bytes)
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

    def post_json(self, path: str, body: Any, where: str) -> Any:
        """POST `body` as JSON to `path` and return the decoded JSON answer (`request`'s retries)."""
        return self.request("POST", path, where=where, json=body)

    def request_in_session(
        self,
        method: str,
        build: Callable[[str | None], tuple[str, dict[str, Any]]],
        parse: Callable[[Any, str], T],
        where: str,
    ) -> T:
        """Send what `build(session)` gives, `parse(answer, where)` the answer, within a session.

        `build` returns the path and the parameters: the JSON body of a POST, the query of a GET.
        Retries as `request`; when `parse` (or the HTTP status) says the session expired, logs in
        again once and sends the request anew with the new session.
        """
        for fresh_login in (False, True):
            session = self._ensure_session()
            path, parameters = build(session)
            try:
                if method == "GET":
                    answer = self.request(method, path, where=where, params=parameters)
                else:
                    answer = self.request(method, path, where=where, json=parameters)
                return parse(answer, where)
            except SessionExpired as exc:
                self._forget_session()
                if fresh_login:
                    raise SourceAuthError(
                        self.source, where, f"session rejected again after a new login ({exc})"
                    ) from None
                log.info("%s %s: session expired (%s); logging in again", self.source, where, exc)
        raise AssertionError("unreachable")

    def post_in_session(
        self,
        request: Callable[[str | None], tuple[str, dict[str, Any]]],
        parse: Callable[[Any, str], T],
        where: str,
    ) -> T:
        """POST what `request(session)` builds within a session (`request_in_session`).

        For calls that are not pages of a stream, e.g. pushing records to the source.
        """
        return self.request_in_session("POST", request, parse, where)

    # -- one exchange ----------------------------------------------------------------------

    def _send_once(
        self,
        method: str,
        path: str,
        options: dict[str, Any],
        where: str,
        sink: BodySink[Any] | None,
        max_bytes: int | None,
    ) -> Any:
        """One attempt within its deadline; failures worth retrying raise `_Transient` or `_Garbled`."""
        client = self.client
        with _Deadline(self.timeout, client) as deadline:
            try:
                with client.stream(method, path, extensions={"trace": deadline.trace}, **options) as response:
                    deadline.watch(response)
                    body = self._body(response, deadline, max_bytes, where)
                    if not 200 <= response.status_code < 300:
                        self._refuse_status(response, _text(response, b"".join(body)), where)
                    if sink is not None:
                        return sink(body)
                    return self._json(response, b"".join(body), where)
            except httpx.TransportError as exc:  # timeouts, connection and protocol errors
                if deadline.passed:  # the cut at the deadline is what broke the exchange
                    raise _Transient(deadline.message) from exc
                if isinstance(exc, httpx.TimeoutException):
                    raise _Transient(f"no answer within {self.timeout:g} s ({type(exc).__name__})") from exc
                raise _Transient(
                    f"connection to {self.settings.base_url} failed ({type(exc).__name__})"
                ) from exc

    def _body(
        self, response: httpx.Response, deadline: _Deadline, max_bytes: int | None, where: str
    ) -> Iterator[bytes]:
        """The answer's body as it arrives, chunk by chunk, within the deadline and `max_bytes`."""
        size = 0
        for block in response.iter_bytes():
            deadline.check()
            size += len(block)
            if max_bytes is not None and size > max_bytes:
                raise ResponseTooLarge(self.source, where, f"answer larger than {max_bytes} bytes")
            yield block
        if deadline.passed:  # cut at the deadline: a body without Content-Length may look complete
            raise _Transient(deadline.message)

    def _refuse_status(self, response: httpx.Response, text: str, where: str) -> None:
        """Raise what a non-2xx answer means: retry (5xx, 429), `SessionExpired` (401), protocol error."""
        status = response.status_code
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
        detail = unusable or one_line(text, 120)
        raise SourceProtocolError(self.source, where, f"HTTP {status} ({detail})")

    def _json(self, response: httpx.Response, body: bytes, where: str) -> Any:
        """The JSON of a 2xx answer's body; `_Garbled` saying why it is unusable, or refused at once.

        A body that is not JSON (empty, HTML, malformed, not UTF-8, nested beyond what the decoder
        can follow) may be a glitch: `_Garbled`, retried. JSON that parses but that no source's
        contract allows is the same again on a retry, so `SourceProtocolError` at once (see
        `decode_json`: duplicate keys, NaN or Infinity, numbers out of range, nesting deeper than
        `MAX_JSON_DEPTH`).
        """
        status = response.status_code
        unusable = _unusable_body(response, _text(response, body.lstrip()[:64]))  # its start tells
        if unusable == "empty body":
            raise _Garbled(f"empty response body (HTTP {status})")
        if unusable:
            raise _Garbled(f"response is not JSON ({unusable}, HTTP {status})")
        try:
            return decode_json(body)
        except JsonRefused as exc:
            raise SourceProtocolError(self.source, where, f"JSON answer refused: {exc} (HTTP {status})") from None
        except UnicodeDecodeError as exc:
            raise _Garbled(f"response is not JSON (invalid UTF-8 at byte {exc.start}, HTTP {status})") from None
        except ValueError as exc:
            reason = getattr(exc, "msg", type(exc).__name__)
            pos = getattr(exc, "pos", None)
            at = f" at char {pos}" if pos is not None else ""
            raise _Garbled(
                f"response is not JSON (malformed JSON: {reason}{at}, HTTP {status})"
            ) from None

    # -- paging ----------------------------------------------------------------------------

    def _numbered_records(
        self, spec: HttpStreamSpec, window: Window | None
    ) -> Iterator[dict[str, Any]]:
        """Pages 1..n of `window`, read again from page 1 until one pass over them is whole.

        A source paged by number shifts its later records when one of an earlier page changes
        while we page (updated past the window, or to its end, inserted, deleted): a record then
        slips onto a page already read and is never seen. A pass is whole when the total stayed the
        same on every page, each page held what the total says it should, and the pass's records
        make up the total (`_KeyTally`: distinct keys, plus rows the source serves twice in a row).
        A short page is asked for once more; a pass that is not whole is read again from page 1,
        at most `paging_restarts` times; records read twice are the batch's duplicates (the
        warehouse keeps the latest). After that `SourceIncomplete` is raised from here, inside the
        caller's batch, so nothing of it is loaded.
        """
        for restarts in range(self.paging_restarts + 1):
            why = yield from self._numbered_pass(spec, window, restarts)
            if why is None:
                return
            log.warning("%s %s: %s; reading again from page 1 (re-read %d of %d)",
                        self.source, spec.label, why, restarts + 1, self.paging_restarts)

    def _numbered_pass(
        self, spec: HttpStreamSpec, window: Window | None, restarts: int
    ) -> Generator[dict[str, Any], None, str | None]:
        """One pass over pages 1..n, yielding their records; None if it was whole, else why not.

        The last pass allowed (`restarts == paging_restarts`) raises `SourceIncomplete` instead of
        returning why; on a short page it reads on (to an empty page), so the error says how many
        records are missing.
        """
        final = restarts >= self.paging_restarts
        span = "for the window" if window is not None else "in all"
        tally = _KeyTally(spec.key)
        page = total_pages = 1
        total: int | None = None
        while page <= total_pages:
            result, reported = self._fetch_counted_page(spec, window, page)
            if total is None:
                total = reported
                total_pages = max(1, math.ceil(total / self.page_size))
            expected = min(self.page_size, total - (page - 1) * self.page_size)
            if reported == total and len(result.records) < expected:
                log.warning("%s %s page %d: %d records of the %d expected (total %d unchanged); asking again",
                            self.source, spec.label, page, len(result.records), expected, total)
                result, reported = self._fetch_counted_page(spec, window, page)
            if reported != total:
                if final:
                    raise SourceIncomplete(
                        self.source, spec.name,
                        f"the {total:,} records the source reports {span} ({self.total_name}) became "
                        f"{reported:,} while paging, after {restarts} re-reads; nothing loaded")
                return f"total changed from {total} to {reported} at page {page}"
            short = len(result.records) < expected
            if short and not final:
                return f"page {page} held {len(result.records)} records of the {expected} expected, twice"
            tally.add(result.records)
            log.debug("%s %s page %d/%d: %d records",
                      self.source, spec.label, page, total_pages, len(result.records))
            if self.on_page is not None:
                self.on_page(spec.name, page, total_pages, tally.rows)
            if short and not result.records:
                break  # the last pass, and the source has nothing more: count what was read
            yield from result.records
            del result  # hold one page at a time, not two while the next one downloads
            page += 1
        assert total is not None  # the loop asks for page 1 at least
        if tally.count < total:
            read = f"read {tally.describe()} of the {total:,} the source reports {span} ({self.total_name})"
            if final:
                raise SourceIncomplete(self.source, spec.name, f"{read} after {restarts} re-reads; nothing loaded")
            return read
        log.info("%s %s: %d records received", self.source, spec.label, tally.rows)
        return None

    def _fetch_counted_page(self, spec: HttpStreamSpec, window: Window | None, page: int) -> tuple[Page, int]:
        """Page number `page` and the total its answer reports."""
        result = self._fetch_page(spec, window, page, page)
        if result.total is None:
            raise TypeError(f"{self.source} {spec.label}: parse_page gave no total (page-number paging)")
        return result, result.total

    def _keyset_records(self, spec: HttpStreamSpec, window: Window | None) -> Iterator[dict[str, Any]]:
        token: Any = None  # the first page is asked for without one
        number = received = 0
        while True:
            number += 1
            result = self._fetch_page(spec, window, token, number)
            following, count = result.next_page, len(result.records)
            received += count
            log.debug("%s %s page %d: %d records", self.source, spec.label, number, count)
            if self.on_page is not None:
                self.on_page(spec.name, number, None, received)
            yield from result.records
            del result  # hold one page at a time, not two while the next one downloads
            if following is None or not count:
                break
            if following == token:
                raise SourceProtocolError(
                    self.source, f"{spec.label} page {number}",
                    f"next page {one_line(following, 80)} is the one just read: paging would never end")
            token = following
        log.info("%s %s: %d records received", self.source, spec.label, received)

    def _fetch_page(self, spec: HttpStreamSpec, window: Window | None, page: Any, number: int) -> Page:
        """One page; on an expired session log in again once and ask for the same page."""
        return self.request_in_session(
            spec.method,
            lambda session: self.page_request(spec, window, page, session),
            lambda answer, where: self.parse_page(spec, answer, where),
            f"{spec.label} page {number}",
        )

    # -- session and logs -------------------------------------------------------------------

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


class _KeyTally:
    """The records of one pass told apart by key, in bounded memory: 8 bytes of key hash a record.

    `count` is what a whole pass makes up of the source's total: its distinct keys, plus the rows
    the source serves twice in a row (a record listed again right after itself, identical: the
    portal's duplicate rows, which its total counts). A key read again elsewhere (a record that
    moved while we paged) adds nothing; a record lacking its key counts on its own. The hashes are
    kept in one array (80 MB for 10^7 records), sorted in place and told apart once, when the
    pass is counted.
    """

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key
        self.rows = 0
        self.repeats = 0
        self.unkeyed = 0
        self._hashes = array.array("q")
        self._distinct: int | None = None
        self._last: tuple[int, dict[str, Any]] | None = None

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.rows += 1
            values = tuple(record.get(name) for name in self.key)
            if any(value is None or value == "" for value in values):
                self.unkeyed += 1
                self._last = None
                continue
            digest = _key_hash(values)
            if self._last is not None and self._last[0] == digest and self._last[1] == record:
                self.repeats += 1  # listed again right after itself (its key is already held)
            else:
                self._hashes.append(digest)
                self._distinct = None
            self._last = (digest, record)

    @property
    def distinct(self) -> int:
        if self._distinct is None:
            held = np.frombuffer(self._hashes, dtype=np.int64) if self._hashes else np.empty(0, np.int64)
            held.sort()  # in place, in the array's own memory
            self._distinct = int(np.count_nonzero(held[1:] != held[:-1])) + 1 if len(held) else 0
        return self._distinct + self.unkeyed

    @property
    def count(self) -> int:
        return self.distinct + self.repeats

    def describe(self) -> str:
        """E.g. "4,998 distinct records", or "5,002 records (4,998 distinct, 4 listed twice)"."""
        if not self.repeats:
            return f"{self.distinct:,} distinct records"
        return f"{self.count:,} records ({self.distinct:,} distinct, {self.repeats:,} listed twice)"


def _key_hash(values: tuple[Any, ...]) -> int:
    """A 64-bit hash of a record's key values, their types told apart (1, 1.0 and "1" differ).

    Keys of text (the usual kind) by Python's own string hash, within one process; any other kind
    by its JSON text (Python hashes -1 and -2, or 1 and True, alike).
    """
    if all(type(value) is str for value in values):
        return hash(values)
    text = jsonlib.dumps(values, ensure_ascii=False, default=str, sort_keys=True)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _text(response: httpx.Response, body: bytes) -> str:
    """A body as text, in the answer's charset (UTF-8 when it names none or an unknown one)."""
    return body.decode(response.encoding or "utf-8", errors="replace")


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
