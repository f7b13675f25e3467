"""Hostile files for tests: Justice CSV exports, workbooks and exchange packages, crafted byte by byte."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
import struct
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connectors.filedrop import JUSTICE_AGENCY
from tests.hostile.net_sources import procedure
from tests.samples import justice_dossier

JUSTICE_PROCEDURE = "1.001234"  # tests.samples.justice_dossier's procedure
NAMES = ("Nguyễn Văn An", "Lê Thị Hoa", "Trần Văn Bình")  # TCVN3 writes them (no upper-case toned letter)
EXCHANGE_SENDER = "000.00.00.H62"


def justice_procedure() -> dict[str, Any]:
    """The portal procedure of the Justice dossiers: with it in the catalogue they load clean."""
    return dict(procedure(), MaTTHC=JUSTICE_PROCEDURE, TenTTHC="Cấp phiếu lý lịch tư pháp",
                MaCoQuanThucHien=JUSTICE_AGENCY)


def justice_records(overrides: dict[int, dict[str, Any]] | None = None, *, first: int = 1,
                    count: int = 3) -> list[dict[str, Any]]:
    """`count` clean Justice dossiers, numbered from `first` (codes `justice_code(n)`);
    `overrides[n]` changes dossier n."""
    overrides = overrides or {}
    return [justice_dossier(n, NAMES[(n - 1) % len(NAMES)], **overrides.get(n, {}))
            for n in range(first, first + count)]


def justice_code(n: int) -> str:
    return justice_dossier(n, "x")["MaHoSo"]


def report_row(code: str = JUSTICE_PROCEDURE, **counts: Any) -> dict[str, Any]:
    """One procedure row of a commune report, clean unless `counts` say otherwise."""
    return {"procedure_code": code, "received": 3, "online": 1, "on_time": 2, "late": 0, "pending": 1, **counts}


# -- zip surgery ---------------------------------------------------------------------------------


def rewrite_members(path: Path, changes: dict[str, Callable[[bytes], bytes]],
                    added: Iterable[tuple[str, bytes]] = ()) -> None:
    """Rewrite the zip at `path`: each member named in `changes` through its function, then `added`."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, changes[name](data) if name in changes else data)
        for name, data in added:
            archive.writestr(name, data)


