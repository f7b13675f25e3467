"""Connector of the file drops: procedure catalogue and commune reports (xlsx), Justice CSV exports."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, ClassVar
from xml.etree.ElementTree import ParseError

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from connectors.base import PORTAL_AMOUNT_FIELDS, Connector, StreamSpec, Window, iter_chunks
from connectors.errors import SourceProtocolError, one_line
from transforms.amounts import to_portal_amount
from transforms.legacy_encoding import (
    ENCODINGS,
    LegacyEncodingError,
    decode_legacy,
    detect_legacy_encoding,
)

__all__ = [
    "CATALOGUE_HEADERS",
    "JUSTICE_AGENCY",
    "JUSTICE_COLUMNS",
    "JUSTICE_DATE_FIELDS",
    "REPORT_HEADERS",
    "SCOPE_NAMES",
    "UNREADABLE_ERRORS",
    "FileDropConnector",
    "FileRejected",
    "catalogue_procedure",
    "cell_text",
    "cell_value",
    "header_fields",
    "justice_dossier",
    "unreadable_reason",
]

log = logging.getLogger("lienthong.connectors.filedrop")

# The catalogue sheet: Vietnamese header → portal procedure field.
CATALOGUE_HEADERS = {
    "Mã TTHC": "MaTTHC",
    "Tên TTHC": "TenTTHC",
    "Mã lĩnh vực": "MaLinhVuc",
    "Tên lĩnh vực": "TenLinhVuc",
    "Cơ quan thực hiện": "MaCoQuanThucHien",
    "Cấp thực hiện": "CapThucHien",
    "Mức độ": "MucDo",
    "Phí/lệ phí": "PhiLePhi",
    "Thời hạn giải quyết": "ThoiHanGiaiQuyet",
    "Ngày công bố": "NgayCongBo",
}
# CapThucHien as the spreadsheet writes it.
SCOPE_NAMES = {"1": "Tỉnh", "2": "Huyện", "3": "Xã"}

# The commune report table: Vietnamese header → service_stat field ("STT" and "Tên TTHC" are
# written but not required).
REPORT_HEADERS = {
    "Mã TTHC": "procedure_code",
    "Tiếp nhận": "received",
    "Trực tuyến": "online",
    "Đúng hạn": "on_time",
    "Quá hạn": "late",
    "Đang giải quyết": "pending",
}

# The Department of Justice export: Vietnamese column → portal dossier field. "Lệ phí" becomes
# DanhSachLePhi; every other portal field is filled empty.
JUSTICE_AGENCY = "000.00.03.H62"  # Sở Tư pháp
JUSTICE_COLUMNS = {
    "Mã hồ sơ": "MaHoSo",
    "Số biên nhận": "SoBienNhan",
    "Mã TTHC": "MaTTHC",
    "Tên TTHC": "TenTTHC",
    "Mã lĩnh vực": "MaLinhVuc",
    "Tên lĩnh vực": "TenLinhVuc",
    "Chủ hồ sơ": "ChuHoSo",
    "Loại đối tượng": "LoaiDoiTuong",
    "Số giấy tờ": "SoGiayToChuHoSo",
    "Số điện thoại": "SoDienThoai",
    "Email": "Email",
    "Trích yếu": "TrichYeuHoSo",
    "Ngày nộp": "NgayNopHoSo",
    "Ngày tiếp nhận": "NgayTiepNhan",
    "Ngày hẹn trả": "NgayHenTra",
    "Ngày kết thúc xử lý": "NgayKetThucXuLy",
    "Ngày trả": "NgayTra",
    "Ngày cập nhật": "NgayCapNhat",
    "Trạng thái": "TrangThaiHoSo",
    "Kênh": "KenhThucHien",
    "Nơi nộp": "NoiNopHoSo",
    "Thanh toán trực tuyến": "DuocThanhToanTrucTuyen",
    "Lệ phí": "DanhSachLePhi",
}
JUSTICE_DATE_FIELDS = frozenset(
    {"NgayNopHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra", "NgayCapNhat"}
)
_JUSTICE_REQUIRED = ("Mã hồ sơ", "Mã TTHC", "Ngày tiếp nhận", "Trạng thái")
_PORTAL_LISTS = ("TaiLieuNop", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua", "DinhDanhCHS",
                 "QuaTrinhXuLy")
_PORTAL_TEXTS = ("MaDoiTuong", "ThongTinKhac", "Fax", "ThongTinTra", "HinhThuc", "GhiChu",
                 "HoSoCoThanhPhanSoHoa", "TaiKhoanDuocXacThucVoiVNeID", "NgayTuChoi")

_REPORT_NAME = re.compile(r"^baocao_(?P<commune>\d{5})_(?P<month>\d{4}-(?:0[1-9]|1[0-2]))\.xlsx$",
                          re.IGNORECASE)
_TITLE_UNIT = re.compile(r"mã đơn vị\s*:\s*(\d+)")
_TITLE_MONTH = re.compile(r"tháng\s+(\d{1,2})/(\d{4})")
_AGENCY_CODE = re.compile(r"\b\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}\b")
_VN_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_HEADER_SCAN_ROWS = 20  # the header row is looked for below a title block of at most this many rows
_DETECT_SAMPLE = 1 << 16  # bytes read to detect an undeclared CSV encoding
_HASH_BLOCK = 1 << 20

# What reading a broken drop file raises: zip and XML damage, wrong sheet shape, bad bytes.
_UNREADABLE = (zipfile.BadZipFile, InvalidFileException, ParseError, KeyError, ValueError,
               TypeError, IndexError, csv.Error, OSError)


class FileRejected(ValueError):
    """A drop file that cannot be loaded; `str()` is the one-line reason."""


class FileDropConnector(Connector):
    """Reads the files agencies drop in one folder; archives them by checksum once loaded.

    Streams and the file names they take (case-insensitive, top level of `folder` only):

    - `procedure_catalogue`: `catalogue*.xlsx` or `danhmuc*.xlsx` — the procedure catalogue
      sheet (`CATALOGUE_HEADERS`, under a title block) → portal-shaped procedure dicts;
    - `service_stat`: `baocao_<commune GSO code, 5 digits>_<YYYY-MM>.xlsx` — a commune's monthly
      report (`REPORT_HEADERS`) → `{commune_code, month, procedure_code, received, online,
      on_time, late, pending, _file}`, one per procedure row (the total row is not a record);
    - `justice_csv`: `tuphap_*.csv` — the Department of Justice export (`;`-separated,
      `JUSTICE_COLUMNS`, dates `dd/mm/yyyy[ HH:MM[:SS]]`) → portal-shaped dossier dicts with
      `DonViXuLy` = `JUSTICE_AGENCY`, dates as `yyyyMMddHHmmss`, text in NFC. Its encoding is
      `encodings[<file name>]`, else the one word in a sidecar `<file name>.encoding`
      (`tcvn3`, `vni`, `cp1258`, `utf-8`), else `detect_legacy_encoding` on its first 64 KB.

    Each file is read twice, both times streaming (openpyxl `read_only=True`, CSV line by line):
    a first pass checks the whole file, so that a file that cannot be read (corrupt xlsx, wrong
    headers, undecodable bytes, malformed name) is moved to `rejected/` with a one-line
    `<name>.reason.txt` before any of its records is yielded; the second pass yields the records.

    A file whose SHA-256 is already in `archive/` (as `<sha256>__<name>`), or that was read
    earlier in this run under another name, is skipped and left in place: a file is never loaded
    twice. Files read are only *listed* in `processed`; the caller moves them to the archive with
    `commit_files()` after the batch is loaded, so a failed load leaves them in the drop folder to
    be read again. `processed`, `skipped` and `rejected` list the files' original paths;
    `reasons` gives each rejected one's reason. The
    window of `read` is ignored: a drop is read whole.
    """

    source: ClassVar[str] = "file_drop"
    streams: ClassVar[tuple[StreamSpec, ...]] = (
        StreamSpec("procedure_catalogue", "procedure", ("MaTTHC",), None, ("MaTTHC", "TenTTHC")),
        StreamSpec("service_stat", "service_stat", ("commune_code", "month", "procedure_code"),
                   None, ("commune_code", "month", "procedure_code")),
        StreamSpec("justice_csv", "dossier", ("MaHoSo",), None,
                   ("MaHoSo", "MaTTHC", "NgayTiepNhan", "TrangThaiHoSo")),
    )
    patterns: ClassVar[dict[str, tuple[str, ...]]] = {
        "procedure_catalogue": ("catalogue*.xlsx", "danhmuc*.xlsx"),
        "service_stat": ("baocao_*.xlsx",),
        "justice_csv": ("tuphap_*.csv",),
    }

    def __init__(
        self,
        folder: Path,
        *,
        archive: Path | None = None,
        rejected: Path | None = None,
        chunk_size: int = 2000,
        encodings: dict[str, str] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"{self.source}: chunk_size must be at least 1, got {chunk_size}")
        for name, encoding in (encodings or {}).items():
            if encoding not in ENCODINGS:
                raise ValueError(f"{self.source}: encoding {encoding!r} of {name} is not one of "
                                 f"{', '.join(ENCODINGS)}")
        self.folder = Path(folder)
        self.archive = Path(archive) if archive is not None else self.folder / "archive"
        self.rejected_dir = Path(rejected) if rejected is not None else self.folder / "rejected"
        self.chunk_size = chunk_size
        self.encodings = dict(encodings or {})
        self.processed: list[Path] = []
        self.skipped: list[Path] = []
        self.rejected: list[Path] = []
        self.reasons: dict[Path, str] = {}  # rejected file → its one-line reason
        self._pending: dict[Path, str] = {}  # read, not yet archived: path → sha256

    # -- the contract ------------------------------------------------------------------------

    def read(self, stream: str, window: Window | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks of at most `chunk_size` records of `stream`, from every matching file."""
        spec = self.stream(stream)
        return iter_chunks(self._iter_stream(spec.name), self.chunk_size)

    def commit_files(self) -> list[Path]:
        """Move the files read since the last commit to `archive/<sha256>__<name>`; their new paths.

        Run it after the batch loaded: until then the files stay where they were dropped. A
        sidecar `<name>.encoding` moves with its file.
        """
        self.archive.mkdir(parents=True, exist_ok=True)
        moved = []
        for path, digest in list(self._pending.items()):
            target = self.archive / f"{digest}__{path.name}"
            shutil.move(path, target)
            sidecar = path.with_name(path.name + ".encoding")
            if sidecar.exists():
                shutil.move(sidecar, target.with_name(target.name + ".encoding"))
            del self._pending[path]  # one by one: a retry after a failed move resumes, not restarts
            moved.append(target)
            log.info("%s: archived %s as %s", self.source, path.name, target.name)
        return moved

    def reports_read(self) -> list[tuple[str, str, str]]:
        """(commune code, month, file name) of the commune reports read and not yet archived.

        A report with no procedure row yields no record; this still says it was sent.
        """
        return [(match["commune"], match["month"], path.name) for path in self._pending
                if (match := _REPORT_NAME.match(path.name))]

    # -- files -------------------------------------------------------------------------------

    def _files(self, stream: str) -> list[Path]:
        if not self.folder.is_dir():
            raise SourceProtocolError(self.source, str(self.folder), "drop folder does not exist")
        patterns = self.patterns[stream]
        return sorted(
            path for path in self.folder.iterdir()
            if path.is_file() and any(fnmatch(path.name.lower(), p) for p in patterns)
        )

    def _archived(self) -> set[str]:
        if not self.archive.is_dir():
            return set()
        return {
            name.split("__", 1)[0] for name in (p.name for p in self.archive.iterdir())
            if re.match(r"^[0-9a-f]{64}__", name)
        }

    def _iter_stream(self, stream: str) -> Iterator[dict[str, Any]]:
        archived = self._archived()
        parse = getattr(self, f"_parse_{stream}")
        for path in self._files(stream):
            digest = _sha256(path)
            if digest in archived or digest in self._pending.values():
                log.info("%s: %s skipped, checksum %s already loaded", self.source, path.name,
                         digest[:12])
                self.skipped.append(path)
                continue
            try:
                for _ in parse(path):  # first pass: check the whole file, keep nothing
                    pass
            except _UNREADABLE as exc:
                self._reject(path, exc)
                continue
            count = 0
            try:
                for record in parse(path):
                    count += 1
                    yield record
            except _UNREADABLE as exc:  # changed on disk between the two passes
                raise SourceProtocolError(self.source, path.name,
                                          f"became unreadable while read: {_reason(exc)}") from exc
            log.info("%s: %s read, %d records", self.source, path.name, count)
            self.processed.append(path)
            self._pending[path] = digest

    def _reject(self, path: Path, exc: BaseException) -> None:
        reason = _reason(exc)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        target = self.rejected_dir / path.name
        if target.exists():
            target = self.rejected_dir / f"{_sha256(path)[:12]}__{path.name}"
        shutil.move(path, target)
        sidecar = path.with_name(path.name + ".encoding")
        if sidecar.exists():
            shutil.move(sidecar, target.with_name(target.name + ".encoding"))
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
        log.warning("%s: %s rejected: %s", self.source, path.name, reason)
        self.rejected.append(path)
        self.reasons[path] = reason

    # -- procedure_catalogue -----------------------------------------------------------------

    def _parse_procedure_catalogue(self, path: Path) -> Iterator[dict[str, Any]]:
        for cells in _sheet_records(path, CATALOGUE_HEADERS):
            record = catalogue_procedure(cells)
            if record is not None:
                yield record

    # -- service_stat ------------------------------------------------------------------------

    def _parse_service_stat(self, path: Path) -> Iterator[dict[str, Any]]:
        match = _REPORT_NAME.match(path.name)
        if match is None:
            raise FileRejected("file name is not baocao_<commune code, 5 digits>_<YYYY-MM>.xlsx")
        commune, month = match["commune"], match["month"]

        def check_title(cells: list[str]) -> None:
            text = _fold(" ".join(cells))
            unit = _TITLE_UNIT.search(text)
            if unit and unit[1] != commune:
                raise FileRejected(f"title says commune {unit[1]}, file name says {commune}")
            period = _TITLE_MONTH.search(text)
            if period and f"{period[2]}-{int(period[1]):02d}" != month:
                raise FileRejected(f"title says month {period[2]}-{int(period[1]):02d}, "
                                   f"file name says {month}")

        for cells in _sheet_records(path, REPORT_HEADERS, on_title=check_title):
            code = _text(cells.pop("procedure_code"))
            if code == "":
                continue  # the total row, blank lines
            counts = {field: _count(value) for field, value in cells.items()}
            yield {"commune_code": commune, "month": month, "procedure_code": code, **counts,
                   "_file": path.name}

    # -- justice_csv -------------------------------------------------------------------------

    def _parse_justice_csv(self, path: Path) -> Iterator[dict[str, Any]]:
        encoding = self._encoding_of(path)
        with path.open("rb") as f:
            lines = (decode_legacy(line, encoding) for line in f)
            reader = csv.reader(lines, delimiter=";")
            header = next(reader, None)
            if header is None:
                raise FileRejected("empty file")
            columns = [_fold(name.lstrip("\ufeff")) for name in header]
            wanted = {_fold(name): field for name, field in JUSTICE_COLUMNS.items()}
            missing = [name for name in _JUSTICE_REQUIRED if _fold(name) not in columns]
            if missing:
                raise FileRejected(f"missing column(s) {', '.join(missing)} ({encoding})")
            index = [(i, wanted[name]) for i, name in enumerate(columns) if name in wanted]
            for line_no, values in enumerate(reader, start=2):
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(columns):
                    raise FileRejected(f"line {line_no}: {len(values)} fields, header has "
                                       f"{len(columns)}")
                yield _justice_dossier({field: _text(values[i]) for i, field in index})

    def _encoding_of(self, path: Path) -> str:
        declared = self.encodings.get(path.name)
        sidecar = path.with_name(path.name + ".encoding")
        if declared is None and sidecar.exists():
            declared = sidecar.read_text(encoding="ascii").strip().lower()
            if declared not in ENCODINGS:  # checked here too: a sidecar is typed by hand
                raise FileRejected(f"{sidecar.name} declares {declared!r}, not one of "
                                   f"{', '.join(ENCODINGS)}")
        if declared is not None:
            return declared
        with path.open("rb") as f:
            sample = f.read(_DETECT_SAMPLE)
            if f.read(1):  # cut at a line end, never inside a VNI letter's two bytes
                sample = sample[: sample.rfind(b"\n") + 1] or sample
        detected = detect_legacy_encoding(sample)
        log.debug("%s: %s declares no encoding; detected %s", self.source, path.name, detected)
        return detected


