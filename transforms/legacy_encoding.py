"""Legacy Vietnamese text encodings (TCVN3/ABC, VNI Windows, Windows-1258, UTF-8) to and from Unicode NFC.

Python has no TCVN3 or VNI codec, and neither maintained package checked is exact: ``vniencoder``
0.2.1 converts VNI *typing* (digits), not the VNI font bytes; ``viparse`` 0.1.31's VNI table lacks
ẳ/Ẳ and reads Ỵ as ``YÏ``, and it passes unknown bytes through silently and cannot encode. So the
two tables live here as data.

Tables
------
TCVN3 (ABC) is TCVN 5712:1993 VN3, the byte layout of the ``.Vn*`` fonts: ASCII, the 67 lower-case
letters and the 7 upper-case base letters Ă Â Ê Ô Ơ Ư Đ, one byte each. ``ư`` is byte 0xAD, which
cp1252/latin-1 shows as a soft hyphen — it is a letter and is never stripped. VN3 has **no
upper-case toned letters**: headings were set in the ``.VnTimeH`` (upper-case) fonts using the
*lower-case* bytes, and the case lives in the font, not the bytes. So decoding yields lower case for
such text (``¸NH`` in ``.VnTimeH`` decodes to ``áNH``), and ``encode_legacy`` refuses an upper-case
toned letter rather than silently lower-casing it.

VNI Windows (``VNI-*`` fonts) writes a toned vowel as a base letter followed by one mark byte
(``a`` + 0xF9 = á, ``a`` + 0xE1 = ấ), except for ơ ư đ, the i-family and ỵ, which are single bytes.
Upper-case text uses the upper-case base and the upper-case (Latin-1 ``str.upper``) mark byte.

Cross-check (done when the golden files were generated): every one of the 134 VNI entries and
the 67 TCVN3 lower-case + 7 upper-case base entries was compared with the independent tables
``vni.h`` and ``tcvn.h`` of xvnkb (github.com/lamdao/xvnkb, Dao Hai Lam, 2002) — all agree; the
TCVN3 table also agrees with viparse's ``normalize/tcvn3.py``.

Stray Windows-1252 punctuation: Word and Excel on a Windows machine insert cp1252 punctuation
(smart quotes, dashes, the ellipsis, the bullet, €) into text typed in a TCVN3 or VNI font, as its
cp1252 bytes 0x80–0x9F. No letter of either encoding is in that range, so those bytes
(``CP1252_PUNCTUATION``: ``“ ” ‘ ’ ‚ „ – — … • † ‡ ‰ ‹ › € ™``) decode to the Unicode character they
are in cp1252 and encode back to it; a name or summary keeps its quotes, and a code holding an en
dash fails its pattern in the quality gate (the row is quarantined, not the file refused).

Strictness: any other byte that is not ASCII and not a letter of the encoding (0x81, the cp1252
letters Š Œ Ž ƒ …, VNI's 0xA0–0xBF) raises ``LegacyEncodingError`` naming its offset: it means the
wrong encoding or a damaged file, and is never converted to something unchecked.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["CP1252_PUNCTUATION", "ENCODINGS", "LegacyEncodingError", "decode_legacy", "detect_legacy_encoding",
           "encode_legacy"]

ENCODINGS = ("tcvn3", "vni", "cp1258", "utf-8")


class LegacyEncodingError(ValueError):
    """Bytes that are not valid in the named encoding, or text it cannot represent."""


# Unicode letters, in the order of the rows below: for each vowel, no tone, huyền, sắc, hỏi, ngã, nặng.
_TONED = "aàáảãạ ăằắẳẵặ âầấẩẫậ eèéẻẽẹ êềếểễệ iìíỉĩị oòóỏõọ ôồốổỗộ ơờớởỡợ uùúủũụ ưừứửữự yỳýỷỹỵ"

# TCVN 5712:1993 VN3 (ABC) bytes, aligned with _TONED (lower case), written as latin-1 characters.
# "-" marks the plain ASCII vowel, which is itself.
_TCVN3_LOWER = "-µ¸¶·¹ ¨»¾¼½Æ ©ÇÊÈÉË -ÌÐÎÏÑ ªÒÕÓÔÖ -×ÝØÜÞ -ßãáâä «åèæçé ¬êíëìî -ïóñòô \xadõøö÷ù -úýûüþ"
_TCVN3_EXTRA = {"đ": "®", "Ă": "¡", "Â": "¢", "Ê": "£", "Ô": "¤", "Ơ": "¥", "Ư": "¦", "Đ": "§"}

# VNI Windows byte sequences, aligned with _TONED (lower case), as latin-1 characters; upper case
# is the same sequence through str.upper() (checked entry by entry against xvnkb's vni.h).
_VNI_LOWER = (
    "a aø aù aû aõ aï|aê aè aé aú aü aë|aâ aà aá aå aã aä|e eø eù eû eõ eï|eâ eà eá eå eã eä|"
    "i ì í æ ó ò|o oø où oû oõ oï|oâ oà oá oå oã oä|ô ôø ôù ôû ôõ ôï|u uø uù uû uõ uï|"
    "ö öø öù öû öõ öï|y yø yù yû yõ î"
)


def _build_tcvn3() -> dict[str, bytes]:
    table: dict[str, bytes] = {}
    for letters, codes in zip(_TONED.split(), _TCVN3_LOWER.split(), strict=True):
        for letter, code in zip(letters, codes, strict=True):
            if code != "-":
                table[letter] = code.encode("latin-1")
    for letter, code in _TCVN3_EXTRA.items():
        table[letter] = code.encode("latin-1")
    return table


def _build_vni() -> dict[str, bytes]:
    table: dict[str, bytes] = {"đ": "ñ".encode("latin-1"), "Đ": "Ñ".encode("latin-1")}
    for letters, row in zip(_TONED.split(), _VNI_LOWER.split("|"), strict=True):
        for letter, code in zip(letters, row.split(), strict=True):
            if len(code) > 1 or not code.isascii():
                table[letter] = code.encode("latin-1")
                table[letter.upper()] = code.upper().encode("latin-1")
    return table


# cp1252's punctuation in 0x80–0x9F (not its letters Š Œ Ž ƒ š œ ž Ÿ, nor ˆ ˜): what a Windows
# program inserts into TCVN3/VNI text. Same bytes in both encodings, where no letter lives.
CP1252_PUNCTUATION: dict[bytes, str] = {
    bytes([code]): bytes([code]).decode("cp1252")
    for code in (0x80, 0x82, 0x84, 0x85, 0x86, 0x87, 0x89, 0x8B, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96,
                 0x97, 0x99, 0x9B)
}

_ENCODE: dict[str, dict[str, bytes]] = {
    name: {**{char: code for code, char in CP1252_PUNCTUATION.items()}, **table}
    for name, table in (("tcvn3", _build_tcvn3()), ("vni", _build_vni()))
}
_DECODE: dict[str, dict[bytes, str]] = {
    name: {code: letter for letter, code in table.items()} for name, table in _ENCODE.items()
}
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")


def decode_legacy(data: bytes, encoding: str) -> str:
    """Bytes in a legacy Vietnamese encoding → Unicode NFC text.

    Raises ``LegacyEncodingError`` naming the first byte offset that is not valid in ``encoding``.
    """
    if encoding in _DECODE:
        return unicodedata.normalize("NFC", _decode_table(data, encoding))
    if encoding in ("cp1258", "utf-8"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as err:
            raise LegacyEncodingError(
                f"{encoding}: byte 0x{data[err.start]:02X} at offset {err.start} is not valid ({err.reason})"
            ) from err
        return unicodedata.normalize("NFC", text)
    raise LegacyEncodingError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")


def _decode_table(data: bytes, encoding: str) -> str:
    table = _DECODE[encoding]
    out: list[str] = []
    i = 0
    while i < len(data):
        # Longest match first: VNI's base letter + mark byte must win over the bare base letter.
        pair = data[i : i + 2]
        if len(pair) == 2 and pair in table:
            out.append(table[pair])
            i += 2
            continue
        single = data[i : i + 1]
        if single in table:
            out.append(table[single])
        elif data[i] < 0x80:
            out.append(chr(data[i]))
        else:
            raise LegacyEncodingError(f"{encoding}: byte 0x{data[i]:02X} at offset {i} is not a letter of the encoding")
        i += 1
    return "".join(out)


def encode_legacy(text: str, encoding: str) -> bytes:
    """Unicode text → bytes in a legacy Vietnamese encoding; the inverse of ``decode_legacy``.

    Raises ``LegacyEncodingError`` naming the first character the encoding cannot represent (for
    TCVN3 that includes upper-case toned letters, which ABC only has through ``.VnTimeH`` fonts).
    """
    text = unicodedata.normalize("NFC", text)
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "cp1258":
        return b"".join(_encode_cp1258(char, pos) for pos, char in enumerate(text))
    if encoding not in _ENCODE:
        raise LegacyEncodingError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    table = _ENCODE[encoding]
    out: list[bytes] = []
    for pos, char in enumerate(text):
        if char in table:
            out.append(table[char])
        elif char.isascii():
            out.append(char.encode("ascii"))
        else:
            hint = " (TCVN3/ABC has no upper-case toned letters)" if encoding == "tcvn3" and char.isupper() else ""
            raise LegacyEncodingError(f"{encoding}: cannot encode {char!r} at character offset {pos}{hint}")
    return b"".join(out)


def _encode_cp1258(char: str, pos: int) -> bytes:
    # Windows-1258 holds some toned letters precomposed (á) and the rest as base + combining tone
    # (ế = ê + U+0301); take the precomposed byte when there is one, as Windows does.
    try:
        return char.encode("cp1258")
    except UnicodeEncodeError:
        pass
    decomposed = unicodedata.normalize("NFD", char)
    base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONE_MARKS))
    tones = "".join(c for c in decomposed if c in _TONE_MARKS)
    try:
        return (base + tones).encode("cp1258")
    except UnicodeEncodeError as err:
        raise LegacyEncodingError(f"cp1258: cannot encode {char!r} at character offset {pos}") from err


# --- detection -----------------------------------------------------------------------------------

_VIETNAMESE_LETTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzđ" + _TONED.replace(" ", "") + "ABCDEFGHIJKLMNOPQRSTUVWXYZĐ" + _TONED.upper()
)
_WORD = re.compile(r"[^\s\d.,;:!?()\[\]\"'/\\\-–—“”‘’‚„…•‹›«»]+")
# Vowel nuclei of Vietnamese syllables (tone removed): those that can end a syllable, and those
# that can take a final consonant. Checking the nucleus, not just "one to three vowels", is what
# tells a right decoding from a wrong one on short texts: VNI read as TCVN3 gives "hoaứng".
_OPEN_NUCLEI = (
    "iêu|oai|oay|oeo|uây|uôi|uya|uyu|ươi|ươu|yêu|"
    "ai|ao|au|ay|âu|ây|eo|êu|ia|iu|oa|oe|oi|ôi|ơi|ua|uê|ui|uơ|uy|ưa|ưi|ưu|"
    "a|e|ê|i|o|ô|ơ|u|ư|y"
)
_CLOSED_NUCLEI = "uyê|iê|yê|uô|ươ|oa|oă|oe|oo|uâ|uê|uy|a|ă|â|e|ê|i|o|ô|ơ|u|ư|y"
_SYLLABLE = re.compile(
    r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdđghklmnprstvx])?"
    rf"(?:(?:{_OPEN_NUCLEI})|(?:{_CLOSED_NUCLEI})(?P<coda>ch|ng|nh|[cmnpt]))"
)


# A well-formed multi-byte UTF-8 sequence (legacy text almost never forms one by chance).
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _is_syllable(word: str) -> bool:
    decomposed = unicodedata.normalize("NFD", word.lower())
    tones = [c for c in decomposed if c in _TONE_MARKS]
    if len(tones) > 1:
        return False
    base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONE_MARKS))
    match = _SYLLABLE.fullmatch(base)
    if match is None:
        return False
    # A syllable closed by p, t, c or ch only takes the sắc or nặng tone.
    if match["coda"] in ("c", "ch", "p", "t"):
        return bool(tones) and tones[0] in ("\u0301", "\u0323")
    return True


def _score(text: str) -> tuple[float, float]:
    words = _WORD.findall(text)
    syllables = sum(_is_syllable(w) for w in words) / len(words) if words else 0.0
    letters = [c for c in text if c.isalpha()]
    alphabet = sum(c in _VIETNAMESE_LETTERS for c in letters) / len(letters) if letters else 0.0
    return syllables, alphabet


def detect_legacy_encoding(data: bytes) -> str:
    """Guess which of ``ENCODINGS`` ``data`` is in.

    Heuristic: bytes that are valid UTF-8 are UTF-8 (legacy high bytes almost never form valid
    UTF-8 sequences, and pure ASCII reads the same in all four). Otherwise each of TCVN3, VNI and
    cp1258 that decodes without error is scored by (share of words that are well-formed Vietnamese
    syllables — onset, a vowel nucleus Vietnamese has, a coda it allows, at most one tone mark,
    and only sắc/nặng before p t c ch; share of letters in the Vietnamese alphabet), and the best
    score wins; ties go to TCVN3, then VNI, then cp1258 (a fixed, arbitrary order). A whole file
    decides reliably; a few words may not (cp1258 "Lê Văn An" is also valid TCVN3, "Lờ Vón An").
    Bytes that are mostly UTF-8 — at least 8 valid multi-byte sequences, and at least 4 for each
    invalid byte — are UTF-8 with damage: "utf-8" is returned, so that decoding fails at the bad
    byte instead of reading the whole text in a legacy table (which would succeed, garbled).
    Raises ``LegacyEncodingError`` if no candidate decodes.
    """
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    valid = len(_UTF8_SEQUENCE.findall(data))
    invalid = data.decode("utf-8", errors="replace").count("\ufffd") - data.count("\ufffd".encode())
    if valid >= 8 and valid >= 4 * invalid:
        return "utf-8"
    best: tuple[tuple[float, float], str] | None = None
    for encoding in ("tcvn3", "vni", "cp1258"):
        try:
            score = _score(decode_legacy(data, encoding))
        except LegacyEncodingError:
            continue
        if best is None or score > best[0]:
            best = (score, encoding)
    if best is None:
        raise LegacyEncodingError("bytes are not valid UTF-8, TCVN3, VNI or cp1258")
    return best[1]
