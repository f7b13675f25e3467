"""Push of the warehouse's changed dossiers and their processing steps to the national portal."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import ConnectionSettings
from pipeline.settings import PipelineSettings
from transforms.timefmt import format_portal_time
from warehouse.db import connection_of
from warehouse.schema import dim_procedure, fact_dossier, fact_dossier_event, ops_push

__all__ = [
    "PushOutcome",
    "PushSettings",
    "Rejection",
    "dossier_to_portal",
    "event_to_portal_step",
    "push_national_portal",
    "run_push",
    "select_changed",
]

log = logging.getLogger("lienthong.exchange.push")

ACCEPTED = "00"
# The portal's per-record codes the push acts on (INTERFACES §14): an insert of a dossier the
# portal already has, an update of one it does not have. Either means our `on_portal` was wrong
# (e.g. an answer lost after the portal stored the record): flip it and retry on the next push.
ALREADY_ON_PORTAL = "15"
NOT_ON_PORTAL = "16"
FEE_ITEM_NAME = "Phí, lệ phí"  # the warehouse keeps the total of a dossier's fees, not the items


class PushSettings(BaseSettings):
    """Settings of the push; every field can be set as LIENTHONG_PUSH_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_PUSH_", env_file=".env", extra="ignore")

    chunk: int = Field(default=100, ge=1, le=1000,
                       description="dossiers (or steps) per DongBoHoSoMC / CapNhatTienDoHoSoMC call")


@dataclass(frozen=True)
class Rejection:
    """A dossier the portal refused, with the portal's words."""

    dossier_code: str
    service: str
    error_code: str
    message: str

    def line(self) -> str:
        return f"rejected {self.dossier_code}: {self.service} error_code {self.error_code}: {self.message}"


@dataclass
class PushOutcome:
    """What one push did (or, in a dry run, would do)."""

    dry_run: bool = False
    inserts: int = 0  # dossiers sent with isUpdating "False"
    updates: int = 0  # dossiers sent with isUpdating "True"
    steps: int = 0  # processing steps sent
    calls: int = 0  # DongBoHoSoMC and CapNhatTienDoHoSoMC calls made
    accepted: int = 0  # dossiers accepted with all their steps
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.inserts + self.updates

    def summary(self) -> str:
        """One line: what was sent, accepted and rejected."""
        if self.dry_run:
            return (f"national_portal push (dry run): would send {self.sent} dossiers "
                    f"({self.inserts} new, {self.updates} updates) and {self.steps} steps")
        return (f"national_portal push: {self.sent} dossiers sent ({self.inserts} new, {self.updates} "
                f"updates) and {self.steps} steps in {self.calls} calls; accepted {self.accepted}, "
                f"rejected {len(self.rejected)}")

    def as_dict(self) -> dict[str, Any]:
        """A small summary for Airflow's XCom."""
        return {"dry_run": self.dry_run, "sent": self.sent, "inserts": self.inserts,
                "updates": self.updates, "steps": self.steps, "accepted": self.accepted,
                "rejected": [r.line() for r in self.rejected]}


# ── warehouse rows → DVCQG records (pure) ───────────────────────────────────────────────────────

def _portal_time(moment: datetime | None) -> str:
    return format_portal_time(moment) if moment is not None else ""


def _code_text(value: Any) -> str:
    return "" if value is None else str(value)


def _money_text(value: Any) -> str:
    amount = Decimal(str(value))
    return str(amount.quantize(Decimal(1))) if amount == amount.to_integral_value() else str(amount)


def dossier_to_portal(row: Mapping[str, Any]) -> dict[str, Any]:
    """One fact_dossier row (with dim_procedure's field_code/field_name) → a DongBoHoSoMC record.

    Only what the warehouse holds is sent. Personal data is not: the warehouse keeps an HMAC of the
    applicant's ID number, never the number (so no DinhDanhCHS / SoGiayToChuHoSo), and no name,
    phone, e-mail or address (ChuHoSo, SoDienThoai, Email, ...). Those fields are left out, not
    sent as "" (which would tell the portal the dossier has none).
    """
    fee = row.get("fee")
    fees = []
    if fee is not None:
        fees.append({"TenPhiLePhi": FEE_ITEM_NAME, "MaPhiLePhi": "", "HinhThucThu": "",
                     "Gia": _money_text(fee), "LoaiPhiLePhi": ""})
    return {
        "MaHoSo": row["dossier_code"],
        "MaTTHC": row["procedure_code"],
        "TenTTHC": row.get("procedure_name") or "",
        "MaLinhVuc": row.get("field_code") or "",
        "TenLinhVuc": row.get("field_name") or "",
        "TrichYeuHoSo": row.get("summary") or "",
        "DonViXuLy": row["agency_code"],
        "NoiNopHoSo": row.get("admin_unit_code") or "",
        "KenhThucHien": _code_text(row["channel"]),
        "LoaiDoiTuong": _code_text(row["applicant_type"]),
        "TrangThaiHoSo": _code_text(row["status"]),
        "NgayTiepNhan": _portal_time(row["received_at"]),
        "NgayHenTra": _portal_time(row.get("due_at")),
        "NgayKetThucXuLy": _portal_time(row.get("finished_at")),
        "NgayTra": _portal_time(row.get("returned_at")),
        "DuocThanhToanTrucTuyen": _code_text(row.get("paid_online")),
        "DanhSachLePhi": fees,
        "NgayCapNhat": _portal_time(row["updated_at"]),
    }


