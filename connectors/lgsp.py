"""Connector of the provincial integration platform (LGSP): XML dossier messages from a cursor feed."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import IO, Any, ClassVar, TypedDict

from lxml import etree

import standards
from connectors.base import (
    PORTAL_DOSSIER_REQUIRED,
    HttpJsonConnector,
    HttpStreamSpec,
    Page,
    ResponseTooLarge,
    Window,
    spool_body,
)
from connectors.errors import SourceProtocolError, one_line
from connectors.settings import ConnectionSettings
from transforms.portal import key_escape

__all__ = [
    "DOSSIER_FIELDS",
    "LGSP_NS",
    "LgspConnector",
    "MessageHeader",
    "MessageRefused",
    "RefusedCallback",
    "SAFE_PARSER_OPTIONS",
    "XSD_PATH",
    "check_message",
    "iter_dossiers",
    "load_message_schema",
]

log = logging.getLogger("lienthong.connectors.lgsp")

LGSP_NS = "urn:lienthong:lgsp:v1"
XSD_PATH = standards.STANDARD_DIR / "xsd" / "lgsp_message.xsd"
# The Dossier children of the schema: a parsed dossier carries all of them ("" when absent),
# like a portal dossier record.
DOSSIER_FIELDS = (
    "MaHoSo", "MaTTHC", "TenTTHC", "DonViXuLy", "NoiNopHoSo", "KenhThucHien", "LoaiDoiTuong",
    "TrangThaiHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra", "NgayCapNhat",
    "TrichYeuHoSo", "ChuHoSo", "SoGiayToChuHoSo", "DuocThanhToanTrucTuyen", "LePhi",
)
_NS = f"{{{LGSP_NS}}}"
_HEADER, _DOSSIER = f"{_NS}Header", f"{_NS}Dossier"

# on_refused(message_id, cursor, reason): a message was refused and skipped.
RefusedCallback = Callable[[str, int, str], None]


class ParserOptions(TypedDict):
    """Keyword options of `etree.XMLParser` and `etree.iterparse`, typed for their signatures."""

    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    huge_tree: bool


# libxml2's safe parsing options, spelled out: entities are never substituted, nothing is fetched,
# no DTD is loaded, and its size and depth limits stay on. Shared with the exchange validator.
SAFE_PARSER_OPTIONS: ParserOptions = {"resolve_entities": False, "no_network": True, "load_dtd": False,
                                      "huge_tree": False}


class MessageRefused(Exception):
    """A message that is not read: hostile, malformed or out of schema. `str()` is the reason."""


@dataclass(frozen=True)
class MessageHeader:
    """What the checked envelope says about a message."""

    message_id: str
    sender: str
    receiver: str


@cache
def load_message_schema() -> etree.XMLSchema:
    """The LGSP message schema (standards/xsd/lgsp_message.xsd), parsed once."""
    return etree.XMLSchema(etree.parse(str(XSD_PATH), etree.XMLParser(**SAFE_PARSER_OPTIONS)))


def _refuse_doctype(element: etree._Element) -> None:
    """Refuse any DOCTYPE: the message format has none, and entities are how XML attacks come."""
    docinfo = element.getroottree().docinfo
    dtd = docinfo.internalDTD
    entities = list(dtd.iterentities()) if dtd is not None else []
    if any(entity.system_url or entity.content is None for entity in entities):
        raise MessageRefused("external entity declared")
    if entities:
        raise MessageRefused("entity expansion refused")
    if docinfo.system_url or docinfo.public_id:
        raise MessageRefused("external DTD declared")
    if dtd is not None or docinfo.doctype:
        raise MessageRefused("DOCTYPE refused")


def check_message(source: IO[bytes]) -> MessageHeader:
    """Check a whole message, streaming: no DOCTYPE, well-formed, valid against the schema.

    `source` is a seekable binary file. Raises `MessageRefused` with a one-line reason; returns
    the envelope's header.
    """
    try:
        # The prolog first, whatever the root is: stop at the root's start tag, before any content
        # (where entities would be used) is parsed.
        for _, root in etree.iterparse(source, events=("start",), **SAFE_PARSER_OPTIONS):
            _refuse_doctype(root)
            break
        source.seek(0)
        events = etree.iterparse(
            source, events=("end",), tag=(_HEADER, _DOSSIER), schema=load_message_schema(), **SAFE_PARSER_OPTIONS
        )
        header: MessageHeader | None = None
        for _, element in events:
            if element.tag == _HEADER:
                header = MessageHeader(
                    message_id=(element.findtext(f"{_NS}MessageId") or "").strip(),
                    sender=element.findtext(f"{_NS}From/{_NS}OrganId") or "",
                    receiver=element.findtext(f"{_NS}To/{_NS}OrganId") or "",
                )
            _release(element)
    except etree.XMLSyntaxError as exc:
        raise MessageRefused(_syntax_reason(exc)) from None
    if header is None:  # the schema requires a Header: unreachable unless the schema changes
        raise MessageRefused("schema: no Header")
    return header


def iter_dossiers(source: IO[bytes], header: MessageHeader) -> Iterator[dict[str, Any]]:
    """The Dossier elements of a checked message as portal-shaped dicts, streaming.

    Each dict has every field of `DOSSIER_FIELDS` ("" when absent), `QuaTrinhXuLy` (the steps as
    portal step dicts, [] when absent), `_lgsp_message_id` and `_lgsp_sender`.
    """
    cut = len(_NS)
    # The message passed the schema: a Dossier's children are its fields, all in the namespace.
    parsed = etree.iterparse(
        source, events=("end",), tag=_DOSSIER, remove_comments=True, remove_pis=True, **SAFE_PARSER_OPTIONS
    )
    for _, element in parsed:
        record: dict[str, Any] = dict.fromkeys(DOSSIER_FIELDS, "")
        record["QuaTrinhXuLy"] = []
        for child in element:
            name = str(child.tag)[cut:]  # a parsed element's tag is always text
            if name == "QuaTrinhXuLy":  # the processing steps: each Buoc's children are its fields
                record[name] = [{str(field.tag)[cut:]: field.text or "" for field in step} for step in child]
            else:
                record[name] = child.text or ""
        record["_lgsp_message_id"] = header.message_id
        record["_lgsp_sender"] = header.sender
        _release(element)
        yield record


def _release(element: etree._Element) -> None:
    """Free an element that has been read, and its already-read siblings: memory stays flat."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


