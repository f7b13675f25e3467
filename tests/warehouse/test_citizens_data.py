"""Citizens' data (Decree 13/2023): no ID number, phone, e-mail or name of a citizen where the
reporter or an agency can read it (nor anywhere on SQLite), and a pseudonym key that rotates."""

from __future__ import annotations

import functools
import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from pipeline.cli import main
from pipeline.settings import MissingSetting, PipelineSettings
from tests.conftest import create_postgres_database
from tests.province import TEST_KEY, query_rows, run_sync
from transforms.identity import KeyChain, id_number_pseudonymise, pseudonymise
from transforms.portal import NAME_MASK, name_mask, payload_mask
from warehouse.db import create_engine
from warehouse.pseudonym import PseudonymKeyMismatch, require_key_chain, rotate_pseudonyms
from warehouse.roles import apply_roles

NEW_KEY = "citizens-test-key-2"
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")
# What a citizen's identifiers look like in text: ID numbers (9 or 12 digits, also written in
# groups of three), Vietnamese mobile numbers (10 digits; the 11-digit ones of before 2018),
# e-mail addresses. Hex digests and batch ids are letters and digits: never a match.
PATTERNS = {
    "id_number": re.compile(r"(?<![0-9A-Za-z])(?:\d{9}|\d{12}|\d{3}[ .]\d{3}[ .]\d{3}(?:[ .]\d{3})?)(?![0-9A-Za-z])"),
    "phone": re.compile(r"(?<![0-9A-Za-z])(?:0[35789]\d{8}|01\d{9})(?![0-9A-Za-z])"),
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
}
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Hit:
    """One personal value found: where, what kind, and its position (never the value itself)."""

    relation: str
    column: str
    kind: str
    row: int

    def __str__(self) -> str:
        return f"{self.relation}.{self.column} row {self.row}: {self.kind}"


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def citizen_names(dossiers: Iterable[dict]) -> frozenset[str]:
    """The simulator's own names of citizen applicants (ChuHoSo of LoaiDoiTuong 1), lower-cased."""
    return frozenset(_fold(d["ChuHoSo"]).lower() for d in dossiers
                     if str(d.get("LoaiDoiTuong")) == "1" and d.get("ChuHoSo"))


def _names_in(text: str, names: frozenset[str]) -> bool:
    """A name of `names` (two to four words) as whole words of `text`, ignoring case."""
    firsts = _first_words(names)
    words = _WORD.findall(text.lower())
    return any(" ".join(words[i:i + n]) in names
               for i, word in enumerate(words) if word in firsts for n in (2, 3, 4))


@functools.cache
def _first_words(names: frozenset[str]) -> frozenset[str]:
    return frozenset(name.split(" ", 1)[0] for name in names)


def scan(relation: str, columns: list[str], rows: Iterable[tuple], names: frozenset[str]) -> Iterator[Hit]:
    """Every personal value of `rows` (one tuple of `columns` each): patterns, then names."""
    for number, row in enumerate(rows):
        for column, value in zip(columns, row, strict=True):
            if not isinstance(value, str):  # text columns only (SQLite views may mix in numbers)
                continue
            text = _fold(value)
            for kind, pattern in PATTERNS.items():
                if pattern.search(text):
                    yield Hit(relation, column, kind, number)
            if _names_in(text, names):
                yield Hit(relation, column, "citizen name", number)