# -- helpers ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileRejected | LegacyEncodingError):
        return one_line(exc)
    if isinstance(exc, zipfile.BadZipFile | InvalidFileException):
        return one_line(f"not a readable xlsx workbook ({exc})")
    if isinstance(exc, ParseError):
        return one_line(f"damaged XML inside the workbook ({exc})")
    return one_line(f"{type(exc).__name__}: {exc}")


def _fold(text: str) -> str:
    """A header as compared: NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _text(value: object) -> str:
    """A cell as the portal writes values: a string, NFC, trimmed; whole numbers without `.0`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.strftime("%Y%m%d%H%M%S")
    return unicodedata.normalize("NFC", str(value)).strip()


def _cell(field: str, value: object) -> str | float:
    """A cell of `field` as `_text` writes it, but an amount's fractional number stays a float
    (`to_portal_amount`): as text, 50.125 would read as 50 125 đồng."""
    if field in PORTAL_AMOUNT_FIELDS and isinstance(amount := to_portal_amount(value), float):
        return amount
    return _text(value)


def _sheet_records(path: Path, headers: dict[str, str], *,
                   on_title: Callable[[list[str]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Rows under the header row of the first sheet, as {field: raw cell value}; read-only streaming.

    `on_title` sees the non-empty cells of each row above the header row. Raises FileRejected when no row of the
    first `_HEADER_SCAN_ROWS` holds all `headers`.
    """
    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        wanted = {_fold(name): field for name, field in headers.items()}
        index: list[tuple[int, str]] | None = None
        for _ in range(_HEADER_SCAN_ROWS):
            cells = next(rows, None)
            if cells is None:
                break
            folded = [_fold(str(c)) if c is not None else "" for c in cells]
            if set(wanted) <= set(folded):
                index = [(folded.index(name), field) for name, field in wanted.items()]
                break
            if on_title is not None:
                on_title([str(c) for c in cells if c is not None])
        if index is None:
            raise FileRejected(f"no header row with {', '.join(headers)} in the first "
                               f"{_HEADER_SCAN_ROWS} rows of sheet {workbook.sheetnames[0]!r}")
        for cells in rows:
            yield {field: cells[i] if i < len(cells) else None for i, field in index}
    finally:
        workbook.close()


def _count(value: object) -> object:
    """A count cell → int; anything else (text, fractions) as written, for quality to judge."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = _text(value)
    return int(text) if text.isdigit() else text


def _portal_date(value: object) -> str:
    """A date cell or `dd/mm/yyyy[ HH:MM[:SS]]` text → `yyyyMMddHHmmss`; other text unchanged."""
    text = _text(value)
    match = _VN_DATE.match(text)
    if match is None:
        return text
    day, month, year, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second).strftime("%Y%m%d%H%M%S")
    except ValueError:
        return text  # not a real date: left as written, the transform reports it


def _agency_code(value: object) -> str:
    text = _text(value)
    match = _AGENCY_CODE.search(text)
    return match[0] if match else text


def _scope_code(value: object) -> str:
    text = _text(value)
    folded = _fold(text).removeprefix("cấp ").strip()
    for code, name in SCOPE_NAMES.items():
        if folded == _fold(name):
            return code
    return text


def _justice_dossier(row: dict[str, str | float]) -> dict[str, Any]:
    record: dict[str, Any] = {field: "" for field in JUSTICE_COLUMNS.values()}
    record.update({field: "" for field in _PORTAL_TEXTS})
    record.update({field: [] for field in _PORTAL_LISTS})
    for field, value in row.items():
        record[field] = _portal_date(value) if field in JUSTICE_DATE_FIELDS else value
    fee = record["DanhSachLePhi"]
    record["DanhSachLePhi"] = (
        [{"TenPhiLePhi": "Lệ phí", "MaPhiLePhi": "", "HinhThucThu": "", "Gia": fee,
          "LoaiPhiLePhi": ""}]
        if fee != "" else []
    )
    record["DonViXuLy"] = JUSTICE_AGENCY
    return record


# -- public helpers: the drop layouts for other readers of the same files (exchange/validate.py) --

# What reading a damaged xlsx or CSV raises (see `unreadable_reason` for its one-line reason).
UNREADABLE_ERRORS = _UNREADABLE


def unreadable_reason(exc: BaseException) -> str:
    """One line saying why a drop file could not be read (as written to `<name>.reason.txt`)."""
    return _reason(exc)


def header_fields(header: Iterable[object], headers: Mapping[str, str]) -> list[str | None]:
    """The field of each header cell per `headers` (Vietnamese name → field), None for the others.

    Names are compared as the connector compares them: NFC, case-folded, whitespace collapsed, a
    leading BOM ignored.
    """
    wanted = {_fold(name): field for name, field in headers.items()}
    return [wanted.get(_fold(str(cell).lstrip("\ufeff"))) if cell is not None else None
            for cell in header]


def cell_text(value: object) -> str:
    """A cell as the portal writes values: a string, NFC, trimmed; whole numbers without `.0`;
    dates as `yyyyMMddHHmmss`."""
    return _text(value)


def cell_value(field: str, value: object) -> str | float:
    """A cell of portal field `field` as the connector reads it: `cell_text`, except that an
    amount field's fractional number stays a float, for the transform to refuse."""
    return _cell(field, value)


def justice_dossier(row: Mapping[str, object]) -> dict[str, Any]:
    """One row of the Department of Justice export, keyed by portal field (`JUSTICE_COLUMNS`
    values), → a portal-shaped dossier, exactly as the `justice_csv` stream yields it."""
    return _justice_dossier({field: _cell(field, value) for field, value in row.items()})


def catalogue_procedure(cells: Mapping[str, object]) -> dict[str, Any] | None:
    """One row of the catalogue sheet, keyed by portal field (`CATALOGUE_HEADERS` values), → a
    portal-shaped procedure, exactly as the `procedure_catalogue` stream yields it; None for a
    blank row."""
    row = {field: _cell(field, value) for field, value in cells.items()}
    if all(value == "" for value in row.values()):
        return None
    published = _portal_date(row.get("NgayCongBo", ""))
    level = row.get("MucDo", "")
    return {
        **row,
        "MaCoQuanThucHien": _agency_code(row.get("MaCoQuanThucHien", "")),
        "CapThucHien": _scope_code(row.get("CapThucHien", "")),
        "NgayCongBo": published,
        "NgayBaiBo": "",
        "NgayCapNhat": "",
        "LichSuMucDo": [{"MucDo": level, "TuNgay": published}] if level and published else [],
    }