_SCHEMA_PATTERN = re.compile(
    r"\[facet 'pattern'\] The value '(?P<value>[^']*)' is not accepted by the pattern '(?P<pattern>[^']*)'"
)


def _syntax_reason(exc: etree.XMLSyntaxError) -> str:
    """One line: "schema: element 'OrganId': '…' is not a valid value …" or "malformed XML: …".

    With a schema attached, libxml2's error for broken input (invalid UTF-8, a NUL byte) is only
    "no element found": the parser's fatal error says why, the last in the log (which also keeps
    earlier parses' errors).
    """
    text = str(exc.msg if getattr(exc, "msg", None) else exc)
    if text == "no element found":
        fatal = [entry.message for entry in exc.error_log or () if entry.level_name == "FATAL"]
        text = fatal[-1] if fatal else text
    text = re.sub(r"\s*\(<string>, line \d+\)$|\s*\(line \d+\)$", "", text).replace(_NS, "")
    if text.startswith("Element '"):
        text = _SCHEMA_PATTERN.sub(
            lambda m: f"'{m['value']}' is not a valid value (pattern {m['pattern']})", text
        )
        return one_line("schema: element " + text[len("Element "):])
    if "amplification" in text or "entity loop" in text.lower():  # libxml2's own entity guards
        return one_line(f"entity expansion refused ({text})")
    return one_line(f"malformed XML: {text}")


