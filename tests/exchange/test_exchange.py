"""Signed exchange packages: published once per change, refused when tampered, a faithful round trip."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import zipfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from exchange.keys import generate_keypair, load_signing_key, load_trusted_keys
from exchange.packages import (
    DeliveryFailed,
    PackageRefused,
    build_package,
    publish_package,
    receive_package,
    signed_bytes,
    warehouse_dossiers,
)
from pipeline.cli import main
from simulators.loopback import LoopbackHandler, LoopbackServer
from tests.province import TEST_KEY, run_sync, settings
from transforms.timefmt import format_portal_time, parse_portal_time

SENDER = "000.00.00.H62"
# fact_dossier columns that say how and when a row was loaded, not what the dossier is
LOAD_COLUMNS = {"batch_id", "loaded_at", "source_system", "source_record_id"}


# ── fixtures: a source warehouse with one agency's dossiers, keys, a catalogue-only warehouse ────

@pytest.fixture(scope="module")
def agency_province(province_records):
    """The procedures and 300 portal dossiers of the agency with the most dossiers."""
    procedures, dossiers = province_records
    agency = Counter(d["DonViXuLy"] for d in dossiers).most_common(1)[0][0]
    return agency, procedures, [d for d in dossiers if d["DonViXuLy"] == agency][:300]


@pytest.fixture(scope="module")
def source_db(agency_province, tmp_path_factory) -> Path:
    """A SQLite warehouse after a sync of those dossiers (tests work on a copy)."""
    from simulators.portal import PortalSimulator

    _, procedures, dossiers = agency_province
    path = tmp_path_factory.mktemp("exchange-source") / "warehouse.db"
    with PortalSimulator(procedures=procedures, dossiers=dossiers) as portal:
        run_sync(f"sqlite:///{path}", portal)
    return path


@pytest.fixture
def source_url(source_db, tmp_path) -> str:
    target = tmp_path / "source.db"
    shutil.copy(source_db, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The sender's key pair, its trusted-keys folder, and a stranger's key."""
    folder = tmp_path_factory.mktemp("keys")
    private, _ = generate_keypair(folder, SENDER, "k1")
    stranger, _ = generate_keypair(folder / "stranger", SENDER, "k1")
    return (load_signing_key(str(private), "k1"), load_trusted_keys(folder / "trusted"),
            load_signing_key(stranger.read_text(), "k1"))


def catalogue_warehouse(url: str, procedures) -> None:
    """A fresh warehouse holding only the procedure catalogue (as every warehouse syncs it)."""
    from simulators.portal import PortalSimulator

    with PortalSimulator(procedures=procedures, dossiers=[]) as portal:
        run_sync(url, portal, streams=["procedures"])


def _engine(url: str) -> sa.Engine:
    from warehouse.db import create_engine

    return create_engine(url)


def _typed(url: str, table: str, agency: str | None = None) -> dict:
    """Rows read through the warehouse metadata, so both backends give the same Python types."""
    from warehouse.schema import metadata

    t = metadata.tables[table]
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(t)
            if agency:
                query = query.where(t.c.agency_code == agency)
            rows = [dict(r) for r in conn.execute(query).mappings()]
    finally:
        engine.dispose()
    if table == "fact_dossier":
        return {r["dossier_code"]: {k: v for k, v in r.items() if k not in LOAD_COLUMNS} for r in rows}
    return {(r["dossier_code"], r["seq"]): {k: v for k, v in r.items() if k != "batch_id"} for r in rows}


def _count(url: str, query: str) -> int:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


def _publish(url: str, agency: str, signing, outbox: Path, **options):
    engine = _engine(url)
    try:
        return publish_package(engine, sender=SENDER, receiver=agency, signing_key=signing, outbox=outbox,
                               **options)
    finally:
        engine.dispose()


def _receive(url: str, package: Path, trusted):
    engine = _engine(url)
    try:
        return receive_package(engine, package, trusted=trusted, settings=settings())
    finally:
        engine.dispose()


# ── publishing ──────────────────────────────────────────────────────────────────────────────────