def event_to_portal_step(event: Mapping[str, Any]) -> dict[str, Any]:
    """One fact_dossier_event row → a CapNhatTienDoHoSoMC step.

    The warehouse keeps a step's time, resulting status and note; who handled it (NguoiXuLy,
    ChucDanh, PhongBanXuLy) and its planned dates are not kept, so they are sent as "".
    """
    return {
        "MaHoSo": event["dossier_code"],
        "NguoiXuLy": "",
        "ChucDanh": "",
        "ThoiDiemXuLy": _portal_time(event["occurred_at"]),
        "PhongBanXuLy": "",
        "NoiDungXuLy": event.get("note") or "",
        "TrangThai": _code_text(event["status"]),
        "NgayBatDau": "",
        "NgayKetThucTheoQuyDinh": "",
    }


# ── what to send ────────────────────────────────────────────────────────────────────────────────

def select_changed(engine: sa.Engine | sa.Connection, *, limit: int | None = None,
                   retry_rejected: bool = False) -> list[dict[str, Any]]:
    """Dossiers to push, oldest change first: never sent; accepted at an older version (or whose
    steps are not yet all accepted); rejected and changed since (every rejected one with
    `retry_rejected`). Each row is fact_dossier's columns, the procedure's field, and the push
    state (`on_portal`, `attempts`, `pushed_updated_at`; None when never sent)."""
    fd, push = fact_dossier, ops_push
    rejected_again = sa.or_(push.c.attempted_updated_at.is_(None),
                            fd.c.updated_at > push.c.attempted_updated_at)
    if retry_rejected:
        rejected_again = sa.true()
    query = (
        sa.select(fd, dim_procedure.c.field_code, dim_procedure.c.field_name,
                  push.c.on_portal, push.c.attempts, push.c.pushed_updated_at)
        .select_from(fd.outerjoin(push, push.c.dossier_code == fd.c.dossier_code)
                     .outerjoin(dim_procedure, dim_procedure.c.procedure_code == fd.c.procedure_code))
        .where(sa.or_(
            push.c.dossier_code.is_(None),
            sa.and_(push.c.status == "accepted",
                    sa.or_(push.c.pushed_updated_at.is_(None),
                           fd.c.updated_at > push.c.pushed_updated_at)),
            sa.and_(push.c.status == "rejected", rejected_again),
        ))
        .order_by(fd.c.updated_at, fd.c.dossier_code)
    )
    if limit is not None:
        query = query.limit(limit)
    with connection_of(engine) as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def _events_of(engine: sa.Engine, codes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {code: [] for code in codes}
    query = (sa.select(fact_dossier_event)
             .where(fact_dossier_event.c.dossier_code.in_(list(codes)))
             .order_by(fact_dossier_event.c.dossier_code, fact_dossier_event.c.seq))
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            events[row["dossier_code"]].append(dict(row))
    return events


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ── the push ────────────────────────────────────────────────────────────────────────────────────

def push_national_portal(engine: sa.Engine, connection: ConnectionSettings, *,
                         settings: PipelineSettings | None = None, chunk_size: int | None = None,
                         limit: int | None = None, dry_run: bool = False,
                         retry_rejected: bool = False) -> PushOutcome:
    """Send the dossiers changed since the last push to the portal, then their processing steps.

    Dossiers the portal never accepted go with `isUpdating` "False", the others with "True", in
    calls of `chunk_size` records (LIENTHONG_PUSH_CHUNK). After each call the portal's verdict on
    every record is kept in `ops_push` (one transaction per call): a dossier counts as pushed at
    its version (`pushed_updated_at`) once the record and all its steps are accepted. A rejected
    dossier is sent again when the warehouse holds a newer version (a correction), or with
    `retry_rejected`. A dry run reads and builds the records but sends and writes nothing.
    """
    from connectors.portal import PUSH_DOSSIERS, PortalConnector

    settings = settings or PipelineSettings()
    chunk_size = chunk_size or PushSettings().chunk
    rows = select_changed(engine, limit=limit, retry_rejected=retry_rejected)
    inserts = [r for r in rows if not r["on_portal"]]
    updates = [r for r in rows if r["on_portal"]]
    outcome = PushOutcome(dry_run=dry_run, inserts=len(inserts), updates=len(updates))
    if dry_run:
        for row in rows:
            dossier_to_portal(row)  # a row the push could not shape fails the dry run as well
        for chunk in _chunks([r["dossier_code"] for r in rows], chunk_size):
            outcome.steps += sum(len(steps) for steps in _events_of(engine, chunk).values())
        return outcome
    with PortalConnector(connection, timeout=settings.http_timeout,
                         max_retries=settings.max_retries) as portal:
        done = 0
        for is_updating, group in ((False, inserts), (True, updates)):
            for chunk in _chunks(group, chunk_size):
                records = [dossier_to_portal(row) for row in chunk]
                verdicts = portal.push(PUSH_DOSSIERS, records, is_updating=is_updating)
                outcome.calls += 1
                _push_steps(engine, portal, chunk, verdicts, is_updating, chunk_size, outcome)
                done += len(chunk)
                log.info("national_portal push: %d/%d dossiers sent", done, outcome.sent)
    return outcome


def _push_steps(engine: sa.Engine, portal: Any, chunk: Sequence[dict[str, Any]],
                verdicts: list[dict[str, Any]], is_updating: bool, chunk_size: int,
                outcome: PushOutcome) -> None:
    """Keep the portal's verdict on a chunk of dossiers, send the accepted ones' steps, keep theirs."""
    from connectors.portal import PUSH_DOSSIERS, PUSH_PROGRESS

    now = datetime.now(UTC)
    state: dict[str, dict[str, Any]] = {}
    accepted: list[str] = []
    for row, verdict in zip(chunk, verdicts, strict=True):
        code = row["dossier_code"]
        error = str(verdict.get("error_code"))
        message = str(verdict.get("message") or "")
        new = {"dossier_code": code, "pushed_updated_at": row["pushed_updated_at"],
               "attempted_updated_at": row["updated_at"],
               "on_portal": bool(row["on_portal"]), "status": "accepted", "error_code": error,
               "message": message, "attempts": (row["attempts"] or 0) + 1, "last_attempt_at": now}
        if error == ACCEPTED:
            new["on_portal"] = True
            accepted.append(code)
        else:
            new["status"] = "rejected"
            if (error == ALREADY_ON_PORTAL and not is_updating) or (error == NOT_ON_PORTAL and is_updating):
                new["on_portal"] = not is_updating
                new["attempted_updated_at"] = None  # not the data's fault: retried as it is
            outcome.rejected.append(Rejection(code, PUSH_DOSSIERS, error, message))
        state[code] = new
    # The dossiers' verdict is kept before their steps go: a failure sending the steps must not
    # lose what the portal now holds (an accepted dossier without pushed_updated_at is resent).
    _save_state(engine, state.values())
    if not accepted:
        return
    events = _events_of(engine, accepted)
    steps = [event_to_portal_step(event) for code in accepted for event in events[code]]
    step_failures: dict[str, Rejection] = {}
    for step_chunk in _chunks(steps, chunk_size):
        step_verdicts = portal.push(PUSH_PROGRESS, list(step_chunk))
        outcome.calls += 1
        outcome.steps += len(step_chunk)
        for step, verdict in zip(step_chunk, step_verdicts, strict=True):
            error = str(verdict.get("error_code"))
            if error != ACCEPTED and step["MaHoSo"] not in step_failures:
                step_failures[step["MaHoSo"]] = Rejection(
                    step["MaHoSo"], PUSH_PROGRESS, error,
                    f"{str(verdict.get('message') or '')} (ThoiDiemXuLy {step['ThoiDiemXuLy']})")
    versions = {row["dossier_code"]: row["updated_at"] for row in chunk}
    for code in accepted:
        failure = step_failures.get(code)
        if failure is None:
            state[code]["pushed_updated_at"] = versions[code]
            outcome.accepted += 1
        else:
            state[code].update(status="rejected", error_code=failure.error_code, message=failure.message)
            outcome.rejected.append(failure)
    _save_state(engine, [state[code] for code in accepted])


def _save_state(engine: sa.Engine, rows: Any) -> None:
    rows = list(rows)
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(sa.delete(ops_push).where(ops_push.c.dossier_code.in_([r["dossier_code"] for r in rows])))
        conn.execute(sa.insert(ops_push), rows)


def run_push(connection: ConnectionSettings, *, limit: int | None = None, dry_run: bool = False,
             retry_rejected: bool = False) -> PushOutcome:
    """Push the warehouse named by WAREHOUSE_URL (migrated first) to the portal of `connection`."""
    from warehouse.db import create_engine, upgrade, warehouse_url

    url = warehouse_url()
    upgrade(url)
    engine = create_engine(url)
    try:
        outcome = push_national_portal(engine, connection, limit=limit, dry_run=dry_run,
                                       retry_rejected=retry_rejected)
    finally:
        engine.dispose()
    log.info("[lienthong] %s", outcome.summary())
    for rejection in outcome.rejected:
        log.info("[lienthong] %s", rejection.line())
    return outcome
