"""Hostile and broken input at the network entry points: `lienthong sync national-portal | lgsp | one-stop`.

Each case runs the command against a real source on loopback — a portal answering with crafted
bytes, the LGSP feed simulator serving crafted messages, a one-stop SQLite file built here — and
checks issue 10 §5: the row is quarantined with its rule id, or the batch refused with its reason
in one line (an LGSP message refused is quarantined as `message.refused: <reason>` and the feed
goes on); within a time bound, and a memory bound for the big inputs; never a traceback, a partial
load or a lost record.
"""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
import sqlalchemy as sa

from connectors.base import Window
from connectors.settings import connection_from_uri
from simulators.lgsp import (
    LgspSimulator,
    RecordingServer,
    build_billion_laughs_message,
    build_message,
    build_parameter_entity_message,
    build_xxe_message,
)
from tests.hostile.net_sources import (
    RECEIVER,
    SENDER,
    CraftedPortal,
    Outcome,
    build_onestop,
    dossier,
    measured,
    procedure,
    raw_answer,
    sync_answer,
    with_raw_field,
)
from tests.province import TEST_KEY, quarantine_rules, query_rows, settings, table_counts
from transforms.timefmt import LOCAL_TZ

PORTAL_WINDOW = ["--start", "2000-01-01", "--end", "2017-09-01"]
# A hang guard, not a speed goal: a hostile input must not stall a command (a bomb, a drip); the
# bound is loose enough for a loaded 2-core CI machine (20 s failed once with two test workers
# beside a running Airflow cluster: 22 s for a 500 kB CSV field).
SECONDS = 55
CODE_1 = f"{SENDER}-160101-00001"  # the clean dossier every case also serves
ROWS = ["fact_dossier", "fact_dossier_event", "ops_quarantine", "dim_procedure", "ops_sync_state"]


# -- the warehouse and the command -------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> str:
    """A migrated SQLite warehouse holding the samples' procedure (its dossiers pass in_catalogue)."""
    from datetime import datetime

    from pipeline.sync import sync_stream
    from warehouse.db import create_engine, upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('catalogue') / 'warehouse.db'}"
    upgrade(url)
    engine = create_engine(url)
    window = Window(datetime(2000, 1, 1, tzinfo=LOCAL_TZ), datetime(2017, 9, 1, tzinfo=LOCAL_TZ))
    try:
        with CraftedPortal({"LayDanhSachTTHC": sync_answer([procedure()])}) as portal:
            sync_stream("national_portal", "procedures", engine=engine, connection=connection_from_uri(portal.uri),
                        settings=settings(), window=window)
    finally:
        engine.dispose()
    return url


