"""Applicant identity numbers: format check and keyed pseudonymisation (raw numbers are never kept)."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

CCCD_DIGITS = 12  # LoaiDinhDanh 1: citizen identity card
CMND_DIGITS = 9  # LoaiDinhDanh 2: old identity card
_SEPARATORS = re.compile(r"[\s.\-]")


@dataclass(frozen=True)
class Pseudonym:
    """What the standard keeps of an ID number: its keyed hash and its type."""

    hash: str | None
    id_type: int | None
    valid: bool


def pseudonymise(key: bytes, value: str) -> str:
    """HMAC-SHA256 of a value under the configured key, hex."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def id_number_pseudonymise(key: bytes, raw: object) -> Pseudonym:
    """Clean an ID number (spaces, dots, dashes), type it by its length, and hash it.

    Rule `applicant_id.type_from_length`: a 9-digit number is a CMND (type 2) and a 12-digit one
    a CCCD (type 1), whatever label the source gave it. Any other shape is invalid
    (`applicant_id.valid_format`); its hash is still computed so quarantine payloads can be
    matched without keeping the number.
    """
    if raw is None:
        return Pseudonym(None, None, True)
    digits = _SEPARATORS.sub("", str(raw))
    if not digits:
        return Pseudonym(None, None, True)
    hashed = pseudonymise(key, digits)
    if digits.isdigit() and len(digits) == CCCD_DIGITS:
        return Pseudonym(hashed, 1, True)
    if digits.isdigit() and len(digits) == CMND_DIGITS:
        return Pseudonym(hashed, 2, True)
    return Pseudonym(hashed, None, False)