def add_zeros(path: Path, name: str, size: int) -> None:
    """Append a member of `size` zero bytes, deflated (a zip bomb: 200 MB take 200 KB), streamed."""
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive, \
            archive.open(name, "w", force_zip64=True) as member:
        for _ in range(size // len(block)):
            member.write(block)
        member.write(bytes(size % len(block)))


def append_member(path: Path, name: str, data: bytes) -> None:
    """Append a member to the zip at `path`, even under a name it already holds."""
    import warnings

    with warnings.catch_warnings(), zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": meant
        archive.writestr(name, data)


def add_empty_members(path: Path, count: int) -> None:
    with zipfile.ZipFile(path, "a") as archive:
        for i in range(count):
            archive.writestr(f"xl/media/image{i}.png", b"")


def understate_size(path: Path, name: str, stated: int) -> None:
    """Write `stated` as the inflated size of member `name`, in its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    local = info.header_offset
    assert data[local:local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", data, local + 22, stated)
    central = data.index(b"PK\x01\x02")  # the central headers, to the member's
    while data[central + 46:central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, stated)
    path.write_bytes(bytes(data))


def damage_member(path: Path, name: str) -> None:
    """Flip bytes inside member `name`'s compressed data (its CRC cannot tell: inflating fails)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(40, 80):
        data[start + k] ^= 0xFF
    path.write_bytes(bytes(data))


def with_doctype(doctype: str, old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    """A member change: `doctype` before the root element, the text `old` (once) replaced by `new`."""
    def change(data: bytes) -> bytes:
        assert data.count(old) == 1, old
        return b'<?xml version="1.0"?>\n' + doctype.encode() + b"\n" + data.replace(old, new)
    return change


def billion_laughs_doctype(root: str, depth: int = 9) -> str:
    """An internal subset whose `&l<depth>;` expands to 10^depth copies of "lol"."""
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{level} "{f"&l{level - 1};" * 10}">' for level in range(1, depth + 1))
    return f"<!DOCTYPE {root} [{entities}]>"


_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def add_external_link(path: Path, target: str) -> None:
    """Give the workbook at `path` an external link to the workbook `target` (an URL or a path), as
    Excel writes one: an externalLink part, its relationship, a reference in workbook.xml."""
    link = (f'<externalLink xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><externalBook r:id="rId1"><sheetNames>'
            '<sheetName val="Sheet1"/></sheetNames><sheetDataSet><sheetData sheetId="0"><row r="1">'
            '<cell r="A1" t="n"><v>3</v></cell></row></sheetData></sheetDataSet></externalBook></externalLink>')
    rels = ('<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL_NS}/externalLinkPath" Target="{target}" TargetMode="External"/>'
            "</Relationships>")

    def workbook_rels(data: bytes) -> bytes:
        return data.replace(b"</Relationships>", f'<Relationship Id="rIdExt1" Type="{_REL_NS}/externalLink" '
                            'Target="/xl/externalLinks/externalLink1.xml"/></Relationships>'.encode())

    def workbook(data: bytes) -> bytes:
        return re.sub(rb"(</sheets>)", b'\\1<externalReferences><externalReference xmlns:r="' + _REL_NS.encode()
                      + b'" r:id="rIdExt1"/></externalReferences>', data, count=1)

    def content_types(data: bytes) -> bytes:
        return data.replace(b"</Types>", b'<Override PartName="/xl/externalLinks/externalLink1.xml" ContentType='
                            b'"application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/></Types>')

    rewrite_members(path, {"xl/_rels/workbook.xml.rels": workbook_rels, "xl/workbook.xml": workbook,
                           "[Content_Types].xml": content_types},
                    added=[("xl/externalLinks/externalLink1.xml", link.encode()),
                           ("xl/externalLinks/_rels/externalLink1.xml.rels", rels.encode())])


# -- exchange packages ---------------------------------------------------------------------------------


def package_record(n: int, **overrides: Any) -> dict[str, Any]:
    """A clean Justice dossier as `warehouse_dossiers` gives it (what `build_package` packs)."""
    record = {
        "MaHoSo": f"{JUSTICE_AGENCY}-170301-{n:04d}", "MaTTHC": JUSTICE_PROCEDURE,
        "TenTTHC": "Cấp phiếu lý lịch tư pháp", "DonViXuLy": JUSTICE_AGENCY, "NoiNopHoSo": "08707",
        "KenhThucHien": "2", "LoaiDoiTuong": "1",
        "TrangThaiHoSo": "9", "NgayTiepNhan": "20170301081530", "NgayHenTra": "20170311000000",
        "NgayKetThucXuLy": "20170309163000", "NgayTra": "", "NgayCapNhat": "20170309163000",
        "TrichYeuHoSo": "Đề nghị cấp phiếu lý lịch tư pháp", "DuocThanhToanTrucTuyen": "3", "LePhi": "200000",
        "_applicant_id_hash": f"{n:02d}" * 32, "_applicant_id_type": "1", "QuaTrinhXuLy": [],
    }
    record.update(overrides)
    return record


def resigned(manifest: dict[str, Any], body: bytes, signing: Any, **changes: Any) -> bytes:
    """The manifest bytes for `body`, with `changes`, signed again by `signing`: a package its
    sender really signed, so that what refuses it is the check of its content."""
    from exchange.packages import signed_bytes

    manifest = dict(manifest, body_sha256=hashlib.sha256(body).hexdigest(), **changes)
    manifest["signature"] = base64.b64encode(signing.sign(signed_bytes(manifest))).decode()
    return json.dumps(manifest).encode()


SYMLINK = (stat.S_IFLNK | 0o777) << 16  # a zip member's external attributes marking a symbolic link


def write_zip(path: Path, members: Iterable[tuple[str, bytes] | tuple[str, bytes, int]]) -> Path:
    """A zip of `members` (name, data[, external attributes]) as given: names twice, `../x`, links."""
    import warnings

    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": meant
        for name, data, *attributes in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if attributes:
                info.external_attr = attributes[0]
            archive.writestr(info, data)
    return path
