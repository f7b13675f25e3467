"""OneStopConnector against simulated one-stop-shop databases (MariaDB, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.base import LOCAL_TZ, Window
from connectors.errors import SourceProtocolError, SourceUnavailable
from connectors.onestop import (
    MappingError,
    OneStopConnector,
    OneStopMapping,
    load_mapping,
    mapping_from_dict,
    to_sqlalchemy_url,
)
from connectors.settings import ConnectionSettings
from simulators.generator import fee_total, generate_province, load_records
from simulators.onestop import create_onestop_database, mapping_path
from transforms.portal import dossiers_to_frames
from transforms.timefmt import parse_portal_time

AGENCIES = {"a": "000.00.03.H62", "b": "000.00.04.H62"}
MAPPINGS = Path(__file__).with_name("mappings")
ALL_TIME = Window(datetime(2000, 1, 1, tzinfo=LOCAL_TZ), datetime(2100, 1, 1, tzinfo=LOCAL_TZ))
PER_VARIANT = 120


@pytest.fixture(scope="module")
def province(tmp_path_factory) -> tuple[list[dict], list[dict]]:
    out = tmp_path_factory.mktemp("province")
    generate_province(out, seed=2017, filler_dossiers=200)
    return list(load_records(out / "dossiers.jsonl")), list(load_records(out / "procedures.jsonl"))


@pytest.fixture(scope="module")
def samples(province) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per variant: clean dossiers of its agency (no transform error) and their procedures."""
    dossiers, procedures = province
    out = {}
    for variant, agency in AGENCIES.items():
        mine = [d for d in dossiers if d["DonViXuLy"] == agency][: 4 * PER_VARIANT]
        frame, _ = dossiers_to_frames(mine, key=b"k")
        clean = [d for d, errors in zip(mine, frame["_errors"], strict=True) if not errors]
        picked = {d["MaHoSo"]: d for d in clean}  # planted duplicates: keep one row per code
        chosen = list(picked.values())[:PER_VARIANT]
        codes = {d["MaTTHC"] for d in chosen}
        out[variant] = (chosen, [p for p in procedures if p["MaTTHC"] in codes])
    return out


def read_all(connector: OneStopConnector, stream: str, window: Window | None = ALL_TIME) -> list[dict]:
    return [record for chunk in connector.read(stream, window) for record in chunk]


def project(record: dict, mapping: OneStopMapping, table: str = "dossiers") -> dict:
    """`record` reduced to the portal fields `mapping` carries (what a round trip can give back)."""
    tm = mapping.dossiers if table == "dossiers" else mapping.procedures
    assert tm is not None
    fields = set(tm.columns) | {"NgayCapNhat"}
    fields |= {"DonViXuLy"} if table == "dossiers" else {"MaCoQuanThucHien"}
    out = {f: record.get(f, "") for f in fields}
    if "LePhi" in fields:  # the fee list in total
        total = fee_total(record.get("DanhSachLePhi"))
        out["LePhi"] = "" if total is None else str(total)
    if table == "procedures":
        out["MaCoQuanThucHien"] = mapping.agency_code
    if table == "dossiers" and mapping.history is not None:
        steps = mapping.history.columns
        out["QuaTrinhXuLy"] = [{f: step.get(f, "") for f in steps} for step in record["QuaTrinhXuLy"]]
    return out


