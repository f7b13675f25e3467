"""The LGSP feed simulator: its HTTP contract and the messages its builders produce."""

from __future__ import annotations

import io
from datetime import datetime

import httpx
import pytest
from lxml import etree

from connectors.lgsp import MessageRefused, check_message, load_message_schema
from simulators.lgsp import (
    DOSSIER_FIELDS,
    LGSP_NS,
    LgspSimulator,
    build_billion_laughs_message,
    build_message,
    build_schema_violating_message,
    build_xxe_message,
)
from transforms.timefmt import LOCAL_TZ

SENDER, RECEIVER = "000.00.04.H62", "000.00.00.H62"
RECORD = {
    "MaHoSo": "000.00.04.H62-160101-0001", "MaTTHC": "1.005190", "DonViXuLy": SENDER, "KenhThucHien": "2",
    "LoaiDoiTuong": "2", "TrangThaiHoSo": "2", "NgayTiepNhan": "20160101080000", "NgayHenTra": "",
    "NgayCapNhat": "20160101080000", "ChuHoSo": "Công ty TNHH Ánh Dương", "MaLinhVuc": "not in the schema",
}


def test_build_message_is_valid_and_carries_the_envelope():
    created = datetime(2017, 3, 1, 9, 30, tzinfo=LOCAL_TZ)
    msg = build_message([RECORD, RECORD], SENDER, RECEIVER, message_id="m-1", created_at=created)
    root = etree.fromstring(msg)
    load_message_schema().assertValid(root)
    ns = {"l": LGSP_NS}
    assert root.xpath("string(l:Header/l:MessageId)", namespaces=ns) == "m-1"
    assert root.xpath("string(l:Header/l:From/l:OrganId)", namespaces=ns) == SENDER
    assert root.xpath("string(l:Header/l:To/l:OrganId)", namespaces=ns) == RECEIVER
    assert root.xpath("string(l:Header/l:CreatedAt)", namespaces=ns) == "2017-03-01T09:30:00+07:00"
    assert root.xpath("string(l:Header/l:TraceList/l:Trace/l:Action)", namespaces=ns) == "send"
    dossier = root.find(f"{{{LGSP_NS}}}Body/{{{LGSP_NS}}}Dossier")
    names = [etree.QName(child).localname for child in dossier]
    assert names == [f for f in DOSSIER_FIELDS if RECORD.get(f)]  # schema order; "" and extras left out
    assert check_message(io.BytesIO(msg)).message_id == "m-1"


def test_build_message_ids_are_unique_by_default():
    first, second = (etree.fromstring(build_message([RECORD], SENDER, RECEIVER)) for _ in range(2))
    path = f"{{{LGSP_NS}}}Header/{{{LGSP_NS}}}MessageId"
    assert first.findtext(path) != second.findtext(path)


@pytest.mark.parametrize("hostile, reason", [
    (build_xxe_message(), "external entity declared"),
    (build_billion_laughs_message(), "entity expansion refused"),
])
def test_hostile_builders_are_refused(hostile, reason):
    assert b"<!DOCTYPE" in hostile
    with pytest.raises(MessageRefused, match=f"^{reason}$"):
        check_message(io.BytesIO(hostile))


def test_schema_violating_builder():
    bad = build_schema_violating_message([RECORD], drop_message_id=True)
    root = etree.fromstring(bad)
    assert root.find(f"{{{LGSP_NS}}}Header/{{{LGSP_NS}}}MessageId") is None
    assert not load_message_schema().validate(root)


def test_feed_index_message_and_ack():
    msgs = [build_message([RECORD], SENDER, RECEIVER, message_id=f"m-{n}") for n in (1, 2, 3)]
    with LgspSimulator(msgs) as feed, httpx.Client(base_url=feed.url) as http:
        index = http.get("/messages", params={"after": 0, "limit": 2}).json()
        assert index == {"messages": [{"cursor": 1, "id": "m-1", "url": "/messages/1"},
                                      {"cursor": 2, "id": "m-2", "url": "/messages/2"}], "next": 2}
        assert http.get("/messages", params={"after": 3}).json() == {"messages": [], "next": 3}
        answer = http.get("/messages/2")
        assert answer.headers["content-type"].startswith("application/xml")
        assert answer.content == msgs[1]
        assert http.get("/messages/9").status_code == 404
        assert http.post("/ack", json={"cursor": 2}).json() == {"acked": 2}
        assert feed.acked == 2
        # without `after`, the index starts after the acknowledged cursor
        assert [m["cursor"] for m in http.get("/messages").json()["messages"]] == [3]
        assert http.post("/ack", json={"cursor": 7}).status_code == 400
        assert http.get("/messages", params={"limit": 5000}).status_code == 400
        assert feed.acked == 2
        assert feed.publish(msgs[0], message_id="again") == 4


def test_faults_are_served_once_each():
    with LgspSimulator() as feed, httpx.Client(base_url=feed.url) as http:
        feed.inject("http_500", "http_429")
        assert http.get("/messages").status_code == 500
        assert http.get("/messages").status_code == 429
        assert http.get("/messages").status_code == 200
        with pytest.raises(ValueError, match="unknown fault"):
            feed.inject("explode")