class LgspConnector(HttpJsonConnector):
    """Reads the LGSP dossier feed (`GET /messages`, `GET /messages/<cursor>`, `POST /ack`).

    The stream is the message index, paged by the base ("keyset": each page asks for the messages
    after the cursor the previous page ended at). Each message is downloaded through the base's
    `request` into a spooled temporary file (memory up to 1 MB, disk beyond; a message above
    `max_message_bytes` is refused, never retried) and parsed twice with `lxml.etree.iterparse`,
    both times streaming (each element cleared once read):
    1. `check_message`: a DOCTYPE is refused at the root's start tag, before any content where an
       entity could be used; then the whole message is validated against
       `standards/xsd/lgsp_message.xsd` by handing the schema to iterparse (`schema=`), so libxml2
       validates the parser's events as they come and the tree never holds more than one Dossier;
    2. `iter_dossiers`: every Dossier becomes a portal-shaped dossier dict, yielded in chunks.
    Two passes because a message is all-or-nothing: a schema violation in its last dossier must not
    let its first ones through, and holding them until the end would grow with the message.
    A refused message goes to `on_refused(message_id, cursor, reason)` and the feed goes on.

    `read("dossiers")` lists the messages after `start_after` (None: after the cursor the platform
    holds as acknowledged), downloads, checks and reads them in cursor order, and yields chunks of
    dossier dicts. After the caller has loaded what it read, it calls `ack(connector.last_cursor)`.
    The feed is at-least-once: what was read but not acknowledged is served again.
    """

    source: ClassVar[str] = "lgsp"
    streams: ClassVar[tuple[HttpStreamSpec, ...]] = (
        HttpStreamSpec(
            name="dossiers",
            entity="dossier",
            key=("MaHoSo",),
            replication_key="cursor",  # the feed's message cursor, not a field of the record
            required_fields=PORTAL_DOSSIER_REQUIRED,
            endpoint="messages",
            method="GET",
            paging="keyset",
        ),
    )
    max_page_size: ClassVar[int | None] = 1000  # the feed's `limit`
    messages_path: ClassVar[str] = "/messages"
    ack_path: ClassVar[str] = "/ack"

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        start_after: int | None = None,
        on_refused: RefusedCallback | None = None,
        max_message_bytes: int = 256 << 20,
        **options: Any,
    ) -> None:
        """`options` are the base's: page_size (index entries per request), chunk_size, timeout,
        max_retries, backoff_*."""
        options.setdefault("page_size", 100)
        super().__init__(settings, **options)
        self.start_after = start_after
        self.on_refused = on_refused
        self.max_message_bytes = max_message_bytes
        self.last_cursor: int | None = start_after
        self.refused: list[tuple[str, int, str]] = []

    # -- the index: pages of the stream, fetched by the base --------------------------------

    def page_request(
        self, spec: HttpStreamSpec, window: Window | None, page: int | None, session: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The query of one index page: the messages after `page` (the cursor the last page ended at).

        The first page asks after `start_after`, or, without it, after the acknowledged cursor.
        `window` is ignored: this feed replicates by cursor, not by time.
        """
        after = self.start_after if page is None else page
        params: dict[str, Any] = {"limit": self.page_size}
        if after is not None:
            params["after"] = after
        return self.messages_path, params

    def parse_page(self, spec: HttpStreamSpec, answer: Any, where: str) -> Page:
        """Check an index answer: entries with increasing cursors and a URL, and the `next` cursor."""
        if not isinstance(answer, dict) or not isinstance(answer.get("messages"), list):
            raise SourceProtocolError(self.source, where, "index answer lacks a 'messages' list")
        entries = answer["messages"]
        for entry in entries:
            if not (isinstance(entry, dict) and _is_int(entry.get("cursor")) and isinstance(entry.get("url"), str)):
                raise SourceProtocolError(self.source, where, f"index entry out of contract: {one_line(entry, 120)}")
            entry["id"] = _entry_id(entry)
        cursors = [entry["cursor"] for entry in entries]
        if cursors != sorted(set(cursors)):
            raise SourceProtocolError(self.source, where, "index cursors are not increasing")
        following = answer.get("next")
        if not _is_int(following) or (cursors and following < cursors[-1]):
            raise SourceProtocolError(self.source, where, f"index 'next' is not a cursor: {following!r}")
        return Page(records=entries, next_page=following)

    # -- the feed --------------------------------------------------------------------------

    def read(self, stream: str, window: Window | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks of at most `chunk_size` dossiers of the messages after the cursor.

        `window` is ignored: this feed replicates by cursor, not by time. `last_cursor` is, after
        each chunk, the cursor up to which every message has been yielded or refused.
        """
        return self._read_messages(self.records(stream))

    def _read_messages(self, index: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        chunk: list[dict[str, Any]] = []
        done = self.last_cursor  # every message up to here is wholly in yielded chunks or refused
        for entry in index:
            cursor, message_id = entry["cursor"], entry["id"]
            try:
                spool = self._download(entry)
            except ResponseTooLarge:
                self._refuse(message_id, cursor, f"message larger than {self.max_message_bytes} bytes")
                done = cursor
                continue
            try:
                try:
                    header = check_message(spool)
                except MessageRefused as exc:
                    self._refuse(message_id, cursor, str(exc))
                    done = cursor
                    continue
                spool.seek(0)
                for record in iter_dossiers(spool, header):
                    if len(chunk) >= self.chunk_size:  # a full chunk waits for one more record,
                        self.last_cursor = done  # so a chunk ending a message covers its cursor
                        yield chunk
                        chunk = []
                    chunk.append(record)
                done = cursor
                if len(chunk) >= self.chunk_size:
                    self.last_cursor = done
                    yield chunk
                    chunk = []
            finally:
                spool.close()
        if chunk:
            self.last_cursor = done
            yield chunk
        self.last_cursor = done

    def ack(self, cursor: int) -> None:
        """Tell the platform every message up to `cursor` is loaded (`POST /ack`)."""
        answer = self.post_json(self.ack_path, {"cursor": cursor}, f"ack {cursor}")
        if not isinstance(answer, dict) or answer.get("acked") != cursor:
            raise SourceProtocolError(self.source, f"ack {cursor}", f"unexpected answer {one_line(answer, 120)}")

    def _refuse(self, message_id: str, cursor: int, reason: str) -> None:
        log.warning("%s message %s (cursor %d) refused: %s", self.source, message_id, cursor, reason)
        self.refused.append((message_id, cursor, reason))
        if self.on_refused is not None:
            self.on_refused(message_id, cursor, reason)

    def _download(self, entry: dict[str, Any]) -> IO[bytes]:
        """The message of an index entry, spooled to a file, with the base's deadline and retries."""
        return self.request(
            "GET",
            entry["url"],
            where=f"message {entry['id']} (cursor {entry['cursor']})",
            headers={"Accept": "application/xml"},
            sink=spool_body,
            max_bytes=self.max_message_bytes,
        )


def _entry_id(entry: dict[str, Any]) -> str:
    """An index entry's message id as one printable line (it names the message in logs and quarantine)."""
    given = entry.get("id")
    text = key_escape(one_line(given, 100)) if isinstance(given, str) else ""
    return text or f"cursor {entry['cursor']}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
