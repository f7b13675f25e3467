"""Connector of the file drops: procedure catalogue and commune reports (xlsx), Justice CSV exports."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
import unicodedata
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any, ClassVar
from xml.etree.ElementTree import ParseError

from lxml import etree
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.workbook.workbook import Workbook

from connectors.base import PORTAL_AMOUNT_FIELDS, Connector, StreamSpec, Window, iter_chunks
from connectors.errors import SourceProtocolError, one_line
from transforms.amounts import to_portal_amount
from transforms.codes import AGENCY_CODE
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
    "MAX_LINE_BYTES",
    "MAX_NAME_BYTES",
    "MAX_XLSX_MEMBERS",
    "MAX_XLSX_UNCOMPRESSED",
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
    "open_workbook",
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
_SIDECAR_BYTES = 64  # an encoding sidecar holds one word

# Limits on hostile files, checked before a byte of content is parsed. A CSV line (between line
# ends) longer than MAX_LINE_BYTES is refused: the csv module's own limit on a field is 128 KiB
# (`csv.field_size_limit()`), and no line of an export is near a megabyte. A workbook is opened
# only if its zip directory lists at most MAX_XLSX_MEMBERS parts that inflate to at most
# MAX_XLSX_UNCOMPRESSED bytes in all (zipfile never inflates a part past its listed size, so the
# directory is what bounds memory: openpyxl holds the shared strings whole). A catalogue of 2,000
# procedures is about 2 MB unpacked.
MAX_LINE_BYTES = 1 << 20
MAX_XLSX_MEMBERS = 10_000
MAX_XLSX_UNCOMPRESSED = 128 << 20
# A dropped file's name is stored as `archive/<sha256>__<name>.encoding` at most: within the 255
# bytes a file name may take, that leaves MAX_NAME_BYTES for the name as dropped.
MAX_NAME_BYTES = 180
# Characters a file name may not hold: control characters (a newline breaks every log and summary
# line), format characters (a right-to-left override or a zero-width space shows one name and is
# another), undecodable bytes (surrogates), private use, line and paragraph separators.
_UNSHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})

# What reading a broken drop file raises: zip and XML damage (zlib.error: a damaged compressed
# part; openpyxl parses worksheets with expat, the other parts with lxml), wrong sheet shape, bad bytes.
_UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, InvalidFileException, ParseError,
               etree.XMLSyntaxError, KeyError, ValueError, TypeError, IndexError, csv.Error, OSError, EOFError,
               RuntimeError)


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
    be read again. `processed`, `skipped` and `rejected` list the files' original paths (a name
    refused as unprintable is listed escaped, as it is kept in `rejected/`); `reasons` gives each
    rejected one's reason. The window of `read` is ignored: a drop is read whole.

    Hostile drops (docs/hostile_input.md): a file modified less than `stable_seconds` ago (the
    pipeline passes LIENTHONG_FILE_STABLE_SECONDS), or whose size or time changes while it is
    checked, is still being written: it is not read this run and stays where it is, listed in
    `waiting`. A symbolic link is never followed: it is rejected (the link moved, not its target).
    A name holding a control or format character (a newline, a right-to-left override, a
    zero-width space) or an undecodable byte, or longer than MAX_NAME_BYTES, is rejected before
    anything else: it is kept in `rejected/` under its name escaped (`\\u202e`, `\\xff`) and cut,
    so that no summary, log line or folder listing shows a name other than the file's.
    Other entries that are not regular files (folders, FIFOs, devices) are not touched. Limits:
    `MAX_LINE_BYTES` for a CSV line, `MAX_XLSX_MEMBERS` and `MAX_XLSX_UNCOMPRESSED` for a
    workbook; a NUL byte in a CSV refuses it; formulas in a workbook are read as their text
    (`open_workbook`), never evaluated.
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
        stable_seconds: float = 0.0,
        agency: str | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"{self.source}: chunk_size must be at least 1, got {chunk_size}")
        if stable_seconds < 0:
            raise ValueError(f"{self.source}: stable_seconds must be at least 0, got {stable_seconds}")
        for name, encoding in (encodings or {}).items():
            if encoding not in ENCODINGS:
                raise ValueError(f"{self.source}: encoding {encoding!r} of {name} is not one of "
                                 f"{', '.join(ENCODINGS)}")
        if agency is not None and not AGENCY_CODE.match(agency):
            raise ValueError(f"{self.source}: agency {agency!r} of drop folder {folder} is not an agency code "
                             "(NNN.NN.NN.XNN, e.g. 000.00.04.H62)")
        # The folder of one agency (several drop folders each name theirs): its batches, state and
        # lock are its own (`file_drop:<agency>`), so agencies' drops load side by side.
        if agency:
            self.source = f"{self.source}:{agency}"  # type: ignore[misc]
        self.folder = Path(folder)
        self.archive = Path(archive) if archive is not None else self.folder / "archive"
        self.rejected_dir = Path(rejected) if rejected is not None else self.folder / "rejected"
        self.chunk_size = chunk_size
        self.encodings = dict(encodings or {})
        self.stable_seconds = stable_seconds
        self.processed: list[Path] = []
        self.skipped: list[Path] = []
        self.waiting: list[Path] = []  # still being written: left for the next run
        self.rejected: list[Path] = []
        self.reasons: dict[Path, str] = {}  # rejected file → its one-line reason
        self._pending: dict[Path, str] = {}  # read, not yet archived: path → sha256
        self._journal: Path | None = None  # the journal `prepare_files` wrote for them
        # Whether a batch is loaded in the warehouse (the runner sets it): a journal of a batch that
        # is not is forgotten, not finished. None: every journal is finished.
        self.batch_loaded: Callable[[str], bool] | None = None

    # -- the contract ------------------------------------------------------------------------

    def read(self, stream: str, window: Window | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield chunks of at most `chunk_size` records of `stream`, from every matching file."""
        spec = self.stream(stream)
        return iter_chunks(self._iter_stream(spec.name), self.chunk_size)

    def prepare_files(self, batch_id: str) -> None:
        """Journal the files read since the last commit as `batch_id`'s, before its COMMIT.

        The journal (`archive/.archiving-<id>.json`, written atomically) lists them with the batch
        that loads them; `commit_files` moves them and removes it. A run killed between the
        batch's COMMIT and the last move leaves it behind, and the next run finishes or forgets
        it by what the warehouse says of the batch (`_finish_archiving`): the COMMIT alone decides
        whether the files count as loaded.
        """
        pending = list(self._pending.items())
        if pending:
            self.archive.mkdir(parents=True, exist_ok=True)
            self._journal = self._write_journal(pending, batch_id)

    def commit_files(self) -> list[Path]:
        """Move the files read since the last commit to `archive/<sha256>__<name>`; their new paths.

        Run it after the batch loaded: until then the files stay where they were dropped. A
        sidecar `<name>.encoding` moves with its file. The moves are journalled (`prepare_files`,
        or here when the caller did not prepare them), the journal removed after the last move:
        no file of a loaded batch is read again, no sidecar left behind.
        """
        self.archive.mkdir(parents=True, exist_ok=True)
        pending = list(self._pending.items())
        journal, self._journal = self._journal, None
        if journal is None and pending:
            journal = self._write_journal(pending, None)
        moved = []
        for path, digest in pending:
            target = self.archive / f"{digest}__{path.name}"
            shutil.move(path, target)
            sidecar = path.with_name(path.name + ".encoding")
            if sidecar.exists():
                shutil.move(sidecar, target.with_name(target.name + ".encoding"))
            del self._pending[path]  # one by one: a retry after a failed move resumes, not restarts
            moved.append(target)
            log.info("%s: archived %s as %s", self.source, path.name, target.name)
        if journal is not None:
            journal.unlink(missing_ok=True)
        return moved

    def _write_journal(self, pending: list[tuple[Path, str]], batch_id: str | None) -> Path:
        """`archive/.archiving-<id>.json`: the batch, and the [name, sha256] of its files."""
        journal = self.archive / f".archiving-{uuid.uuid4().hex}.json"
        partial = journal.with_name(journal.name + ".tmp")
        with partial.open("w", encoding="utf-8") as f:
            json.dump({"batch_id": batch_id, "files": [[path.name, digest] for path, digest in pending]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, journal)  # whole or absent: a kill while writing leaves only the .tmp
        return journal

    def _finish_archiving(self) -> None:
        """Finish the archiving a killed run left half done, or forget it, as its journal says.

        A journal whose batch is not `loaded` (`batch_loaded`: the run died before or during its
        COMMIT) is removed, and its files stay to be read again. Otherwise each listed file still
        in the drop folder with the listed checksum is moved to the archive, and a sidecar left
        behind joins its archived file; a file since replaced by other content stays, to be read.
        """
        for partial in self.archive.glob(".archiving-*.json.tmp"):
            partial.unlink()  # a journal never completed: its batch never reached its COMMIT
        for journal in sorted(self.archive.glob(".archiving-*.json")):
            entry = json.loads(journal.read_text(encoding="utf-8"))
            batch_id, files = (entry.get("batch_id"), entry["files"]) if isinstance(entry, dict) else (None, entry)
            if batch_id is not None and self.batch_loaded is not None and not self.batch_loaded(batch_id):
                log.info("%s: batch %s of a run that stopped was not loaded: its %d file(s) are read again",
                         self.source, batch_id, len(files))
                journal.unlink()
                continue
            for name, digest in files:
                path, target = self.folder / name, self.archive / f"{digest}__{name}"
                if path.is_file() and not path.is_symlink() and _sha256(path) == digest:
                    shutil.move(path, target)
                    log.info("%s: archived %s as %s (left by a run that stopped)", self.source, name,
                             target.name)
                sidecar = self.folder / f"{name}.encoding"
                archived_sidecar = target.with_name(target.name + ".encoding")
                if target.exists() and os.path.lexists(sidecar) and not os.path.lexists(archived_sidecar):
                    shutil.move(sidecar, archived_sidecar)
            journal.unlink()

    def reports_read(self) -> list[tuple[str, str, str]]:
        """(commune code, month, file name) of the commune reports read and not yet archived.

        A report with no procedure row yields no record; this still says it was sent.
        """
        return [(match["commune"], match["month"], path.name) for path in self._pending
                if (match := _REPORT_NAME.match(path.name))]

    # -- files -------------------------------------------------------------------------------

    def files_ready(self, stream: str) -> list[Path]:
        """The files of `stream` that a read would take now: not those still being written."""
        return [path for path in self._files(stream) if path.is_symlink() or not self._settling(path)]

    def _files(self, stream: str) -> list[Path]:
        """Regular files and symbolic links at the top of the folder matching `stream`'s names."""
        if not self.folder.is_dir():
            raise SourceProtocolError(self.source, str(self.folder), "drop folder does not exist")
        patterns = self.patterns[stream]
        return sorted(
            path for path in self.folder.iterdir()
            if any(fnmatch(path.name.lower(), p) for p in patterns)
            and (stat.S_ISREG(mode := path.lstat().st_mode) or stat.S_ISLNK(mode))
        )

    def _settling(self, path: Path) -> bool:
        """Modified less than `stable_seconds` ago, or after now: a writer (or file server) whose
        clock is ahead gives times in the future while it writes, and such a file is not trusted
        to be whole until the clock has passed them by `stable_seconds` (0: no wait at all)."""
        return self.stable_seconds > 0 and time.time() - path.lstat().st_mtime < self.stable_seconds

    def _archived(self) -> set[str]:
        """The checksums of the files in the archive (once a half-done archiving is finished)."""
        if not self.archive.is_dir():
            return set()
        self._finish_archiving()
        return {
            name.split("__", 1)[0] for name in (p.name for p in self.archive.iterdir())
            if re.match(r"^[0-9a-f]{64}__", name)
        }

    def _iter_stream(self, stream: str) -> Iterator[dict[str, Any]]:
        archived = self._archived()
        parse = getattr(self, f"_parse_{stream}")
        for path in self._files(stream):
            problem = _name_problem(path.name)
            if problem is not None:
                self._reject(path, FileRejected(problem), name=_shown_name(path.name))
                continue
            if path.is_symlink():
                self._reject(path, FileRejected(f"a symbolic link (to {os.readlink(path)}): links "
                                                "are not followed"))
                continue
            if self._settling(path):
                self._wait(path, f"modified less than {self.stable_seconds:g} s ago, or in the future")
                continue
            before = _snapshot(path)
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
                if _snapshot(path) != before:
                    self._wait(path, "changed while checked")
                else:
                    self._reject(path, exc)
                continue
            if _snapshot(path) != before:
                self._wait(path, "changed while checked")
                continue
            count = 0
            try:
                for record in parse(path):
                    count += 1
                    yield record
            except _UNREADABLE as exc:  # changed on disk between the two passes
                raise SourceProtocolError(self.source, path.name,
                                          f"became unreadable while read: {_reason(exc)}") from exc
            if _snapshot(path) != before:  # its records are in the batch: fail it, keep the file
                raise SourceProtocolError(self.source, path.name, "changed while read")
            log.info("%s: %s read, %d records", self.source, path.name, count)
            self.processed.append(path)
            self._pending[path] = digest

    def _wait(self, path: Path, why: str) -> None:
        log.info("%s: %s not read this run, still being written (%s)", self.source, path.name, why)
        self.waiting.append(path)

    def _reject(self, path: Path, exc: BaseException, *, name: str | None = None) -> None:
        """Move `path` (and its sidecar) to `rejected/<name>` with `<name>.reason.txt`.

        `name`: the name to keep it under and to report, when its own cannot be shown
        (`_shown_name`); `rejected` and `reasons` then list the path under that name.
        """
        reason = _reason(exc)
        name = name or path.name
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        target = self.rejected_dir / name
        if os.path.lexists(target):
            digest = (hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest() if path.is_symlink()
                      else _sha256(path))
            target = self.rejected_dir / f"{digest[:12]}__{name}"
        shutil.move(path, target)  # a symbolic link moves as a link
        sidecar = path.with_name(path.name + ".encoding")
        if os.path.lexists(sidecar):
            shutil.move(sidecar, target.with_name(target.name + ".encoding"))
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
        log.warning("%s: %s rejected: %s", self.source, name, reason)
        listed = path.with_name(name)
        self.rejected.append(listed)
        self.reasons[listed] = reason

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
            reader = csv.reader(_text_lines(f, encoding), delimiter=";")
            try:
                header = next(reader, None)
                if header is None:
                    raise FileRejected("empty file")
                columns = [_fold(name.lstrip("\ufeff")) for name in header]
                wanted = {_fold(name): field for name, field in JUSTICE_COLUMNS.items()}
                missing = [name for name in _JUSTICE_REQUIRED if _fold(name) not in columns]
                if missing:
                    raise FileRejected(f"missing column(s) {', '.join(missing)} ({encoding})")
                index = [(i, wanted[name]) for i, name in enumerate(columns) if name in wanted]
                for values in reader:
                    if not any(v.strip() for v in values):
                        continue
                    if len(values) != len(columns):
                        raise FileRejected(f"line {reader.line_num}: {len(values)} fields, header has "
                                           f"{len(columns)}")
                    yield _justice_dossier({field: _text(values[i]) for i, field in index})
            except csv.Error as exc:  # a field over csv.field_size_limit(), a quote left open
                raise FileRejected(f"line {reader.line_num}: {exc}") from None

    def _encoding_of(self, path: Path) -> str:
        declared = self.encodings.get(path.name)
        sidecar = path.with_name(path.name + ".encoding")
        if declared is None and os.path.lexists(sidecar):
            if not stat.S_ISREG(sidecar.lstat().st_mode):  # a link to /dev/zero is never read
                raise FileRejected(f"{sidecar.name} is not a regular file")
            with sidecar.open("rb") as f:
                word = f.read(_SIDECAR_BYTES + 1)
            declared = word.decode("ascii", errors="replace").strip().lower()
            if declared not in ENCODINGS:  # checked here too: a sidecar is typed by hand
                raise FileRejected(f"{sidecar.name} declares {declared[:_SIDECAR_BYTES]!r}, not one "
                                   f"of {', '.join(ENCODINGS)}")
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


def _name_problem(name: str) -> str | None:
    """Why a dropped file's name is refused (see FileDropConnector), or None for a good name."""
    for char in name:
        if unicodedata.category(char) in _UNSHOWN_CATEGORIES:
            what = (f"the byte 0x{ord(char) - 0xDC00:02X}, not UTF-8" if 0xDC80 <= ord(char) <= 0xDCFF
                    else f"U+{ord(char):04X} {unicodedata.name(char, '(a control character)')}")
            return f"the file name holds {what}: rename the file"
    size = len(os.fsencode(name))
    if size > MAX_NAME_BYTES:
        return f"the file name is {size} bytes long, more than {MAX_NAME_BYTES}: rename the file"
    return None


def _shown_name(name: str) -> str:
    """`name` with each character `_name_problem` refuses escaped (`\\u202e`, `\\xff` for an
    undecodable byte), cut to MAX_NAME_BYTES bytes (its end kept: the extension)."""
    shown = "".join(
        (f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}")
        if unicodedata.category(c) in _UNSHOWN_CATEGORIES else c
        for c in name)
    if len(shown.encode()) <= MAX_NAME_BYTES:
        return shown
    tail = shown[-16:]
    head = shown.encode()[: MAX_NAME_BYTES - len(tail.encode()) - len("…".encode())].decode(errors="ignore")
    return head + "…" + tail


def _snapshot(path: Path) -> tuple[int, int]:
    """Size and modification time (ns): what changes while a file is being written."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _text_lines(f: IO[bytes], encoding: str) -> Iterator[str]:
    """The lines of a CSV decoded, each read with a bound: at most MAX_LINE_BYTES, no NUL byte."""
    for line_no, line in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), start=1):
        if len(line) > MAX_LINE_BYTES:
            raise FileRejected(f"line {line_no} is longer than {MAX_LINE_BYTES} bytes")
        if b"\x00" in line:
            raise FileRejected(f"line {line_no}: a NUL byte at offset {line.index(0)} (a binary file?)")
        try:
            yield decode_legacy(line, encoding)
        except LegacyEncodingError as exc:
            raise FileRejected(f"line {line_no}: {exc}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileRejected | LegacyEncodingError):
        return one_line(exc)
    if isinstance(exc, zipfile.BadZipFile | InvalidFileException | zlib.error):
        return one_line(f"not a readable xlsx workbook ({exc})")
    if isinstance(exc, ParseError | etree.XMLSyntaxError):  # expat's (sheets), lxml's (workbook.xml)
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
    workbook = open_workbook(path)
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


def open_workbook(source: Path | IO[bytes]) -> Workbook:
    """A drop workbook opened read-only, streaming, once its zip directory is within the limits.

    Refused (FileRejected) before openpyxl parses anything: more than MAX_XLSX_MEMBERS parts, or
    parts inflating to more than MAX_XLSX_UNCOMPRESSED bytes (a zip bomb), a part twice, or an XML
    part that declares a DOCTYPE (`_refuse_doctypes`: external entities, entity bombs). Formulas are never
    evaluated: a formula cell reads as its formula text (`=1+1`, `=HYPERLINK(…)`), not as the
    value the writing program cached — so a formula in a count or a code fails that cell's rule
    and its row is quarantined, and in a name it is kept as text. External links are not loaded
    (`keep_links=False`); a cell referring to one is a formula like any other.
    """
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        if len(members) > MAX_XLSX_MEMBERS:
            raise FileRejected(f"the workbook has {len(members)} parts, more than {MAX_XLSX_MEMBERS}")
        inflated = sum(member.file_size for member in members)
        if inflated > MAX_XLSX_UNCOMPRESSED:
            largest = max(members, key=lambda member: member.file_size)
            raise FileRejected(f"the workbook inflates to {inflated} bytes, more than "
                               f"{MAX_XLSX_UNCOMPRESSED} ({largest.filename}: {largest.file_size} bytes "
                               f"from {largest.compress_size}): a zip bomb?")
        names = [member.filename for member in members]
        if len(set(names)) != len(names):  # which copy a reader takes is its own choice
            twice = next(name for name in names if names.count(name) > 1)
            raise FileRejected(f"the workbook holds the part {twice} twice")
        _refuse_doctypes(archive, members)
    if not isinstance(source, Path):
        source.seek(0)
    return load_workbook(source, read_only=True, data_only=False, keep_links=False)


_XML_PART = re.compile(r"\.(?:xml|rels|vml)$", re.IGNORECASE)


def _refuse_doctypes(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> None:
    """FileRejected when an XML part of the workbook declares a DOCTYPE.

    Excel never writes one (Open Packaging Conventions: XML parts hold no DTD), and a DOCTYPE is
    how XML attacks come: an external entity (`file:///etc/passwd`), an external DTD or parameter
    entity fetched over the network, the billion laughs. openpyxl parses worksheets with the
    standard library's expat, which fetches nothing but expands internal entities up to its
    amplification limit (tens of MB for a file of a few KB); so the prolog of each part is read
    first, by lxml up to the root element, and a part with a DOCTYPE refuses the workbook. A part
    that is not well-formed is left to openpyxl, which says so.
    """
    for member in members:
        if not _XML_PART.search(member.filename):
            continue
        with archive.open(member) as part:
            try:
                # libxml2's safe options, as the LGSP connector's: nothing fetched, no entity substituted
                for _, element in etree.iterparse(part, events=("start",), resolve_entities=False, no_network=True,
                                                  load_dtd=False, huge_tree=False):
                    info = element.getroottree().docinfo
                    if info.doctype or info.internalDTD is not None or info.system_url:
                        raise FileRejected(f"the workbook part {member.filename} declares a DOCTYPE (entities, "
                                           "an external DTD): refused unread")
                    break
            except etree.XMLSyntaxError:
                continue


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