DATABASES = [
    ("a", "mysql_url"),
    ("b", "sqlite_url"),
    ("a", "sqlite_url"),
    ("b", "mysql_url"),
    pytest.param("b", "postgres_url", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize(("variant", "database"), DATABASES)
def test_round_trip_gives_back_the_portal_records(request, samples, variant, database):
    url = request.getfixturevalue(database)
    dossiers, procedures = samples[variant]
    mapping_file = create_onestop_database(url, variant, dossiers, procedures)
    mapping = load_mapping(mapping_file)

    with OneStopConnector(url, mapping_file, chunk_size=50) as connector:
        assert connector.source == f"one_stop:{AGENCIES[variant]}"
        chunks = list(connector.read("dossiers", ALL_TIME))
        read_procedures = read_all(connector, "procedures")

    assert len(chunks) == -(-len(dossiers) // 50) and all(len(c) <= 50 for c in chunks)
    records = [r for chunk in chunks for r in chunk]
    order = [(r["NgayCapNhat"], r["MaHoSo"]) for r in records]
    assert order == sorted(order)
    expected = {d["MaHoSo"]: project(d, mapping) for d in dossiers}
    assert {r["MaHoSo"]: r for r in records} == expected
    assert len(records) == len(expected)

    frame, events = dossiers_to_frames(records, key=b"k")
    assert frame["_errors"].map(len).sum() == 0
    assert len(events) == sum(len(d["QuaTrinhXuLy"]) for d in dossiers)
    assert set(frame["agency_code"]) == {AGENCIES[variant]}

    engine = sa.create_engine(url)
    with engine.connect() as conn:  # the source really holds its own codes
        own = {"a": "SELECT ma_thu_tuc FROM tbl_hoso", "b": "SELECT proc_id FROM dossier"}[variant]
        stored = set(conn.execute(sa.text(own)).scalars())
    engine.dispose()
    assert stored != {d["MaTTHC"] for d in dossiers}
    assert {p["MaTTHC"]: p for p in read_procedures} == {
        p["MaTTHC"]: project(p, mapping, "procedures") for p in procedures
    }


@pytest.mark.parametrize(("variant", "database"), [("a", "mysql_url"), ("b", "sqlite_url")])
def test_window_is_honoured_and_reads_are_incremental(request, samples, variant, database):
    url = request.getfixturevalue(database)
    dossiers, _ = samples[variant]
    create_onestop_database(url, variant, dossiers)
    updates = sorted(parse_portal_time(d["NgayCapNhat"]) for d in dossiers)
    low, mid = updates[len(updates) // 4], updates[len(updates) // 2]

    def within(start, end):
        return sorted(d["MaHoSo"] for d in dossiers if start <= parse_portal_time(d["NgayCapNhat"]) <= end)

    with OneStopConnector(url, mapping_path(variant), chunk_size=17) as connector:
        first = read_all(connector, "dossiers", Window(low, mid))  # both bounds inclusive
        assert sorted(r["MaHoSo"] for r in first) == within(low, mid)
        assert {low, mid} <= {parse_portal_time(r["NgayCapNhat"]) for r in first}
        # the same window given in UTC selects the same rows: bounds go to the source's zone
        in_utc = Window(low.astimezone(UTC), mid.astimezone(UTC))
        assert [r["MaHoSo"] for r in read_all(connector, "dossiers", in_utc)] == [r["MaHoSo"] for r in first]

        watermark = max(parse_portal_time(r["NgayCapNhat"]) for r in first)
        later = read_all(connector, "dossiers", Window(watermark + timedelta(seconds=1), updates[-1]))
    assert later and all(parse_portal_time(r["NgayCapNhat"]) > watermark for r in later)
    assert sorted(r["MaHoSo"] for r in later) == within(watermark + timedelta(seconds=1), updates[-1])
    assert not {r["MaHoSo"] for r in later} & {r["MaHoSo"] for r in first}


@pytest.mark.parametrize(
    ("variant", "database", "unknown_code"),
    [
        ("b", "sqlite_url", "KH-9999"),
        ("a", "mysql_url", "STP-XX-99"),
    ],
)
def test_unmapped_label_and_procedure_code_pass_through(request, samples, variant, database, unknown_code):
    url = request.getfixturevalue(database)
    dossiers, _ = samples[variant]
    odd = dict(dossiers[0], TrangThaiHoSo="Chờ phân công")  # a label the mapping does not know
    create_onestop_database(url, variant, [odd, *dossiers[1:5]])
    table, key, code_column = (
        ("dossier", "dossier_no", "proc_id") if variant == "b" else ("tbl_hoso", "so_ho_so", "ma_thu_tuc")
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {table} SET {code_column} = :code WHERE {key} = :key"),
            {"code": unknown_code, "key": odd["MaHoSo"]},
        )
    engine.dispose()

    with OneStopConnector(url, mapping_path(variant)) as connector:
        records = read_all(connector, "dossiers")
    assert len(records) == 5  # never dropped
    got = next(r for r in records if r["MaHoSo"] == odd["MaHoSo"])
    assert got["TrangThaiHoSo"] == "Chờ phân công"
    assert got["MaTTHC"] == unknown_code  # never guessed

    frame, _ = dossiers_to_frames(records, key=b"k")
    row = frame[frame["dossier_code"] == odd["MaHoSo"].upper()].iloc[0]
    assert row["_errors"] == ["status.in_codelist"]
    assert row["procedure_code"] == unknown_code  # left to procedure_code.in_catalogue
    assert frame["_errors"].map(len).sum() == 1


def test_a_third_variant_needs_only_a_mapping_file(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE hs_motcua (mahs TEXT PRIMARY KEY, thutuc TEXT, kenh TEXT, doituong INTEGER,"
                " tt INTEGER, nguoinop TEXT, giayto TEXT, xa TEXT, nhan_utc TEXT, hentra_utc TEXT,"
                " capnhat_utc TEXT)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO hs_motcua VALUES (:m, :p, :k, :d, :t, :n, :g, :x, :r, :h, :u)"),
            [
                {
                    "m": "C-001",
                    "p": "TD-07",
                    "k": "TT",
                    "d": 1,
                    "t": 3,
                    "n": "Nguyễn Văn An",
                    "g": "026090001234",
                    "x": "08866",
                    "r": "20170301013000",
                    "h": "20170303093000",
                    "u": "20170303100000",
                },
                {
                    "m": "C-002",
                    "p": "1.004555",
                    "k": "TTUY",
                    "d": 2,
                    "t": 1,
                    "n": "Công ty TNHH Hợp Thành",
                    "g": "",
                    "x": "08866",
                    "r": "20170302170000",
                    "h": "",
                    "u": "20170302170500",
                },
                {
                    "m": "C-003",
                    "p": "TD-08",
                    "k": "TT",
                    "d": 1,
                    "t": 0,
                    "n": "Lê Thị Bình",
                    "g": "026190004321",
                    "x": "08866",
                    "r": "20170310020000",
                    "h": "",
                    "u": "20170310020000",
                },
            ],
        )
    engine.dispose()

    # 2017-03-02 17:05 UTC is 2017-03-03 00:05 in Vietnam: the window is in local time
    window = Window(datetime(2017, 3, 3, tzinfo=LOCAL_TZ), datetime(2017, 3, 4, tzinfo=LOCAL_TZ))
    with OneStopConnector(sqlite_url, MAPPINGS / "onestop_variant_c.yaml") as connector:
        assert connector.source == "one_stop:000.00.25.H62"
        records = read_all(connector, "dossiers", window)
        everything = read_all(connector, "dossiers", None)
    assert [r["MaHoSo"] for r in records] == ["C-002", "C-001"]  # ordered by last update
    assert records[1] == {
        "MaHoSo": "C-001",
        "MaTTHC": "1.001193",
        "KenhThucHien": "1",
        "LoaiDoiTuong": "1",
        "TrangThaiHoSo": "10",
        "ChuHoSo": "Nguyễn Văn An",
        "SoGiayToChuHoSo": "026090001234",
        "NoiNopHoSo": "08866",
        "NgayTiepNhan": "20170301083000",
        "NgayHenTra": "20170303163000",
        "DonViXuLy": "000.00.25.H62",
        "NgayCapNhat": "20170303170000",
    }
    assert records[0]["NgayHenTra"] == "" and records[0]["TrangThaiHoSo"] == "4"
    assert [r["MaHoSo"] for r in everything] == ["C-002", "C-001", "C-003"]
    assert everything[2]["MaTTHC"] == "TD-08"  # not in the map: passed through

    frame, _ = dossiers_to_frames(everything, key=b"k")
    assert frame["_errors"].map(len).sum() == 0
    assert list(frame["status"]) == [4, 10, 2]
    with pytest.raises(ValueError, match="declares no procedures table"):
        OneStopConnector(sqlite_url, MAPPINGS / "onestop_variant_c.yaml").read("procedures")


def test_a_fractional_fee_column_is_refused_not_read_as_grouped_thousands(sqlite_url):
    # A REAL column holding 50.125 must not become the text "50.125" (= 50 125 đồng).
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE hs (mahs TEXT PRIMARY KEY, capnhat TEXT, phi)"))
        conn.execute(sa.text("INSERT INTO hs VALUES (:m, '20170303100000', :f)"),
                     [{"m": "F-1", "f": 50000.0}, {"m": "F-2", "f": 50.125}, {"m": "F-3", "f": "50.000 đ"},
                      {"m": "F-4", "f": None}])
    engine.dispose()
    mapping = mapping_from_dict({
        "version": 1, "agency_code": "000.00.25.H62", "timezone": "UTC",
        "datetime": {"type": "text", "format": "%Y%m%d%H%M%S"},
        "dossiers": {"table": "hs", "key": "mahs", "replication": "capnhat",
                     "columns": {"MaHoSo": "mahs", "LePhi": "phi"}},
        "statuses": {},
    })
    with OneStopConnector(sqlite_url, mapping) as connector:
        records = sorted(read_all(connector, "dossiers", None), key=lambda r: r["MaHoSo"])
    assert [r["LePhi"] for r in records] == ["50000", 50.125, "50.000 đ", ""]
    frame, _ = dossiers_to_frames(records, key=b"k")
    assert frame["fee"].fillna(-1).tolist() == [50000.0, -1, 50000.0, -1]
    assert [("fee.valid_amount" in e) for e in frame["_errors"]] == [False, True, False, False]


GOOD = (MAPPINGS / "onestop_variant_c.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (GOOD.replace("  key: mahs\n", ""), "dossiers: 'key' is a required property"),
        (GOOD.replace("    MaHoSo: mahs\n", "    MaHoSo: mahs\n    MaHoSoo: x\n"), "'MaHoSoo' is not one of"),
        (GOOD.replace('3: "10"', '3: "11"'), "statuses.3: '11' does not match"),
        (GOOD.replace("table: hs_motcua", "table: hs motcua; DROP TABLE x"), "dossiers.table: "),
        (GOOD.replace('"%Y%m%d%H%M%S"', '"%d/%m/%Y %H:%M"'), "datetime.format: '%d/%m/%Y %H:%M' does not sort"),
        (GOOD.replace("timezone: UTC", "timezone: Asia/Hanoi_Nowhere"), "timezone: unknown time zone"),
        (GOOD.replace("version: 1", "version: 1\nagency: x"), "Additional properties are not allowed ('agency'"),
        (GOOD.replace("  MaHoSo: mahs", "  MaHoSo: [mahs"), "not valid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
)
def test_malformed_mapping_file_names_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "broken_variant.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_mapping_file_is_a_mapping_error(tmp_path):
    with pytest.raises(MappingError, match="cannot read the mapping file"):
        load_mapping(tmp_path / "nowhere.yaml")


def test_packaged_mappings_load_by_name():
    assert load_mapping("onestop_variant_a").procedure_codes["STP-LLTP-01"] == "2.000488"
    assert load_mapping("onestop_variant_b").procedure_lookup is not None


@pytest.mark.parametrize(
    ("connection", "url"),
    [
        ("mysql://root@127.0.0.1:3306/onestop_a", "mysql+pymysql://root@127.0.0.1:3306/onestop_a"),
        ("mariadb://u:p%40ss@db:3306/x?charset=utf8mb4", "mysql+pymysql://u:p%40ss@db:3306/x?charset=utf8mb4"),
        ("postgres://loader@127.0.0.1:5432/onestop", "postgresql+psycopg://loader@127.0.0.1:5432/onestop"),
        ("mysql+pymysql://root@h/x", "mysql+pymysql://root@h/x"),
        ("sqlite:////var/onestop.db", "sqlite:////var/onestop.db"),
        (
            ConnectionSettings(host="h", port=3307, scheme="mysql", schema="a", login="u", password="s3"),
            "mysql+pymysql://u:s3@h:3307/a",
        ),
    ],
)
def test_airflow_connection_becomes_a_sqlalchemy_url(connection, url):
    assert to_sqlalchemy_url(connection) == url


def test_unknown_stream_is_refused(sqlite_url):
    connector = OneStopConnector(sqlite_url, "onestop_variant_b")
    with pytest.raises(ValueError, match="no stream 'services'"):
        connector.read("services")
    connector.close()


def test_rows_are_streamed_with_a_server_side_cursor_in_chunks(sqlite_url, samples):
    dossiers, _ = samples["b"]
    create_onestop_database(sqlite_url, "b", dossiers)
    engine = sa.create_engine(sqlite_url)
    seen = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        if "FROM dossier " in statement + " ":
            seen.append(context.execution_options)

    connector = OneStopConnector(engine, mapping_path("b"), chunk_size=25)
    chunks = connector.read("dossiers")
    first = next(chunks)  # a generator: nothing is read before it is asked for
    assert len(first) == 25
    assert seen[0]["stream_results"] is True and seen[0]["yield_per"] == 25
    assert sum(len(c) for c in chunks) == len(dossiers) - 25
    connector.close()
    engine.dispose()


def test_a_database_that_does_not_match_the_mapping_says_so(sqlite_url, tmp_path):
    mapping = tmp_path / "wrong_table.yaml"
    mapping.write_text(GOOD.replace("table: hs_motcua", "table: hs_khong_co"), encoding="utf-8")
    connector = OneStopConnector(sqlite_url, mapping)
    with pytest.raises(SourceProtocolError) as caught:
        read_all(connector, "dossiers")
    assert str(caught.value).startswith("one_stop:000.00.25.H62 dossiers: the database does not match mapping ")
    assert str(mapping) in str(caught.value) and "hs_khong_co" in str(caught.value)


def test_an_unreachable_database_is_source_unavailable():
    connector = OneStopConnector("mysql://root@127.0.0.1:1/onestop_a", "onestop_variant_a")
    with pytest.raises(SourceUnavailable, match="one_stop:000.00.03.H62 dossiers: database unreachable"):
        read_all(connector, "dossiers")
