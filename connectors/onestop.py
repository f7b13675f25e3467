"""Connector of the one-stop-shop (một cửa) databases: any schema variant, described by a mapping file."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from connectors.base import (
    PORTAL_AMOUNT_FIELDS,
    PORTAL_DOSSIER_FIELDS,
    PORTAL_DOSSIER_REQUIRED,
    PORTAL_PROCEDURE_FIELDS,
    Connector,
    StreamSpec,
    Window,
)
from connectors.errors import ConnectionConfigError, SourceProtocolError, SourceUnavailable, one_line
from connectors.settings import ConnectionSettings, connection_from_uri
from transforms.amounts import to_portal_amount
from transforms.timefmt import LOCAL_TZ

__all__ = [
    "MAPPING_DIR",
    "MAPPING_SCHEMA",
    "MappingError",
    "OneStopConnector",
    "OneStopMapping",
    "load_mapping",
    "mapping_from_dict",
    "to_sqlalchemy_url",
]

MAPPING_DIR = Path(__file__).with_name("mappings")

# Portal fields a mapping may fill from a source column: connectors.base.PORTAL_DOSSIER_FIELDS
# (with `LePhi`) and PORTAL_PROCEDURE_FIELDS.
DOSSIER_FIELDS = PORTAL_DOSSIER_FIELDS
PROCEDURE_FIELDS = PORTAL_PROCEDURE_FIELDS
STEP_FIELDS = ("ThoiDiemXuLy", "TrangThai", "NoiDungXuLy", "NguoiXuLy", "ChucDanh", "PhongBanXuLy")
# Fields holding a time: read as the source's naive local time, written `yyyyMMddHHmmss` local.
TIME_FIELDS = frozenset(
    {"NgayTiepNhan", "NgayHenTra", "NgayTra", "NgayKetThucXuLy", "NgayTuChoi", "NgayNopHoSo",
     "NgayCapNhat", "ThoiDiemXuLy", "NgayCongBo", "NgayBaiBo"}
)  # fmt: skip
# Fields whose source values go through a code map of the mapping file (unmapped: passed as is).
CODE_FIELDS = {"TrangThaiHoSo": "statuses", "TrangThai": "statuses", "KenhThucHien": "channels",
               "LoaiDoiTuong": "applicant_types"}  # fmt: skip

_IDENT = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_CODE_VALUE = {"type": "string", "minLength": 1}


def _columns(fields: Sequence[str], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"enum": list(fields)},
        "additionalProperties": _IDENT,
        "required": list(required),
    }


def _code_map(pattern: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string", "pattern": pattern}}


MAPPING_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "One-stop-shop database mapping",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "agency_code", "timezone", "datetime", "dossiers", "statuses"],
    "properties": {
        "version": {"const": 1},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "agency_code": {"type": "string", "pattern": r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$"},
        "timezone": {"type": "string", "minLength": 1},
        "datetime": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {"enum": ["native", "text"]},
                "format": {"type": "string", "minLength": 2},
            },
            "if": {"properties": {"type": {"const": "text"}}},
            "then": {"required": ["format"]},
        },
        "dossiers": {
            "type": "object",
            "additionalProperties": False,
            "required": ["table", "key", "replication", "columns"],
            "properties": {
                "table": _IDENT,
                "key": _IDENT,
                "replication": _IDENT,
                "columns": _columns(DOSSIER_FIELDS, ["MaHoSo"]),
            },
        },
        "history": {
            "type": "object",
            "additionalProperties": False,
            "required": ["table", "dossier_key", "order_by", "columns"],
            "properties": {
                "table": _IDENT,
                "dossier_key": _IDENT,
                "order_by": _IDENT,
                "columns": _columns(STEP_FIELDS, ["ThoiDiemXuLy", "TrangThai"]),
            },
        },
        "procedures": {
            "type": "object",
            "additionalProperties": False,
            "required": ["table", "key", "columns"],
            "properties": {
                "table": _IDENT,
                "key": _IDENT,
                "replication": _IDENT,
                "columns": _columns(PROCEDURE_FIELDS, ["MaTTHC"]),
            },
        },
        "statuses": _code_map(r"^([1-9]|10)$"),
        "channels": _code_map(r"^[1-3]$"),
        "applicant_types": _code_map(r"^[1-4]$"),
        "procedure_codes": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "map": {"type": "object", "additionalProperties": _CODE_VALUE},
                "lookup": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["table", "source_column", "national_column"],
                    "properties": {
                        "table": _IDENT,
                        "source_column": _IDENT,
                        "national_column": _IDENT,
                    },
                },
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(MAPPING_SCHEMA)
_SORTABLE = "YmdHMS"  # strftime directives in the only order that sorts as text


class MappingError(ValueError):
    """A mapping file that cannot be used; `str()` names the file and the problem."""


@dataclass(frozen=True)
class TableMapping:
    """A source table: its key column, replication column and portal field → column map."""

    table: str
    key: str
    replication: str | None
    columns: Mapping[str, str]


@dataclass(frozen=True)
class HistoryMapping:
    """The status-history table: steps of a dossier joined on `dossier_key` = dossier key."""

    table: str
    dossier_key: str
    order_by: str
    columns: Mapping[str, str]


@dataclass(frozen=True)
class CodeLookup:
    """A table of the source database mapping its own procedure codes to national ones."""

    table: str
    source_column: str
    national_column: str


@dataclass(frozen=True)
class OneStopMapping:
    """One schema variant of a one-stop-shop database, as its mapping file declares it."""

    name: str
    origin: str  # the file it came from (for messages)
    agency_code: str
    timezone: ZoneInfo
    datetime_type: str  # "native" (DATETIME columns) | "text" (strings in `datetime_format`)
    datetime_format: str | None
    dossiers: TableMapping
    history: HistoryMapping | None = None
    procedures: TableMapping | None = None
    statuses: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    applicant_types: Mapping[str, str] = field(default_factory=dict)
    procedure_codes: Mapping[str, str] = field(default_factory=dict)
    procedure_lookup: CodeLookup | None = None

    def code_map(self, portal_field: str) -> Mapping[str, str]:
        """The source label → standard code map applied to `portal_field` (empty if none)."""
        section = CODE_FIELDS.get(portal_field)
        return getattr(self, section) if section else {}


def load_mapping(path: Path | str) -> OneStopMapping:
    """Read and validate a mapping file (YAML); raise `MappingError` naming the file and problem.

    A bare name such as `onestop_variant_a` is looked up in the packaged `connectors/mappings/`.
    """
    path = Path(path)
    if not path.suffix and not path.exists():
        path = MAPPING_DIR / f"{path}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise MappingError(f"{path}: not valid YAML{where} ({problem})") from None
    return mapping_from_dict(data, origin=str(path))


def mapping_from_dict(data: Any, *, origin: str = "<mapping>") -> OneStopMapping:
    """Validate `data` (a parsed mapping file) against `MAPPING_SCHEMA` and build the mapping."""
    data = _keys_as_text(data)
    if not isinstance(data, dict):
        raise MappingError(f"{origin}: a mapping file must be a YAML mapping, got {type(data).__name__}")
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise MappingError(f"{origin}: {where}: {error.message}{more}")
    try:
        zone = ZoneInfo(data["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"{origin}: timezone: unknown time zone {data['timezone']!r}") from None
    fmt = data["datetime"].get("format")
    if data["datetime"]["type"] == "text":
        directives = "".join(re.findall(r"%(.)", fmt or ""))
        if not directives or not _SORTABLE.startswith(directives):
            raise MappingError(
                f"{origin}: datetime.format: {fmt!r} does not sort as text (replication compares "
                f"text times): use the fields in the order %Y %m %d %H %M %S, e.g. '%Y-%m-%d %H:%M:%S'"
            )
    dossiers = data["dossiers"]
    history = data.get("history")
    procedures = data.get("procedures")
    codes = data.get("procedure_codes") or {}
    lookup = codes.get("lookup")
    return OneStopMapping(
        name=data.get("name") or Path(origin).stem,
        origin=origin,
        agency_code=data["agency_code"],
        timezone=zone,
        datetime_type=data["datetime"]["type"],
        datetime_format=fmt,
        dossiers=TableMapping(dossiers["table"], dossiers["key"], dossiers["replication"], dict(dossiers["columns"])),
        history=HistoryMapping(history["table"], history["dossier_key"], history["order_by"], dict(history["columns"]))
        if history
        else None,
        procedures=TableMapping(
            procedures["table"], procedures["key"], procedures.get("replication"), dict(procedures["columns"])
        )
        if procedures
        else None,
        statuses=dict(data.get("statuses") or {}),
        channels=dict(data.get("channels") or {}),
        applicant_types=dict(data.get("applicant_types") or {}),
        procedure_codes=dict(codes.get("map") or {}),
        procedure_lookup=CodeLookup(**lookup) if lookup else None,
    )


def _keys_as_text(value: Any) -> Any:
    """YAML reads `4: "4"` with an int key; the maps compare source values as text."""
    if isinstance(value, dict):
        return {str(k): _keys_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys_as_text(v) for v in value]
    return value


_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "postgres": "postgresql+psycopg",
            "postgresql": "postgresql+psycopg", "sqlite": "sqlite"}  # fmt: skip


def to_sqlalchemy_url(connection: ConnectionSettings | str) -> str:
    """An Airflow connection (settings or URI, e.g. `mysql://root@host:3306/onestop_a`) → SQLAlchemy URL.

    `mysql`/`mariadb` → `mysql+pymysql`, `postgres(ql)` → `postgresql+psycopg`, `sqlite` as is; a
    scheme already naming a driver (`mysql+pymysql://`) is kept. String extras become URL query.
    """
    if isinstance(connection, str):
        scheme, sep, rest = connection.partition("://")
        if not sep:
            raise ConnectionConfigError("connection URI has no scheme")
        if scheme.lower() == "sqlite" or "+" in scheme:
            return connection
        connection = connection_from_uri(connection)
    scheme = connection.scheme.lower()
    driver = scheme if "+" in scheme else _DRIVERS.get(scheme)
    if driver is None:
        known = ", ".join(sorted(_DRIVERS))
        raise ConnectionConfigError(f"no SQL driver for connection type {scheme!r} (known: {known})")
    if driver == "sqlite":
        return f"sqlite:///{connection.schema}" if connection.schema else "sqlite://"
    url = sa.URL.create(
        driver,
        username=connection.login,
        password=connection.get_password(),
        host=connection.host or None,
        port=connection.port,
        database=connection.schema or None,
        query={k: v for k, v in connection.extra.items() if isinstance(v, str)},
    )
    return url.render_as_string(hide_password=False)


_IN_BATCH = 500  # keys per IN (...) of the history query: well under every database's limit


class OneStopConnector(Connector):
    """Reads dossiers and procedures of one một cửa database through its mapping (any variant).

    Records come out portal-shaped (INTERFACES §1 names, `yyyyMMddHHmmss` local times, codes of
    the standard) so `transforms.portal` normalises them unchanged. Labels and procedure codes
    the mapping does not know are passed on as they are, for the quality stage to quarantine.
    """

    source: ClassVar[str] = "one_stop"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec(
            name="procedures",
            entity="procedure",
            key=("MaTTHC",),
            replication_key="NgayCapNhat",
            required_fields=("MaTTHC", "TenTTHC", "NgayCapNhat"),
        ),
        StreamSpec(
            name="dossiers",
            entity="dossier",
            key=("MaHoSo",),
            replication_key="NgayCapNhat",
            required_fields=PORTAL_DOSSIER_REQUIRED,
        ),
    )

    def __init__(
        self,
        url_or_engine: str | Engine | ConnectionSettings,
        mapping: OneStopMapping | Path | str,
        *,
        chunk_size: int = 2000,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"one_stop: chunk_size must be at least 1, got {chunk_size}")
        self.mapping = mapping if isinstance(mapping, OneStopMapping) else load_mapping(mapping)
        self.source = f"one_stop:{self.mapping.agency_code}"  # type: ignore[misc]
        self.chunk_size = chunk_size
        if isinstance(url_or_engine, Engine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._owns_engine = sa.create_engine(to_sqlalchemy_url(url_or_engine)), True
        self._procedure_codes: dict[str, str] | None = None

    reads_apart: ClassVar[bool] = True  # a read leaves nothing to do after it

    def after_fork(self) -> None:
        """Leave the parent's pooled connections to it: this process opens its own."""
        self.engine.dispose(close=False)

    def close(self) -> None:
        """Dispose of the engine the connector created (not one it was given)."""
        if self._owns_engine:
            self.engine.dispose()

    def read(self, stream: str, window: Window | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks of at most `chunk_size` portal-shaped records of `stream` within `window`.

        Rows are read with a server-side cursor, `window` bounds (inclusive) are compared with the
        replication column in the source's own zone, and rows come ordered by (replication, key).
        """
        spec = self.stream(stream)
        table = self.mapping.dossiers if spec.name == "dossiers" else self.mapping.procedures
        if table is None:
            raise ValueError(f"{self.source}: mapping {self.mapping.origin} declares no {stream} table")
        return self._read(spec.name, table, window)

    # -- the work --------------------------------------------------------------------------

    def _read(self, stream: str, tm: TableMapping, window: Window | None) -> Iterator[list[dict[str, Any]]]:
        names = dict.fromkeys([tm.key, *([tm.replication] if tm.replication else []), *tm.columns.values()])
        table = self._table(tm.table, names)
        order = [table.c[tm.replication], table.c[tm.key]] if tm.replication else [table.c[tm.key]]
        stmt = sa.select(*table.c).order_by(*order)
        if window is not None and tm.replication:
            stmt = stmt.where(
                table.c[tm.replication].between(
                    self._bound(window.start, start=True), self._bound(window.end, start=False)
                )
            )
        with self._database_errors(stream):
            codes = self._national_codes()
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.chunk_size).execute(stmt)
                for rows in result.partitions():
                    records = [self._record(row._mapping, tm, codes) for row in rows]
                    if stream == "dossiers" and self.mapping.history is not None:
                        self._attach_history(records, [row._mapping[tm.key] for row in rows])
                    yield records

    @contextmanager
    def _database_errors(self, stream: str) -> Iterator[None]:
        """Database failures as `SourceError`s: no connection → unavailable; bad SQL → mismatch."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            detail = one_line(exc.orig if exc.orig is not None else exc)
            if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError) or _is_connect_error(exc):
                raise SourceUnavailable(self.source, stream, f"database unreachable ({detail})") from exc
            raise SourceProtocolError(
                self.source, stream, f"the database does not match mapping {self.mapping.origin} ({detail})"
            ) from exc

    def _table(self, name: str, columns: Mapping[str, None] | Sequence[str]) -> sa.TableClause:
        """The source table with untyped columns: values come as the driver gives them.

        Not `sa.DateTime` for time columns: SQLite keeps a DATETIME as any text, and SQLAlchemy's
        parser would raise on a row holding none (the whole read would fail); `_time_text` reads
        it instead. Window bounds are still bound as the dialect writes a datetime (their type
        comes from the Python value).
        """
        return sa.table(name, *(sa.column(c) for c in columns))

    def _bound(self, moment: datetime, *, start: bool) -> datetime | str:
        """A window bound as the source stores times (whole seconds): naive in its zone, or text."""
        local = moment.astimezone(self.mapping.timezone).replace(tzinfo=None)
        if local.microsecond:  # the source keeps seconds: stay inside the window
            local = local.replace(microsecond=0) + (timedelta(seconds=1) if start else timedelta(0))
        if self.mapping.datetime_type == "text":
            return local.strftime(self.mapping.datetime_format or "")
        return local

    def _record(self, row: sa.RowMapping, tm: TableMapping, codes: Mapping[str, str]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for fld, col in tm.columns.items():
            record[fld] = self._value(fld, row[col], codes)
        if tm is self.mapping.dossiers:
            record.setdefault("DonViXuLy", self.mapping.agency_code)
        else:
            record.setdefault("MaCoQuanThucHien", self.mapping.agency_code)
        if tm.replication:
            record.setdefault("NgayCapNhat", self._time_text(row[tm.replication]))
        return record

    def _value(self, portal_field: str, value: Any, codes: Mapping[str, str]) -> str | float:
        """One source value as the portal field's text: time, national code or standard code.

        A label or code the mapping does not know is returned as it is: never dropped, never guessed.
        An amount column's fractional number stays a float (`to_portal_amount`), for the transform
        to refuse.
        """
        if portal_field in TIME_FIELDS:
            return self._time_text(value)
        if portal_field in PORTAL_AMOUNT_FIELDS:
            value = to_portal_amount(value)
            if isinstance(value, float):
                return value
        text = _text(value)
        known = codes if portal_field == "MaTTHC" else self.mapping.code_map(portal_field)
        return known.get(text.strip(), text)

    def _time_text(self, value: Any) -> str:
        """A source time → `yyyyMMddHHmmss` in Vietnam; a value that is no time is passed on as text.

        Text is read with the mapping's format ("text" times), or as ISO 8601 (a "native" column
        that SQLite keeps as text, or MySQL's zero date `0000-00-00 00:00:00`). What does not
        parse, and a time that cannot move to Vietnam's zone (year 9999 from a zone behind it),
        goes on as text, for the transform to report as `<column>.valid_datetime`.
        """
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            try:
                if self.mapping.datetime_type == "text":
                    value = datetime.strptime(value.strip(), self.mapping.datetime_format or "")
                else:
                    value = datetime.fromisoformat(value.strip())
            except ValueError:
                return value
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if not isinstance(value, datetime):
            return _text(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.mapping.timezone)
        try:
            local = value.astimezone(LOCAL_TZ)
        except OverflowError:
            return value.isoformat(sep=" ")
        return f"{local.year:04d}{local:%m%d%H%M%S}"  # strftime's %Y writes year 1 as "1" on Linux

    def _attach_history(self, records: list[dict[str, Any]], keys: list[Any]) -> None:
        hm = self.mapping.history
        assert hm is not None
        names = dict.fromkeys([hm.dossier_key, hm.order_by, *hm.columns.values()])
        table = self._table(hm.table, names)
        steps: dict[Any, list[dict[str, Any]]] = {}
        # Its own connection: the dossier cursor is still open on the other (MySQL cannot share).
        with self.engine.connect() as conn:
            unique = list(dict.fromkeys(k for k in keys if k is not None))
            for start in range(0, len(unique), _IN_BATCH):
                batch = unique[start : start + _IN_BATCH]
                stmt = (
                    sa.select(*table.c)
                    .where(table.c[hm.dossier_key].in_(batch))
                    .order_by(table.c[hm.dossier_key], table.c[hm.order_by])
                )
                for row in conn.execute(stmt):
                    m = row._mapping
                    step = {fld: self._value(fld, m[col], {}) for fld, col in hm.columns.items()}
                    steps.setdefault(m[hm.dossier_key], []).append(step)
        for record, key in zip(records, keys, strict=True):
            record["QuaTrinhXuLy"] = steps.get(key, [])

    def _national_codes(self) -> dict[str, str]:
        """Source procedure code → national code: the file's map, then the lookup table's rows."""
        if self._procedure_codes is None:
            codes = dict(self.mapping.procedure_codes)
            lookup = self.mapping.procedure_lookup
            if lookup is not None:
                table = sa.table(lookup.table, sa.column(lookup.source_column), sa.column(lookup.national_column))
                with self.engine.connect() as conn:
                    for source_code, national in conn.execute(sa.select(*table.c)):
                        if source_code is not None and national not in (None, ""):
                            codes.setdefault(_text(source_code).strip(), _text(national).strip())
            self._procedure_codes = codes
        return self._procedure_codes


def _is_connect_error(exc: sa.exc.DBAPIError) -> bool:
    """True for "cannot reach the server" errors (MySQL 2003/2013, PostgreSQL connection failure)."""
    args = getattr(exc.orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    return code in {2002, 2003, 2006, 2013} or "connection" in type(exc.orig).__name__.lower()


def _text(value: Any) -> str:
    """A source value as portal text: None → "", 12.0 → "12"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return str(value)