def _quoted(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def scan_all_tables(url: str, names: frozenset[str]) -> list[Hit]:
    """Every text column of every table and view of the warehouse, as its owner reads it."""
    engine = create_engine(url)
    hits: list[Hit] = []
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for relation in sorted([*inspector.get_table_names(), *inspector.get_view_names()]):
                columns = [c["name"] for c in inspector.get_columns(relation)
                           if isinstance(c["type"], sa.String | sa.JSON | sa.types.NullType)]
                if not columns:
                    continue
                select = ", ".join(_quoted(conn, c) for c in columns)
                rows = conn.exec_driver_sql(f"SELECT {select} FROM {_quoted(conn, relation)}")
                hits += scan(relation, columns, rows, names)
    finally:
        engine.dispose()
    return hits


def readable_columns(conn: sa.Connection, role: str) -> dict[str, list[str]]:
    """The text columns `role` may SELECT, by table or view of the warehouse's schema."""
    rows = conn.execute(sa.text(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "WHERE c.table_schema = current_schema() AND c.data_type = ANY(:types) "
        "AND has_column_privilege(:role, format('%I.%I', c.table_schema, c.table_name), c.column_name, 'SELECT') "
        "ORDER BY c.table_name, c.ordinal_position"), {"role": role, "types": list(TEXT_TYPES)})
    readable: dict[str, list[str]] = {}
    for table, column in rows:
        readable.setdefault(table, []).append(column)
    return readable


def scan_as(url: str, role: str, names: frozenset[str]) -> tuple[dict[str, list[str]], list[Hit], int]:
    """What `role` can read (SET ROLE: its privileges and row-level security), the personal values
    found there, and how many rows it read."""
    engine = create_engine(url)
    hits: list[Hit] = []
    read = 0
    try:
        with engine.begin() as conn:
            readable = readable_columns(conn, role)
            conn.exec_driver_sql(f"SET LOCAL ROLE {_quoted(conn, role)}")
            for relation, columns in readable.items():
                select = ", ".join(_quoted(conn, c) for c in columns)
                rows = conn.exec_driver_sql(f"SELECT {select} FROM {_quoted(conn, relation)}").all()
                read += len(rows)
                hits += scan(relation, columns, rows, names)
    finally:
        engine.dispose()
    return readable, hits, read


@pytest.fixture(scope="module")
def names(province_records) -> frozenset[str]:
    found = citizen_names(province_records[1])
    assert len(found) > 500
    return found


# ── (a) nothing personal where it can be read ──────────────────────────────────────────────────

def test_the_scan_finds_what_it_looks_for(names):
    name = sorted(names)[0].title()
    rows = [("Đề nghị cấp giấy phép - " + name,), ("0912345678",), ("001099012345",), ("135 123 456",),
            ('{"Email": "an.nguyen12@gmail.com"}',), ("a" * 24 + "123456789" + "b" * 31,), ("20170106083000",)]
    kinds = [hit.kind for hit in scan("t", ["c"], rows, names)]
    assert kinds == ["citizen name", "phone", "id_number", "id_number", "email"]


def test_no_table_holds_a_citizens_identifiers_or_name(synced, names):
    """The loader's view: every text column of every table and view, quarantine payloads included."""
    hits = scan_all_tables(synced.url, names)
    assert query_rows(synced.url, "SELECT count(*) FROM ops_quarantine")[0][0] > 200
    assert not hits, "\n".join(map(str, hits[:20]))


@pytest.fixture(scope="module")
def role_warehouse(synced, postgres_admin_url) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A copy of the synced PostgreSQL warehouse with the roles applied: (url, reporter, agency → role)."""
    if synced.backend != "postgresql":
        pytest.skip("roles are PostgreSQL only")
    prefix = f"lt_{uuid.uuid4().hex[:8]}_"
    url, drop = create_postgres_database(postgres_admin_url, template=synced.url)
    try:
        busiest = [code for code, _ in query_rows(
            url, "SELECT agency_code, count(*) FROM fact_dossier GROUP BY agency_code ORDER BY 2 DESC LIMIT 2")]
        applied = apply_roles(url, busiest, prefix=prefix)
        yield url, applied.names.reporter, applied.agency_roles
    finally:
        drop()
        admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for role in conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE starts_with(rolname, :p) "
                                             "ORDER BY rolname DESC"), {"p": prefix}).scalars():
                conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


@pytest.mark.postgres
def test_the_reporter_reads_nothing_personal(role_warehouse, names):
    url, reporter, _ = role_warehouse
    readable, hits, read = scan_as(url, reporter, names)
    assert {"fact_dossier", "mart_dossier", "ops_batch", "ops_quarantine", "dim_procedure"} <= set(readable)
    assert "summary" in readable["fact_dossier"] and "payload" not in readable["ops_quarantine"]
    assert "applicant_id_hash" not in readable["fact_dossier"]
    assert read > 4000
    assert not hits, "\n".join(map(str, hits[:20]))


@pytest.mark.postgres
def test_an_agency_reads_nothing_personal(role_warehouse, names):
    url, _, agencies = role_warehouse
    for code, role in agencies.items():
        readable, hits, read = scan_as(url, role, names)
        assert {"fact_dossier", "mart_dossier", "dim_agency"} <= set(readable)
        assert not {name for name in readable if name.startswith("ops_")}
        own = query_rows(url, "SELECT count(*) FROM fact_dossier WHERE agency_code = :a", a=code)[0][0]
        assert read > 2 * own > 0  # its dossiers, in fact_dossier and mart_dossier (and the code lists)
        assert not hits, "\n".join(map(str, hits[:20]))


@pytest.mark.parametrize("text, name, masked", [
    ("Đề nghị cấp giấy phép - Nguyễn Văn An", "Nguyễn Văn An", f"Đề nghị cấp giấy phép - {NAME_MASK}"),
    ("Đề nghị cấp giấy phép -  nguyễn văn an ", "Nguyễn  Văn An", f"Đề nghị cấp giấy phép - {NAME_MASK}"),
    (unicodedata.normalize("NFD", "Đăng ký - Trần Thị Hà"), "Trần Thị Hà", f"Đăng ký - {NAME_MASK}"),
    ("Thanh toán - An", "an", f"Thanh toán - {NAME_MASK}"),  # whole words: not the "an" of "Thanh"
    ("Đăng ký mới", "Nguyễn Văn An", "Đăng ký mới"),
    ("Đăng ký - Lê Văn Anh", "Lê Văn An", "Đăng ký - Lê Văn Anh"),  # a whole name only
    (None, "Nguyễn Văn An", None),
    ("Đăng ký", None, "Đăng ký"),
])
def test_name_mask(text, name, masked):
    assert name_mask(text, name) == masked


def test_the_payload_keeps_no_name_nor_identifier():
    record = {"MaHoSo": "X-1", "ChuHoSo": "Nguyễn Văn An", "TrichYeuHoSo": "Cấp phép - Nguyễn Văn An",
              "SoDienThoai": "0912345678", "Email": "an@gmail.com", "MaDoiTuong": "0101234567",
              "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": "001099012345"}],
              "QuaTrinhXuLy": [{"NguoiXuLy": "Nguyễn Văn An", "TrangThai": "1"}, "junk"]}
    masked = json.loads(payload_mask(record, b"k"))
    assert masked["ChuHoSo"] == "hmac:" + pseudonymise(b"k", "Nguyễn Văn An")
    assert masked["TrichYeuHoSo"] == f"Cấp phép - {NAME_MASK}"
    assert masked["QuaTrinhXuLy"] == [{"NguoiXuLy": masked["ChuHoSo"], "TrangThai": "1"}, "junk"]
    assert masked["DinhDanhCHS"][0]["SoDinhDanh"] == "hmac:" + pseudonymise(b"k", "001099012345")
    assert not list(scan("payload", ["p"], [(json.dumps(masked, ensure_ascii=False),)],
                         frozenset({"nguyễn văn an"})))


# ── (b) the pseudonym key chain ────────────────────────────────────────────────────────────────

def test_a_chain_hashes_through_each_key_and_shows_none():
    one, two = KeyChain.of([TEST_KEY]), KeyChain.of([TEST_KEY, NEW_KEY])
    assert one.pseudonymise("001099012345") == pseudonymise(TEST_KEY.encode(), "001099012345")
    assert two.pseudonymise("001099012345") == pseudonymise(NEW_KEY.encode(), one.pseudonymise("001099012345"))
    assert id_number_pseudonymise(two, "001 099 012 345").hash == two.pseudonymise("001099012345")
    assert two.previous == one and one.previous is None and two.current == NEW_KEY.encode()
    assert len(two.fingerprint) == 16 and two.fingerprint != one.fingerprint
    for text in (repr(two), str(two), repr([two]), f"{two}"):
        assert TEST_KEY not in text and NEW_KEY not in text and two.fingerprint in text


@pytest.mark.parametrize("previous, problem", [
    ("a,,b", "empty key"),
    ("a, b, a", "repeats a key"),
    (TEST_KEY, "repeats a key"),
])
def test_a_bad_previous_key_list_is_an_error(previous, problem):
    settings = PipelineSettings(pseudonym_key=TEST_KEY, pseudonym_key_previous=previous)
    with pytest.raises(MissingSetting, match=problem) as error:
        settings.require_pseudonym_key()
    assert TEST_KEY not in str(error.value)


def test_the_previous_keys_are_read_oldest_first(monkeypatch):
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", "k3")
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS", " k1 , k2 ")
    assert PipelineSettings().require_pseudonym_key() == KeyChain.of(["k1", "k2", "k3"])
    assert "k1" not in repr(PipelineSettings())


def _hashes(url: str) -> dict[str, str]:
    return dict(query_rows(url, "SELECT dossier_code, applicant_id_hash FROM fact_dossier "
                                "WHERE applicant_id_hash IS NOT NULL"))


def _payloads(url: str) -> dict[int, str]:
    return dict(query_rows(url, "SELECT id, payload FROM ops_quarantine"))


def _a_citizen(dossiers: list[dict], hashes: dict[str, str]) -> tuple[str, str]:
    """A loaded dossier and its applicant's 12-digit ID number (in clear, from the source)."""
    for record in dossiers:
        number = record.get("SoGiayToChuHoSo") or ""
        if record["MaHoSo"] in hashes and len(number) == 12 and number.isdigit():
            return record["MaHoSo"], number
    raise AssertionError("no loaded dossier with a 12-digit ID number")


@pytest.fixture
def rotation_env(synced_copy, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", synced_copy)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", NEW_KEY)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS", TEST_KEY)
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)
    return synced_copy


