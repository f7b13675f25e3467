"""Connector of the national public service portal (Cổng DVCQG): procedures and dossiers."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any, ClassVar

from connectors.base import (
    PORTAL_DOSSIER_REQUIRED,
    HttpJsonConnector,
    HttpStreamSpec,
    Page,
    SessionExpired,
    Window,
)
from connectors.errors import SourceAuthError, SourceProtocolError, one_line
from connectors.settings import ConnectionSettings
from transforms.timefmt import PORTAL_FORMAT as PORTAL_TIME_FORMAT
from transforms.timefmt import format_portal_time, parse_portal_time

__all__ = [
    "PORTAL_TIME_FORMAT",
    "PUSH_DOSSIERS",
    "PUSH_PROGRESS",
    "PortalConnector",
    "format_portal_time",
    "parse_portal_time",
]

PROVINCE_AGENCY = "000.00.00.H62"  # Vĩnh Phúc People's Committee: all procedures of the province
PUSH_DOSSIERS = "DongBoHoSoMC"  # push dossiers (isUpdating "True"/"False", data[])
PUSH_PROGRESS = "CapNhatTienDoHoSoMC"  # push processing steps (data[])
# Top-level answers of a push: every record accepted, or some rejected (per-record `result`).
PUSH_ANSWER_CODES = frozenset({"00", "03"})
# The most records a sync answer may count (`tongso`): a billion, beyond any province's
# catalogue or dossiers; a larger count is out of contract (and would page for ever).
MAX_TOTAL = 10**9


class PortalConnector(HttpJsonConnector):
    """Reads the portal's procedure catalogue and dossiers through its sync API (INTERFACES §1)."""

    source: ClassVar[str] = "national_portal"
    streams: ClassVar[tuple[HttpStreamSpec, ...]] = (
        HttpStreamSpec(
            name="procedures",
            entity="procedure",
            key=("MaTTHC",),
            replication_key="NgayCapNhat",
            required_fields=(
                "MaTTHC",
                "TenTTHC",
                "MaLinhVuc",
                "MaCoQuanThucHien",
                "CapThucHien",
                "NgayCongBo",
                "LichSuMucDo",
                "NgayCapNhat",
            ),
            endpoint="LayDanhSachTTHC",
        ),
        HttpStreamSpec(
            name="dossiers",
            entity="dossier",
            key=("MaHoSo",),
            replication_key="NgayCapNhat",
            required_fields=PORTAL_DOSSIER_REQUIRED,
            endpoint="LayDanhSachHoSo",
        ),
    )
    reads_apart: ClassVar[bool] = True  # a read leaves nothing to do after it
    max_page_size: ClassVar[int | None] = 1000  # the portal's `sodong` limit
    total_name: ClassVar[str] = "tongso"  # the portal's count of the window's records
    login_path: ClassVar[str] = "/login"
    api_path: ClassVar[str] = "/api"

    def __init__(self, settings: ConnectionSettings, *, madonvi: str = PROVINCE_AGENCY, **options: Any) -> None:
        """`options` are the base's: page_size, chunk_size, timeout, max_retries, backoff_*, on_page."""
        super().__init__(settings, **options)
        self.madonvi = madonvi

    def open_session(self) -> str:
        """`POST /login` with the connection's login and password; return the session token."""
        user = self.settings.login
        password = self.settings.get_password()
        if not user or password is None:
            raise SourceAuthError(self.source, "login", "the connection has no login or password")
        try:
            answer = self.post_json(
                self.login_path, {"username": user, "password": password}, "login"
            )
        except SessionExpired:
            raise SourceAuthError(
                self.source, "login", f"credentials rejected for user {user!r} (HTTP 401)"
            ) from None
        if not isinstance(answer, dict):
            raise SourceProtocolError(self.source, "login", "login answer is not a JSON object")
        code = answer.get("error_code")
        if str(code) in {"0", "00"}:
            session = answer.get("session")
            if not session:
                raise SourceProtocolError(self.source, "login", "login answer has no 'session'")
            return str(session)
        message = one_line(answer.get("message") or "no message", 120)
        raise SourceAuthError(
            self.source,
            "login",
            f"credentials rejected for user {user!r} (error_code {code!r}: {message})",
        )

    def page_request(
        self, spec: HttpStreamSpec, window: Window | None, page: int, session: str | None
    ) -> tuple[str, dict[str, Any]]:
        """The `/api` body of one page; the window is sent on every page."""
        body: dict[str, Any] = {
            "session": session,
            "madonvi": self.madonvi,
            "service": spec.endpoint,
            "trang": page,
            "sodong": self.page_size,
        }
        if window is not None:
            body["tungay"] = format_portal_time(window.start)
            body["denngay"] = format_portal_time(window.end)
        return self.api_path, body

    def parse_page(self, spec: HttpStreamSpec, answer: Any, where: str) -> Page:
        """Check a sync answer (`error_code` "00", `tongso`, `result`); "401" → session expired."""
        self._check_answer(answer, where, ("00",))
        missing = [name for name in ("tongso", "result") if name not in answer]
        if missing:
            keys = " and ".join(repr(name) for name in missing)
            raise SourceProtocolError(
                self.source, where, f"answer lacks {keys} (a sync answer has 'tongso' and 'result')"
            )
        records = answer["result"]
        if not isinstance(records, list):
            raise SourceProtocolError(
                self.source, where, f"'result' is {_json_kind(records)}, not a list of records"
            )
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict):  # its fields are the quality stage's; its shape is ours
                raise SourceProtocolError(
                    self.source, where, f"'result' record {number} is {_json_kind(record)}, not an object"
                )
        return Page(records=records, total=self._total(answer["tongso"], where))

    def _total(self, value: Any, where: str) -> int:
        """`tongso`: a count (a JSON integer, or text of ASCII digits) of at most `MAX_TOTAL`."""
        text = value.strip() if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool):
            total = value
        elif text is not None and text.isascii() and text.isdigit() and len(text) <= len(str(MAX_TOTAL)):
            total = int(text)
        else:
            raise SourceProtocolError(self.source, where, f"'tongso' is not a count: {one_line(repr(value), 80)}")
        if total < 0:
            raise SourceProtocolError(self.source, where, f"'tongso' is negative: {total}")
        if total > MAX_TOTAL:
            raise SourceProtocolError(
                self.source, where, f"'tongso' {total} is beyond any province's records (at most {MAX_TOTAL})"
            )
        return total

    def records(self, stream: str, window: Window | None = None) -> Iterator[dict[str, Any]]:
        """The base's records of `stream`, each checked to lie within `window` (`_within_window`)."""
        spec = self.stream(stream)
        assert isinstance(spec, HttpStreamSpec)
        records = super().records(stream, window)
        if window is None or spec.replication_key is None:
            return records
        return self._within_window(records, spec, window)

    def _within_window(
        self, records: Iterable[dict[str, Any]], spec: HttpStreamSpec, window: Window
    ) -> Iterator[dict[str, Any]]:
        """Refuse a record served outside the window asked for (`tungay`..`denngay` on NgayCapNhat).

        Such a record is out of contract, and one updated "in the future" would become the
        stream's watermark, from which no later window could start: the batch fails instead. A
        NgayCapNhat that is no time is the quality stage's (`updated_at.valid_datetime`).
        """
        field = spec.replication_key or ""
        since, until = format_portal_time(window.start), format_portal_time(window.end)
        for number, record in enumerate(records, start=1):
            updated = record.get(field)
            if isinstance(updated, str) and len(updated) == 14 and updated.isdigit() and not since <= updated <= until:
                key = one_line(repr(record.get(spec.key[0])), 80)
                raise SourceProtocolError(
                    self.source, spec.label,
                    f"record {number} ({spec.key[0]} {key}) has {field} {updated}, outside the window "
                    f"asked for ({since} to {until})",
                )
            yield record

    def push(
        self, service: str, records: list[dict[str, Any]], *, is_updating: bool | None = None
    ) -> list[dict[str, Any]]:
        """Send `records` with a push service; the portal's verdict on each (INTERFACES §14).

        `service` is `PUSH_DOSSIERS` (give `is_updating`: False inserts dossiers the portal does
        not have, True updates ones it has) or `PUSH_PROGRESS`. Returns one
        `{"MaHoSo", "error_code", "message"}` per record, in order ("00" = accepted). A refused
        call (bad parameter, unknown service) raises `SourceProtocolError`; retries and re-login
        are the base's.
        """
        where = f"{service} ({len(records)} records)"

        def request(session: str | None) -> tuple[str, dict[str, Any]]:
            body: dict[str, Any] = {
                "session": session,
                "madonvi": self.madonvi,
                "service": service,
                "data": records,
            }
            if is_updating is not None:
                body["isUpdating"] = "True" if is_updating else "False"
            return self.api_path, body

        results = self.post_in_session(request, self._parse_push, where)
        if len(results) != len(records):
            raise SourceProtocolError(
                self.source, where, f"answer judges {len(results)} records, {len(records)} were sent"
            )
        return results

    def _check_answer(self, answer: Any, where: str, accepted: Collection[str]) -> None:
        """The portal's answer envelope: a JSON object whose `error_code` is one of `accepted`.

        "401" means the session expired (the caller logs in again); any other code is the
        portal's refusal, reported with its message.
        """
        if not isinstance(answer, dict):
            raise SourceProtocolError(
                self.source, where, f"answer is a JSON {type(answer).__name__}, not an object"
            )
        code = answer.get("error_code")
        message = one_line(answer.get("message") or "no message", 120)
        if str(code) == "401":
            raise SessionExpired(f"error_code '401': {message}")
        if code not in accepted:
            raise SourceProtocolError(self.source, where, f"error_code {code!r}: {message}")

    def _parse_push(self, answer: Any, where: str) -> list[dict[str, Any]]:
        self._check_answer(answer, where, PUSH_ANSWER_CODES)
        results = answer.get("result")
        if not isinstance(results, list) or not all(
            isinstance(r, dict) and isinstance(r.get("error_code"), str) for r in results
        ):
            raise SourceProtocolError(
                self.source, where, "'result' is not a list of per-record verdicts"
            )
        return results


def _json_kind(value: Any) -> str:
    """How an answer's value reads in a message: "a JSON object", "a JSON array", "null", …"""
    if value is None:
        return "null"
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return f"a JSON {kinds.get(type(value), type(value).__name__)}"