class Command:
    """`lienthong …` in this process against a fresh copy of the catalogue warehouse."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.url, self._env, self._capsys = url, monkeypatch, capsys

    def run(self, *argv: str, **connections: str) -> Outcome:
        from pipeline.cli import main

        for conn_id, uri in connections.items():
            self._env.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
        self._capsys.readouterr()
        started = time.perf_counter()
        code = main(list(argv))
        seconds = time.perf_counter() - started
        captured = self._capsys.readouterr()
        assert "Traceback" not in captured.err, captured.err
        return Outcome(code, captured.out, captured.err, seconds)

    def portal(self, dossiers: bytes) -> Outcome:
        """`sync national-portal --stream dossiers` over a backfill window, the portal answering `dossiers`."""
        with CraftedPortal({"LayDanhSachHoSo": dossiers}) as portal:
            return self.run("sync", "national-portal", "--stream", "dossiers", *PORTAL_WINDOW,
                            national_portal=portal.uri)

    def counts(self) -> dict[str, int]:
        return table_counts(self.url)

    def quarantine(self) -> dict[str, list[str]]:
        return quarantine_rules(self.url)

    def loaded(self) -> list[str]:
        return sorted(code for (code,) in query_rows(self.url, "SELECT dossier_code FROM fact_dossier"))


def _command(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Command:
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("LIENTHONG_MAX_RETRIES", "0")
    monkeypatch.setenv("LIENTHONG_HTTP_TIMEOUT", "10")
    monkeypatch.setenv("LIENTHONG_MAX_QUARANTINE_RATE", "1")  # every hostile row shows, none fails the rate
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)
    return Command(url, monkeypatch, capsys)


@pytest.fixture
def lienthong(catalogue, tmp_path, monkeypatch, capsys) -> Command:
    target = tmp_path / "warehouse.db"
    shutil.copy(sa.engine.make_url(catalogue).database, target)
    return _command(f"sqlite:///{target}", monkeypatch, capsys)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lienthong_any(request, catalogue, tmp_path, monkeypatch, capsys) -> Command:
    """The command on SQLite, and on PostgreSQL (what PostgreSQL cannot store: NUL, numeric overflow)."""
    if request.param == "sqlite":
        return request.getfixturevalue("lienthong")
    from tests.conftest import create_postgres_database
    from warehouse.db import create_engine, upgrade

    url, drop = create_postgres_database(request.getfixturevalue("postgres_admin_url"))
    request.addfinalizer(drop)
    upgrade(url)
    command = _command(url, monkeypatch, capsys)
    with CraftedPortal({"LayDanhSachTTHC": sync_answer([procedure()])}) as portal:
        assert command.run("sync", "national-portal", "--stream", "procedures", *PORTAL_WINDOW,
                           national_portal=portal.uri).code == 0
    create_engine(url).dispose()
    return command


def assert_refused(command: Command, before: dict[str, int], outcome: Outcome, reason: str) -> None:
    """The batch failed with `reason` in one line and is recorded failed; nothing else changed."""
    assert outcome.code == 1
    line = outcome.error
    # where: the page that broke the contract, or the stream when a record breaks it
    assert re.match(r"lienthong: error: national_portal LayDanhSachHoSo( page 1)?: ", line), line
    assert reason in line, line
    after = command.counts()
    assert {t: after[t] for t in ROWS} == {t: before[t] for t in ROWS}  # nothing partial
    assert after["ops_batch"] == before["ops_batch"] + 1
    (error,) = query_rows(command.url, "SELECT error FROM ops_batch WHERE status = 'failed'")[0]
    assert reason in error and "\n" not in error
    assert outcome.seconds < SECONDS


# -- the national portal: an answer out of contract fails the batch, cleanly ------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


ANSWERS_OUT_OF_CONTRACT = {
    "json-nested-1e5-deep": (
        raw_answer(with_raw_field(dossier(1), "TaiLieuNop", _nested(100_000))),
        "JSON answer refused: nested deeper than 64 levels"),
    "json-nested-900-deep": (  # decodes, but would exhaust the recursion of what prints it later
        raw_answer(with_raw_field(dossier(1), "TaiLieuNop", _nested(900))),
        "JSON answer refused: nested deeper than 64 levels"),
    "duplicate-keys": (
        raw_answer(with_raw_field(dossier(1), "MaHoSo", b'"' + f"{SENDER}-160101-00002".encode() + b'"')),
        "JSON answer refused: duplicate key 'MaHoSo' in an object"),
    "result-an-object": (
        b'{"error_code": "00", "tongso": 1, "result": {"MaHoSo": "x"}}',
        "'result' is a JSON object, not a list of records"),
    "tongso-a-word": (sync_answer([dossier(1)], total="một"), "'tongso' is not a count: 'một'"),
    "tongso-400-digits-as-text": (sync_answer([dossier(1)], total="1" + "0" * 400), "'tongso' is not a count"),
    "tongso-beyond-any-province": (sync_answer([dossier(1)], total=10**12), "'tongso' 1000000000000 is beyond"),
    "a-record-that-is-a-list": (
        sync_answer([dossier(1), [dossier(2)]]), "'result' record 2 is a JSON array, not an object"),
    "a-number-1e999": (
        raw_answer(with_raw_field(dossier(1), "LePhi", b"1e999")),
        "JSON answer refused: number 1e999 is out of range (not a finite double)"),
    "an-integer-of-400-digits": (
        raw_answer(with_raw_field(dossier(1), "LePhi", b"1" + b"0" * 400)),
        "JSON answer refused: integer of 401 digits is out of range (not a 64-bit integer)"),
    "tongso-an-integer-of-400-digits": (
        raw_answer(json.dumps(dossier(1)).encode(), total=b"1" + b"0" * 400),
        "JSON answer refused: integer of 401 digits is out of range"),
    "nan-literal": (
        raw_answer(with_raw_field(dossier(1), "LePhi", b"NaN")), "JSON answer refused: NaN is not a JSON number"),
    "infinity-literal": (
        raw_answer(with_raw_field(dossier(1), "LePhi", b"-Infinity")),
        "JSON answer refused: -Infinity is not a JSON number"),
    "invalid-utf8-bytes": (
        sync_answer([dossier(1, TrichYeuHoSo="@@@@")]).replace(b"@@@@", b"\xff\xfe\xc3("),
        "response is not JSON (invalid UTF-8 at byte"),
    "a-record-updated-in-2199": (  # its NgayCapNhat would become the watermark: no window after it
        sync_answer([dossier(1), dossier(2, NgayCapNhat="21991231235959")]),
        "record 2 (MaHoSo '000.00.04.H62-160101-00002') has NgayCapNhat 21991231235959, outside the window "
        "asked for (20000101000000 to 20170901000000)"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(ANSWERS_OUT_OF_CONTRACT))
def test_a_portal_answer_out_of_contract_fails_the_batch_in_one_line(lienthong, case):
    body, reason = ANSWERS_OUT_OF_CONTRACT[case]
    before = lienthong.counts()
    assert_refused(lienthong, before, lienthong.portal(body), reason)


# -- the national portal: a record with a bad value is quarantined -----------------------------------


QUARANTINED_RECORDS = {
    "mahoso-a-number": (dossier(2, MaHoSo=12345), "12345", ["dossier_code.pattern"]),
    "mahoso-null": (dossier(2, MaHoSo=None), "", ["dossier_code.required", "source_record_id.required"]),
    "mahoso-an-object": (dossier(2, MaHoSo={"$ne": ""}), "{'$ne': ''}", ["dossier_code.pattern"]),
    "mahoso-sql": (dossier(2, MaHoSo="x' OR '1'='1"), "x' OR '1'='1", ["dossier_code.pattern"]),
    "mahoso-right-to-left-override": (
        dossier(2, MaHoSo=f"\u202e{SENDER}-160101-00002"), f"\u202e{SENDER}-160101-00002", ["dossier_code.pattern"]),
    "mahoso-with-a-nul": (dossier(2, MaHoSo="000.00.04.H62-160101-0\x0002"), "000.00.04.H62-160101-0\\u000002",
                          ["dossier_code.pattern"]),
    "received-in-year-1": (
        dossier(2, NgayTiepNhan="00010101000000"), f"{SENDER}-160101-00002", ["received_at.valid_datetime"]),
    "due-in-year-9999": (
        dossier(2, NgayHenTra="99991231235959"), f"{SENDER}-160101-00002", ["due_at.valid_datetime"]),
    "status-of-19-digits": (
        dossier(2, TrangThaiHoSo=9223372036854775807), f"{SENDER}-160101-00002", ["status.in_codelist"]),
    "fee-beyond-numeric-14-2": (dossier(2, LePhi="1.000.000.000.000"), f"{SENDER}-160101-00002", ["fee.valid_amount"]),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(QUARANTINED_RECORDS))
def test_a_portal_record_with_a_bad_value_is_quarantined_with_its_rule(lienthong_any, case):
    record, key, rules = QUARANTINED_RECORDS[case]
    outcome = lienthong_any.portal(sync_answer([dossier(1), record]))
    assert outcome.code == 0, outcome.err
    assert "read 2, loaded 1 (0 duplicates merged), quarantined 1" in outcome.out
    assert lienthong_any.loaded() == [CODE_1]
    assert lienthong_any.quarantine() == {key: rules}
    assert outcome.seconds < SECONDS


@pytest.mark.timeout(60)
def test_sql_right_to_left_zero_width_and_nul_text_is_stored_as_text(lienthong_any):
    texts = {
        2: "'); DROP TABLE fact_dossier; --",
        3: "\u202eTrích yếu\u200b đảo chiều\u2066x\u2069",
        4: "Trích\x00yếu\x1b[31m đỏ",  # PostgreSQL cannot store the NUL: folded away like a space
    }
    outcome = lienthong_any.portal(sync_answer([dossier(1)] + [dossier(n, TrichYeuHoSo=t) for n, t in texts.items()]))
    assert outcome.code == 0, outcome.err
    assert "read 4, loaded 4" in outcome.out
    summaries = dict(query_rows(lienthong_any.url, "SELECT dossier_code, summary FROM fact_dossier"))
    assert summaries[f"{SENDER}-160101-00002"] == texts[2]
    assert summaries[f"{SENDER}-160101-00003"] == texts[3]
    assert summaries[f"{SENDER}-160101-00004"] == "Trích yếu [31m đỏ"
    assert lienthong_any.counts()["fact_dossier"] == 4  # the table is still there


@pytest.mark.timeout(60)
def test_a_10_mb_string_field_is_loaded_within_time_and_memory(lienthong):
    summary = "Đề nghị " + "x" * 10_000_000
    body = sync_answer([dossier(1, TrichYeuHoSo=summary)])
    with measured() as cost:
        outcome = lienthong.portal(body)
    assert outcome.code == 0, outcome.err
    (stored,) = query_rows(lienthong.url, "SELECT length(summary) FROM fact_dossier")[0]
    assert stored == len(summary)
    assert cost["seconds"] < 45
    assert cost["peak"] < 50 * len(body), f"peak {cost['peak'] / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB answer"


# -- the LGSP feed: a refused message is quarantined, the feed goes on -------------------------------


def _lgsp(*records: dict, message_id: str) -> bytes:
    return build_message(list(records), SENDER, RECEIVER, message_id)


GOOD_MESSAGE = _lgsp(dossier(1), message_id="m-good")


def _envelope(body: bytes, message_id: str = "m-hostile") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Message xmlns="urn:lienthong:lgsp:v1"><Header>'
            f"<MessageId>{message_id}</MessageId><From><OrganId>{SENDER}</OrganId></From>"
            f"<To><OrganId>{RECEIVER}</OrganId></To><CreatedAt>2017-01-01T08:00:00+07:00</CreatedAt></Header>"
            ).encode() + b"<Body>" + body + b"</Body></Message>"


REFUSED_MESSAGES = {
    "xxe-file": (build_xxe_message("file:///etc/passwd"), "external entity declared"),
    "external-dtd": (GOOD_MESSAGE.replace(b"?>\n", b'?>\n<!DOCTYPE Message SYSTEM "http://127.0.0.1:9/x.dtd">\n', 1),
                     "external DTD declared"),
    "billion-laughs": (build_billion_laughs_message(depth=10, width=10), "entity expansion refused"),
    "xinclude": (
        GOOD_MESSAGE.replace(b"<TrichYeuHoSo>", b'<TrichYeuHoSo><xi:include xmlns:xi="http://www.w3.org/2001/XInclude"'
                             b' href="file:///etc/passwd" parse="text"/>'),
        "schema: element 'TrichYeuHoSo': Element content is not allowed, because the type definition is simple."),
    "invalid-utf8": (GOOD_MESSAGE.replace("Đăng ký mới".encode(), b"\xff\xfe\xc3("),
                     "malformed XML: Invalid bytes in character encoding"),
    "nul-byte": (GOOD_MESSAGE.replace("Đăng ký mới".encode(), b"a\x00b"), "malformed XML: PCDATA invalid Char value 0"),
    "field-of-10-mb": (
        _lgsp(dossier(1, TrichYeuHoSo="x" * 10_000_000), message_id="m-big"),
        "schema: element 'TrichYeuHoSo': [facet 'maxLength'] The value has a length of '10000000'; this exceeds "
        "the allowed maximum length of '4000'."),
    "elements-nested-1e5-deep": (
        _envelope(b"<Dossier><MaHoSo>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</MaHoSo></Dossier>"),
        "schema: element 'MaHoSo': Element content is not allowed, because the type definition is simple."),
    "body-nested-1e5-deep": (
        _envelope(b"<x>" * 100_000 + b"</x>" * 100_000),
        "schema: element 'x': This element is not expected. Expected is ( Dossier )."),
}


def _sync_lgsp(command: Command, messages: list[bytes]) -> tuple[Outcome, LgspSimulator]:
    with LgspSimulator(messages) as feed:
        outcome = command.run("sync", "lgsp", lgsp=feed.url)
    return outcome, feed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(REFUSED_MESSAGES))
def test_a_hostile_lgsp_message_is_quarantined_as_refused_and_the_feed_goes_on(lienthong, case):
    hostile, reason = REFUSED_MESSAGES[case]
    with measured() as cost:
        outcome, feed = _sync_lgsp(lienthong, [hostile, GOOD_MESSAGE])
    assert outcome.code == 0, outcome.err
    assert "lgsp.dossiers: read 2, loaded 1 (0 duplicates merged), quarantined 1 [message.refused 1]" in outcome.out
    assert feed.acked == 2  # acknowledged past the refused message: nothing is read again
    assert lienthong.loaded() == [CODE_1]
    ((key, rules, payload),) = query_rows(lienthong.url, "SELECT record_key, failed_rules, payload FROM ops_quarantine")
    assert json.loads(rules) == [f"message.refused: {reason}"]
    assert json.loads(payload)["cursor"] == 1 and key == json.loads(payload)["message_id"]
    assert "root:" not in payload  # /etc/passwd was never read
    assert cost["seconds"] < SECONDS
    assert cost["peak"] < 60_000_000, f"peak {cost['peak'] / 1e6:.0f} MB"  # the message is streamed, never held


@pytest.mark.timeout(60)
def test_an_lgsp_message_id_with_a_nul_is_stored_escaped(lienthong_any):
    hostile = GOOD_MESSAGE.replace(b"m-good", b"m-\x00id")  # the platform's index names it as it reads it
    outcome, _ = _sync_lgsp(lienthong_any, [hostile, GOOD_MESSAGE])
    assert outcome.code == 0, outcome.err
    refused = ["message.refused: malformed XML: PCDATA invalid Char value 0"]
    assert lienthong_any.quarantine() == {"m-\\u0000id": refused}


@pytest.mark.timeout(60)
def test_an_lgsp_external_entity_over_http_is_never_fetched(lienthong):
    with RecordingServer() as target:
        outcome, _ = _sync_lgsp(lienthong, [build_parameter_entity_message(f"{target.url}/leak.dtd"), GOOD_MESSAGE])
        time.sleep(0.05)  # a fetch, if any, would have arrived by now
        assert target.requests == []
    assert outcome.code == 0, outcome.err
    assert list(lienthong.quarantine().values()) == [["message.refused: external entity declared"]]


@pytest.mark.timeout(60)
def test_lgsp_dossiers_with_bad_values_are_quarantined_row_by_row(lienthong_any):
    dossiers = [
        dossier(1),
        dossier(2, NgayTiepNhan="00010101000000"),
        dossier(3, NgayHenTra="99991231235959"),
        dossier(4, LePhi="9" * 30),
        dossier(5, TrangThaiHoSo="9" * 100),
        dossier(6, MaHoSo="\u202e000.00.04.H62-160101-00006"),
        dossier(7, TrichYeuHoSo="'; DROP TABLE fact_dossier; -- \u200b\u202e"),
        dossier(8, QuaTrinhXuLy=[{"ThoiDiemXuLy": "00010101000000", "TrangThai": "2"},
                                 {"ThoiDiemXuLy": "20160101080000", "TrangThai": "9" * 100},
                                 {"ThoiDiemXuLy": "20160105090000", "TrangThai": "10"}]),
    ]
    outcome, feed = _sync_lgsp(lienthong_any, [_lgsp(*dossiers, message_id="m-values")])
    assert outcome.code == 0, outcome.err
    assert feed.acked == 1
    code = f"{SENDER}-160101-0000"
    assert lienthong_any.quarantine() == {
        f"{code}2": ["received_at.valid_datetime"],
        f"{code}3": ["due_at.valid_datetime"],
        f"{code}4": ["fee.valid_amount"],
        f"{code}5": ["status.in_codelist"],
        f"\u202e{code}6": ["dossier_code.pattern"],
    }
    assert lienthong_any.loaded() == [f"{code}1", f"{code}7", f"{code}8"]
    summaries = dict(query_rows(lienthong_any.url, "SELECT dossier_code, summary FROM fact_dossier"))
    assert summaries[f"{code}7"] == "'; DROP TABLE fact_dossier; -- \u200b\u202e"
    # the unreadable steps (year 1, a status of 100 digits) stay in the payload, not as events
    events = query_rows(lienthong_any.url, "SELECT dossier_code, status FROM fact_dossier_event")
    assert events == [(f"{code}8", 10)]


# -- one-stop databases: a row with a bad value is quarantined ------------------------------------------


def _onestop_rows(variant: str) -> dict[str, dict]:
    _, key, received, updated, fee, summary, status, applicant = {
        "a": ("tbl_hoso", "so_ho_so", "ngay_nhan", "ngay_cap_nhat", "le_phi", "trich_yeu", "trang_thai",
              "ten_chu_ho_so"),
        "b": ("dossier", "dossier_no", "received_at", "modified_at", "fee_total", "summary", "status", "applicant"),
    }[variant]
    return {
        "null-key": {key: None},
        "text-in-a-date-column": {received: "không phải ngày"},
        "huge-fee": {fee: 1e30},
        "huge-status": {status: "9" * 40},
        "sql-looking-key": {key: "x' OR '1'='1"},
        "sql-looking-names": {applicant: "Robert'); DROP TABLE dossier;--", summary: "1; DELETE FROM fact_dossier"},
        "right-to-left-text": {summary: "\u202eđảo chiều\u200b"},
        "received-in-year-1": {received: "0001-01-01 00:00:00"},
        "received-in-year-9999": {received: "9999-12-31 23:59:59"},
        "nul-in-text": {summary: "a\x00b"},
        "null-received": {received: None},
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", ["a", "b"])
def test_one_stop_rows_with_bad_values_are_quarantined(lienthong_any, tmp_path, variant):
    uri = build_onestop(tmp_path / "onestop.sqlite", variant, _onestop_rows(variant))
    outcome = lienthong_any.run("sync", "one-stop", "--connection", "onestop_hostile", onestop_hostile=uri)
    assert outcome.code == 0, outcome.err
    assert "read 12, loaded 4 (0 duplicates merged), quarantined 8" in outcome.out
    code = f"{SENDER}-160101-000"
    assert lienthong_any.quarantine() == {
        "": ["dossier_code.required", "source_record_id.required"],
        f"{code}03": ["received_at.valid_datetime"],
        f"{code}04": ["fee.valid_amount"],
        f"{code}05": ["status.in_codelist"],
        "x' OR '1'='1": ["dossier_code.pattern"],
        f"{code}09": ["received_at.valid_datetime"],
        f"{code}10": ["received_at.valid_datetime"],
        f"{code}12": ["received_at.required"],
    }
    assert lienthong_any.loaded() == [f"{code}01", f"{code}07", f"{code}08", f"{code}11"]
    summaries = dict(query_rows(lienthong_any.url, "SELECT dossier_code, summary FROM fact_dossier"))
    assert summaries[f"{code}07"] == "1; DELETE FROM fact_dossier"
    assert summaries[f"{code}08"] == "\u202eđảo chiều\u200b"
    assert summaries[f"{code}11"] == "a b"
    assert outcome.seconds < SECONDS