def test_rotation_rekeys_every_pseudonym_once(rotation_env, province_records, portal, capsys, monkeypatch):
    url = rotation_env
    before, payloads = _hashes(url), _payloads(url)
    masked = sum(len(re.findall(r"hmac:[0-9a-f]{64}", p)) for p in payloads.values())
    assert before and masked
    chain = KeyChain.of([TEST_KEY, NEW_KEY])

    assert main(["keys", "rotate-pseudonym", "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert _hashes(url) == before and _payloads(url) == payloads

    assert main(["keys", "rotate-pseudonym"]) == 0
    out = capsys.readouterr().out
    assert (f"fact_dossier.applicant_id_hash: {len(before)} values in {len(before)} rows" in out
            and f"ops_quarantine.payload: {masked} values in " in out)
    assert f"{chain.previous.fingerprint} → {chain.fingerprint} (2 keys)" in out
    after = _hashes(url)
    assert after == {code: pseudonymise(NEW_KEY.encode(), value) for code, value in before.items()}
    code, number = _a_citizen(province_records[1], after)
    assert after[code] == chain.pseudonymise(number)  # as a new record of that person would be
    for key, payload in _payloads(url).items():
        assert payload == re.sub(r"hmac:([0-9a-f]{64})",
                                 lambda m: "hmac:" + pseudonymise(NEW_KEY.encode(), m.group(1)), payloads[key])

    assert main(["keys", "rotate-pseudonym"]) == 0  # idempotent
    assert "nothing to re-key" in capsys.readouterr().out
    assert _hashes(url) == after

    # a sync with the new chain writes the same pseudonyms; one with the old key alone refuses
    run_sync(url, portal, pseudonym_key=NEW_KEY, pseudonym_key_previous=TEST_KEY)
    assert _hashes(url) == after
    batches = query_rows(url, "SELECT count(*) FROM ops_batch")[0][0]
    monkeypatch.delenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS")
    with pytest.raises(PseudonymKeyMismatch, match="the configuration gives .* \\(1 key\\)"):
        run_sync(url, portal)
    assert query_rows(url, "SELECT count(*) FROM ops_batch")[0][0] == batches  # refused before any batch


def test_a_rotation_under_the_wrong_chain_changes_nothing(rotation_env, monkeypatch, capsys):
    url = rotation_env
    before = _hashes(url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS", "not-the-key-it-was-made-with")
    assert main(["keys", "rotate-pseudonym"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing re-keyed" in err[0] and "not-the-key" not in err[0]
    monkeypatch.delenv("LIENTHONG_PSEUDONYM_KEY_PREVIOUS")
    assert main(["keys", "rotate-pseudonym"]) == 1
    assert "LIENTHONG_PSEUDONYM_KEY_PREVIOUS" in capsys.readouterr().err
    assert _hashes(url) == before


def test_a_sync_with_a_new_key_not_yet_rotated_says_so_in_one_line(rotation_env, portal, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_NATIONAL_PORTAL", portal.url.replace("http://", "http://demo:demo@"))
    assert main(["sync", "national-portal", "--stream", "procedures"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "run `lienthong keys rotate-pseudonym`" in line and NEW_KEY not in line and TEST_KEY not in line


def test_a_batch_opened_across_a_rotation_refuses(synced_copy):
    """The check inside the batch's transaction: a rotation committed after the first check is seen."""
    old, new = KeyChain.of([TEST_KEY]), KeyChain.of([TEST_KEY, NEW_KEY])
    engine = create_engine(synced_copy)
    try:
        require_key_chain(engine, old)  # the check before the batch opens
        rotate_pseudonyms(engine, new)  # … and a rotation committed in between
        with pytest.raises(PseudonymKeyMismatch, match="rotated to a longer chain"):
            require_key_chain(engine, old, record=False)
        require_key_chain(engine, new, record=False)
    finally:
        engine.dispose()


def test_an_empty_warehouse_records_the_chain_of_its_first_sync(sqlite_url, portal):
    run_sync(sqlite_url, portal, streams=["procedures"], pseudonym_key=NEW_KEY)
    chain = KeyChain.of([NEW_KEY])
    assert query_rows(sqlite_url, "SELECT fingerprint, key_count, previous_fingerprint FROM ops_pseudonym_key") == [
        (chain.fingerprint, 1, None)]
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(PseudonymKeyMismatch):
            require_key_chain(engine, KeyChain.of([TEST_KEY]))
    finally:
        engine.dispose()
