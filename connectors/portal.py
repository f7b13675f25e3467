"""Connector of the national public service portal (Cổng DVCQG): procedures and dossiers."""

from __future__ import annotations

from collections.abc import Collection
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
    max_page_size: ClassVar[int | None] = 1000  # the portal's `sodong` limit
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
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SourceProtocolError(self.source, where, "'result' is not a list of objects")
        return Page(records=records, total=self._total(answer["tongso"], where))

    def _total(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise SourceProtocolError(self.source, where, f"'tongso' is not a count: {value!r}")
        try:
            total = int(value)
        except ValueError:
            raise SourceProtocolError(
                self.source, where, f"'tongso' is not a count: {value!r}"
            ) from None
        if total < 0:
            raise SourceProtocolError(self.source, where, f"'tongso' is negative: {total}")
        return total

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
