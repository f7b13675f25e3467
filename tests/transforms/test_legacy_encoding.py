"""Legacy Vietnamese encodings → Unicode NFC: golden names files, small tables, errors, detection.

The golden files were generated once with ``encode_legacy`` from ``names.utf8.txt``; the tables
behind it were checked entry by entry against xvnkb's ``vni.h``/``tcvn.h`` (see the module
docstring). ``names.utf8.txt`` holds the names in title case and then in upper case (as printed on
citizen ID cards). ``names.vni.bin`` is all of it. ``names.tcvn3.bin`` is only the lines TCVN3
(ABC) can hold: ABC has no upper-case toned letters (they came from ``.VnTimeH`` fonts, so the case
is not in the bytes), and pretending otherwise would make the golden test lie.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from transforms.legacy_encoding import (
    LegacyEncodingError,
    decode_legacy,
    detect_legacy_encoding,
    encode_legacy,
)

GOLDEN = Path(__file__).parent / "golden"
VOWELS = "aăâeêioôơuưy"
TONES = {"none": "", "huyền": "\u0300", "sắc": "\u0301", "hỏi": "\u0309", "ngã": "\u0303", "nặng": "\u0323"}
ALL_TONED = {unicodedata.normalize("NFC", v + t) for v in VOWELS for t in TONES.values()}  # 72 letters


def golden_text() -> str:
    return (GOLDEN / "names.utf8.txt").read_text(encoding="utf-8")


def has_upper_toned(line: str) -> bool:
    """Whether a line has an upper-case letter carrying a tone mark (not representable in ABC)."""
    return any(
        c.isupper() and any(m in unicodedata.normalize("NFD", c) for m in list(TONES.values())[1:]) for c in line
    )


def abc_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not has_upper_toned(line)]


def missing(required: set[str], text: str) -> list[str]:
    return sorted(required - set(text))


# --- the golden set cannot silently shrink --------------------------------------------------------


def test_golden_covers_every_vowel_with_every_tone_in_both_cases():
    text = golden_text()
    assert text == unicodedata.normalize("NFC", text)
    names = text.splitlines()
    assert len(names) >= 60  # at least 30 names, each in title case and in upper case
    assert missing(ALL_TONED, text) == []
    assert missing({c.upper() for c in ALL_TONED}, text) == []
    assert missing(set("đĐưƯ"), text) == []


def test_tcvn3_golden_subset_still_covers_every_lower_case_letter():
    abc = "\n".join(abc_lines(golden_text()))
    assert len(abc.splitlines()) >= 30
    assert missing(ALL_TONED, abc) == []
    # ABC's upper-case letters: ASCII plus the seven untoned base letters.
    assert missing(set("đĐưƯĂÂÊÔƠ"), abc) == []


# --- golden files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "path", "expected"),
    [
        ("vni", "names.vni.bin", lambda text: text),
        ("tcvn3", "names.tcvn3.bin", lambda text: "\n".join(abc_lines(text)) + "\n"),
    ],
)
def test_golden_file_decodes_exactly_and_round_trips(encoding, path, expected):
    data = (GOLDEN / path).read_bytes()
    text = decode_legacy(data, encoding)
    assert text == expected(golden_text())
    assert encode_legacy(text, encoding) == data
    assert detect_legacy_encoding(data) == encoding


def test_tcvn3_golden_keeps_u_horn_stored_as_soft_hyphen():
    data = (GOLDEN / "names.tcvn3.bin").read_bytes()
    assert b"\xad" in data  # ư read as cp1252 is U+00AD; it must convert, not vanish
    assert "Phường" in decode_legacy(data, "tcvn3")


def test_utf8_golden_is_detected_as_utf8():
    assert detect_legacy_encoding(golden_text().encode("utf-8")) == "utf-8"


# --- small tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        (b"Nguy\xd4n V\xa8n \xa7\xad\xeec", "tcvn3", "Nguyễn Văn Được"),
        (b"Ph\xad\xeang T\xddch S\xacn", "tcvn3", "Phường Tích Sơn"),
        (b"Nguye\xe3n Va\xean \xd1\xf6\xf4\xefc", "vni", "Nguyễn Văn Được"),
        (b"NGUYE\xc3N \xd1\xd6\xd4\xcfC", "vni", "NGUYỄN ĐƯỢC"),
        (b"Ho\xcca Th\xf5", "cp1258", "Hòa Thơ"),  # cp1258: o + combining grave, precomposed ơ
        (b"Vi\xea\xf2t Nam", "cp1258", "Việt Nam"),  # ê + combining dot below
        ("Nguyễn".encode(), "utf-8", "Nguyễn"),
        (unicodedata.normalize("NFD", "Nguyễn Thị Ánh").encode("utf-8"), "utf-8", "Nguyễn Thị Ánh"),
    ],
)
def test_decode_legacy(data, encoding, text):
    assert decode_legacy(data, encoding) == text


def test_tcvn3_upper_case_font_text_decodes_to_lower_case_letters():
    # ".VnTimeH" headings use the lower-case bytes; the case was in the font, so toned letters come back lower case.
    assert decode_legacy(b"C\xe9NG H\xb8A", "tcvn3") == "CộNG HáA"


@pytest.mark.parametrize("encoding", ["vni", "cp1258", "utf-8"])
def test_round_trip_of_the_whole_golden_text(encoding):
    text = golden_text()
    assert decode_legacy(encode_legacy(text, encoding), encoding) == text


@pytest.mark.parametrize(
    ("data", "encoding", "offset"),
    [
        (b"Ph\x81\xad\xeang", "tcvn3", 2),  # 0x81 is no letter in ABC, nothing in cp1252
        (b"Ph\x8a\xad\xeang", "tcvn3", 2),  # 0x8A is cp1252's Š: a letter, never mapped
        (b"Nguye\xe3n \xb0", "vni", 8),
        (b"Nguy\xe1\xbb", "utf-8", 4),
        (b"Vi\x81t", "cp1258", 2),
    ],
)
def test_undecodable_byte_is_an_error_naming_its_offset(data, encoding, offset):
    with pytest.raises(LegacyEncodingError, match=f"offset {offset}\\b"):
        decode_legacy(data, encoding)


@pytest.mark.parametrize("encoding", ["tcvn3", "vni"])
@pytest.mark.parametrize(("byte", "char"), [(b"\x93", "“"), (b"\x94", "”"), (b"\x91", "‘"), (b"\x92", "’"),
                                           (b"\x85", "…"), (b"\x96", "–"), (b"\x97", "—"), (b"\x95", "•"),
                                           (b"\x80", "€")])
def test_stray_windows_1252_punctuation_reads_as_itself_and_round_trips(encoding, byte, char):
    # Word on Windows puts cp1252 punctuation into text typed in a TCVN3 or VNI font
    data = encode_legacy("Đề nghị ", encoding) + byte + b"x" + byte
    assert decode_legacy(data, encoding) == f"Đề nghị {char}x{char}"
    assert encode_legacy(f"Đề nghị {char}x{char}", encoding) == data


def test_tcvn3_refuses_upper_case_toned_letters_instead_of_lowering_them():
    with pytest.raises(LegacyEncodingError, match="upper-case toned"):
        encode_legacy("Nguyễn Thị Ánh Tuyết", "tcvn3")


def test_unknown_encoding_is_an_error():
    with pytest.raises(LegacyEncodingError, match="unknown encoding"):
        decode_legacy(b"abc", "viscii")


def test_legacy_encoding_error_is_a_value_error():
    assert issubclass(LegacyEncodingError, ValueError)


@pytest.mark.parametrize("encoding", ["tcvn3", "vni", "cp1258"])
def test_detect_picks_the_encoding_of_a_short_sentence(encoding):
    text = "Ủy ban nhân dân phường Tích Sơn cấp giấy chứng nhận cho ông Đặng Văn Được"
    if encoding == "tcvn3":
        text = text.replace("Ủ", "ủ")
    assert detect_legacy_encoding(encode_legacy(text, encoding)) == encoding


@pytest.mark.parametrize("name", ["Ưng Hoàng Phúc", "Huỳnh Tấn Phát", "Bùi Thị Vẽ"])
def test_short_vni_name_is_not_taken_for_tcvn3_because_its_vowels_decode_to_letters(name):
    # Read as TCVN3, VNI's mark bytes are letters too ("Hoaứng"); only the syllable shapes tell them apart.
    assert detect_legacy_encoding(encode_legacy(name, "vni")) == "vni"