def test_publishing_twice_without_changes_gives_no_new_package_and_a_change_gives_just_it(
        agency_province, source_url, keys, tmp_path):
    from simulators.portal import PortalSimulator

    agency, procedures, dossiers = agency_province
    signing, _, _ = keys
    outbox = tmp_path / "outbox"
    loaded = _count(source_url, f"SELECT count(*) FROM fact_dossier WHERE agency_code = '{agency}'")
    assert loaded > 200

    first = _publish(source_url, agency, signing, outbox)
    assert (first.status, first.dossier_count) == ("delivered", loaded)
    assert [p.name for p in outbox.iterdir()] == [f"{first.message_id}.zip"]

    again = _publish(source_url, agency, signing, outbox)
    assert again.status == "unchanged" and again.message_id is None
    assert len(list(outbox.iterdir())) == 1
    assert _count(source_url, "SELECT count(*) FROM ops_package WHERE direction = 'out'") == 1

    # one dossier changes at its source (a newer version, synced as usual): the next package is it alone
    code = sorted(_typed(source_url, "fact_dossier", agency))[0]
    record = next(d for d in dossiers if d["MaHoSo"].upper() == code)
    newer = dict(record, NgayCapNhat=format_portal_time(parse_portal_time(record["NgayCapNhat"]) + timedelta(days=1)),
                 TrichYeuHoSo="Đã sửa tóm tắt")
    with PortalSimulator(procedures=procedures, dossiers=[newer]) as portal:
        run_sync(source_url, portal, streams=["dossiers"])
    changed = _publish(source_url, agency, signing, outbox)
    assert (changed.status, changed.dossier_count) == ("delivered", 1)
    assert changed.message_id != first.message_id
    with zipfile.ZipFile(outbox / f"{changed.message_id}.zip") as archive:
        body = archive.read("message.xml").decode()
        manifest = json.loads(archive.read("manifest.json"))
    assert code in body and "Đã sửa tóm tắt" in body
    assert manifest["dossier_count"] == 1 and manifest["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert _publish(source_url, agency, signing, outbox).status == "unchanged"

    receipts = _count(source_url, "SELECT count(*) FROM ops_package WHERE status = 'delivered' AND receipt LIKE "
                                  "'%\"channel\": \"outbox\"%'")
    assert receipts == 2


def test_the_same_content_gives_the_same_package_byte_for_byte(agency_province, source_url, keys):
    agency, _, _ = agency_province
    signing, _, _ = keys
    engine = _engine(source_url)
    try:
        records = warehouse_dossiers(engine, agency)
    finally:
        engine.dispose()
    one = build_package(records, SENDER, agency, signing)
    other = build_package(list(reversed(records)), SENDER, agency, signing)
    assert one.zip_bytes() == other.zip_bytes()
    assert build_package(records[1:], SENDER, agency, signing).message_id != one.message_id
    assert build_package(records, SENDER, "000.00.99.H62", signing).message_id != one.message_id


# ── the round trip ──────────────────────────────────────────────────────────────────────────────

def test_round_trip_reproduces_the_dossiers(agency_province, source_url, keys, warehouse_url, tmp_path):
    agency, procedures, _ = agency_province
    signing, trusted, _ = keys
    published = _publish(source_url, agency, signing, tmp_path / "outbox")
    package = tmp_path / "outbox" / f"{published.message_id}.zip"
    catalogue_warehouse(warehouse_url, procedures)

    received = _receive(warehouse_url, package, trusted)
    assert (received.status, received.rows_loaded, received.rows_quarantined) == (
        "accepted", published.dossier_count, 0)
    source, target = _typed(source_url, "fact_dossier", agency), _typed(warehouse_url, "fact_dossier")
    assert set(target) == set(source)
    assert target == source  # every column but the load metadata, the applicant's hash included
    assert any(row["applicant_id_hash"] for row in target.values())
    events = _typed(warehouse_url, "fact_dossier_event")
    assert events and events == {key: row for key, row in _typed(source_url, "fact_dossier_event").items()
                                 if key[0] in source}
    assert _count(warehouse_url, "SELECT count(DISTINCT source_system) FROM fact_dossier") == 1
    assert _count(warehouse_url, f"SELECT count(*) FROM fact_dossier WHERE source_system = 'exchange:{SENDER}'") \
        == len(target)

    batches = _count(warehouse_url, "SELECT count(*) FROM ops_batch")
    again = _receive(warehouse_url, package, trusted)
    assert again.status == "already"
    assert _count(warehouse_url, "SELECT count(*) FROM ops_batch") == batches
    assert _count(warehouse_url, "SELECT count(*) FROM ops_package WHERE direction = 'in' AND status = 'accepted'") == 1


# ── refusals ────────────────────────────────────────────────────────────────────────────────────

def _parts(package: Path) -> tuple[dict, bytes]:
    with zipfile.ZipFile(package) as archive:
        return json.loads(archive.read("manifest.json")), archive.read("message.xml")


def _write(path: Path, manifest: dict | None, body: bytes | None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        if manifest is not None:
            archive.writestr("manifest.json", json.dumps(manifest))
        if body is not None:
            archive.writestr("message.xml", body)
    return path


def _resign(manifest: dict, body: bytes, signing) -> dict:
    manifest = dict(manifest, body_sha256=hashlib.sha256(body).hexdigest())
    manifest["signature"] = base64.b64encode(signing.sign(signed_bytes(manifest))).decode()
    return manifest


def _flip_one_byte(manifest, body, keys):
    at = body.index(b"<MaTTHC>") + len(b"<MaTTHC>")
    return manifest, body[:at] + bytes([body[at] ^ 1]) + body[at + 1:]


def _unknown_key(manifest, body, keys):
    return _resign(manifest, body, keys[2]), body  # a well-formed signature by a key nobody trusts


def _unknown_key_id(manifest, body, keys):
    return _resign(dict(manifest, key_id="k9"), body, keys[0]), body


def _unsigned(manifest, body, keys):
    return {k: v for k, v in manifest.items() if k != "signature"}, body


def _xxe(manifest, body, keys):
    hostile = body.replace(b"<?xml version='1.0' encoding='UTF-8'?>",
                           b"<?xml version='1.0' encoding='UTF-8'?>\n"
                           b"<!DOCTYPE Message [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>", 1)
    hostile = hostile.replace(b"<TrichYeuHoSo>", b"<TrichYeuHoSo>&e;", 1)
    assert hostile != body
    return _resign(manifest, hostile, keys[0]), hostile  # correctly signed: the parser must refuse it


def _no_manifest(manifest, body, keys):
    return None, body


def _off_schema(manifest, body, keys):
    bad = body.replace(b"<DonViXuLy>", b"<Unknown>x</Unknown><DonViXuLy>", 1)
    return _resign(manifest, bad, keys[0]), bad


@pytest.mark.parametrize(("tamper", "reason"), [
    (_flip_one_byte, "body SHA-256 does not match the manifest"),
    (_unknown_key, "signature does not verify"),
    (_unknown_key_id, "signed by unknown key 'k9'"),
    (_unsigned, "not signed"),
    (_xxe, "message.xml: external entity declared"),
    (_no_manifest, "no manifest.json"),
    (_off_schema, "message.xml: schema:"),
])
def test_a_tampered_or_unsigned_package_is_refused_and_nothing_of_it_loads(
        agency_province, source_url, keys, tmp_path, tamper, reason):
    agency, procedures, _ = agency_province
    signing, trusted, _ = keys
    published = _publish(source_url, agency, signing, tmp_path / "outbox")
    manifest, body = _parts(tmp_path / "outbox" / f"{published.message_id}.zip")
    package = _write(tmp_path / "tampered.zip", *tamper(manifest, body, keys))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    catalogue_warehouse(target, procedures)

    with pytest.raises(PackageRefused) as refused:
        _receive(target, package, trusted)
    assert reason in str(refused.value)
    assert _count(target, "SELECT count(*) FROM fact_dossier") == 0
    assert _count(target, "SELECT count(*) FROM ops_batch WHERE source LIKE 'exchange%'") == 0
    engine = _engine(target)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, reason FROM ops_package WHERE direction = 'in'")).all()
    engine.dispose()
    assert [(status, reason in why) for status, why in rows] == [("refused", True)]


def test_receive_command_says_why_in_one_line(agency_province, source_url, keys, tmp_path, monkeypatch, capsys):
    agency, procedures, _ = agency_province
    signing, _, _ = keys
    published = _publish(source_url, agency, signing, tmp_path / "outbox")
    manifest, body = _parts(tmp_path / "outbox" / f"{published.message_id}.zip")
    package = _write(tmp_path / "tampered.zip", *_flip_one_byte(manifest, body, keys))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    catalogue_warehouse(target, procedures)
    monkeypatch.setenv("WAREHOUSE_URL", target)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    trusted_dir = tmp_path / "trusted" / SENDER
    trusted_dir.mkdir(parents=True)
    (trusted_dir / "k1.pem").write_text(signing.public_pem())
    monkeypatch.setenv("LIENTHONG_TRUSTED_KEYS", str(tmp_path / "trusted"))
    capsys.readouterr()

    assert main(["receive", str(package)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["refused: body SHA-256 does not match the manifest"]
    assert main(["receive", str(tmp_path / "outbox" / f"{published.message_id}.zip")]) == 0
    assert "accepted" in capsys.readouterr().out
    assert _count(target, "SELECT count(*) FROM fact_dossier") == published.dossier_count


# ── HTTP delivery ───────────────────────────────────────────────────────────────────────────────

class _Inbox(LoopbackServer):
    """An agency's package endpoint: answers each POST with a receipt, or with the queued status."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0)
        self.handler = _InboxHandler
        self.packages: list[bytes] = []
        self.fail_next = 0


class _InboxHandler(LoopbackHandler):
    def do_POST(self) -> None:  # noqa: N802 — http.server's naming
        inbox: _Inbox = self.server.simulator  # type: ignore[assignment]
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if inbox.fail_next:
            inbox.fail_next -= 1
            self.send_payload(503, b'{"error": "busy"}')
            return
        inbox.packages.append(data)
        answer = {"received": self.headers.get("X-Lienthong-Message-Id"), "bytes": len(data)}
        self.send_payload(200, json.dumps(answer).encode())


def test_http_delivery_keeps_the_endpoints_receipt_and_a_failure_is_retried(
        agency_province, source_url, keys, tmp_path):
    agency, _, _ = agency_province
    signing, _, _ = keys
    with _Inbox() as inbox:
        url = f"{inbox.url}/packages"
        inbox.fail_next = 1
        with pytest.raises(DeliveryFailed, match="HTTP 503"):
            _publish(source_url, agency, signing, None, endpoint=url)
        assert _count(source_url, "SELECT count(*) FROM ops_package WHERE status = 'failed'") == 1
        outcome = _publish(source_url, agency, signing, None, endpoint=url)  # the same package, delivered
        assert outcome.status == "delivered" and len(inbox.packages) == 1
    engine = _engine(source_url)
    with engine.connect() as conn:
        status, receipt, delivered_at = conn.execute(sa.text(
            "SELECT status, receipt, delivered_at FROM ops_package WHERE message_id = :m"),
            {"m": outcome.message_id}).one()
    engine.dispose()
    [http] = json.loads(receipt)
    assert status == "delivered" and delivered_at is not None
    assert (http["status_code"], http["response"]["received"]) == (200, outcome.message_id)
    with zipfile.ZipFile(io.BytesIO(inbox.packages[0])) as archive:
        assert json.loads(archive.read("manifest.json"))["message_id"] == outcome.message_id


def test_keys_generate_writes_a_pair_that_signs_and_verifies(tmp_path, capsys):
    assert main(["keys", "generate", "--out", str(tmp_path), "--agency", "000.00.04.H62", "--key-id", "dpi-2026"]) == 0
    signing = load_signing_key(str(tmp_path / "dpi-2026.key.pem"), "dpi-2026")
    trusted = load_trusted_keys(tmp_path / "trusted")
    assert trusted.verify("000.00.04.H62", "dpi-2026", signing.sign(b"x"), b"x")
    assert not trusted.verify("000.00.04.H62", "dpi-2026", signing.sign(b"x"), b"y")
    assert (tmp_path / "dpi-2026.key.pem").stat().st_mode & 0o077 == 0
    assert main(["keys", "generate", "--out", str(tmp_path), "--agency", "000.00.04.H62",
                 "--key-id", "dpi-2026"]) == 1  # never overwrites a key


def test_a_hostile_dtd_fetches_nothing_even_in_a_signed_package(agency_province, source_url, keys, tmp_path):
    from simulators.lgsp import RecordingServer

    agency, procedures, _ = agency_province
    signing, trusted, _ = keys
    published = _publish(source_url, agency, signing, tmp_path / "outbox")
    manifest, body = _parts(tmp_path / "outbox" / f"{published.message_id}.zip")
    target = f"sqlite:///{tmp_path / 'target.db'}"
    catalogue_warehouse(target, procedures)
    with RecordingServer() as server:
        hostile = body.replace(b"?>", f'?>\n<!DOCTYPE Message [<!ENTITY % p SYSTEM "{server.url}/x.dtd"> %p;]>'
                               .encode(), 1)
        package = _write(tmp_path / "hostile.zip", _resign(manifest, hostile, signing), hostile)
        with pytest.raises(PackageRefused, match="message.xml"):
            _receive(target, package, trusted)
        assert server.requests == []
    assert _count(target, "SELECT count(*) FROM fact_dossier") == 0


def test_publish_and_inbox_from_the_configuration(agency_province, source_url, keys, tmp_path, monkeypatch,
                                                  capsys):
    from exchange.packages import receive_inbox

    agency, procedures, _ = agency_province
    signing, _, _ = keys
    key_file = tmp_path / "k1.key.pem"
    generate_keypair(tmp_path / "agency", SENDER, "k2")
    key_file.write_bytes((tmp_path / "agency" / "k2.key.pem").read_bytes())
    monkeypatch.setenv("WAREHOUSE_URL", source_url)
    monkeypatch.setenv("LIENTHONG_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("LIENTHONG_SIGNING_KEY", str(key_file))
    monkeypatch.setenv("LIENTHONG_SIGNING_KEY_ID", "k2")
    monkeypatch.setenv("LIENTHONG_EXCHANGE_RECEIVERS", agency)
    monkeypatch.setenv("LIENTHONG_OUTBOX", str(tmp_path / "inbox"))
    monkeypatch.delenv("LIENTHONG_DEBUG", raising=False)
    assert main(["publish"]) == 0
    assert "delivered" in capsys.readouterr().out
    assert main(["publish"]) == 0
    assert "nothing published" in capsys.readouterr().out
    [package] = list((tmp_path / "inbox").glob("*.zip"))
    manifest, body = _parts(package)
    _write(tmp_path / "inbox" / "0-tampered.zip", *_flip_one_byte(manifest, body, keys))

    target = f"sqlite:///{tmp_path / 'target.db'}"
    catalogue_warehouse(target, procedures)
    monkeypatch.setenv("WAREHOUSE_URL", target)
    monkeypatch.setenv("LIENTHONG_TRUSTED_KEYS", str(tmp_path / "agency" / "trusted"))
    done = receive_inbox(tmp_path / "inbox")
    assert done["accepted"] == [package.name]
    assert done["refused"] == ["0-tampered.zip: body SHA-256 does not match the manifest"]
    assert (tmp_path / "inbox" / "received" / package.name).exists()
    assert (tmp_path / "inbox" / "refused" / "0-tampered.zip.reason.txt").read_text().startswith("refused: body")
    assert list((tmp_path / "inbox").glob("*.zip")) == []
    assert _count(target, "SELECT count(*) FROM fact_dossier") == manifest["dossier_count"]
