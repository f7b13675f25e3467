"""Vietnamese text and code normalisation: Unicode NFC, whitespace, code cleanup."""

from __future__ import annotations

import unicodedata


def text_normalise(value: object) -> str | None:
    """Text to Unicode NFC with runs of whitespace folded to one space; empty → None.

    Rule `text.nfc`: the portal and agency systems send decomposed (NFD) Vietnamese and stray
    spaces; the standard stores composed text so that equal names compare equal.
    """
    if value is None:
        return None
    text = str(value)
    if not text.isascii():  # ASCII is its own NFC
        text = unicodedata.normalize("NFC", text)
    # split() cuts at the characters `\s` matches (str.isspace): the runs folded, the ends dropped
    return " ".join(text.split()) or None


def code_normalise(value: object, *, upper: bool = False) -> str | None:
    """A code as text: NFC, no whitespace at all, optionally upper-cased; empty → None."""
    if value is None:
        return None
    text = str(value)
    code = "".join((text if text.isascii() else unicodedata.normalize("NFC", text)).split())
    if upper:
        code = code.upper()
    return code or None


def int_code(value: object) -> tuple[int | None, bool]:
    """A numeric code sent as text ("2", " 02") → (2, True); empty → (None, True); junk → (None, False)."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, True
    text = str(value).strip()
    if not text:
        return None, True
    if text.isdigit():
        return int(text), True
    return None, False
