"""Applicant identity numbers: format check and keyed pseudonymisation (raw numbers are never kept)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

CCCD_DIGITS = 12  # LoaiDinhDanh 1: citizen identity card
CMND_DIGITS = 9  # LoaiDinhDanh 2: old identity card
_SEPARATORS = re.compile(r"[\s.\-]")
# What a key chain's fingerprint is computed over: a constant, so it identifies the chain without
# being the pseudonym of anything a citizen owns.
FINGERPRINT_INPUT = "lienthong-fingerprint"
FINGERPRINT_CHARS = 16


@dataclass(frozen=True)
class KeyChain:
    """The pseudonym keys in force, oldest first: a value's pseudonym is the keys' HMACs in turn.

    One key: HMAC(k, value). After a rotation to k2: HMAC(k2, HMAC(k1, value)) — what a stored
    pseudonym becomes when re-keyed with k2 alone, since the raw value is never kept to hash again
    (warehouse/pseudonym.py, docs/INTERFACES.md "Citizens' data"). `repr` never shows a key.
    """

    keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys or not all(self.keys):
            raise ValueError("a key chain needs at least one key, and no empty key")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("a key chain lists a key twice: each rotation adds a new key")

    @classmethod
    def of(cls, keys: Iterable[bytes | str]) -> KeyChain:
        """The chain of these keys, oldest first (text is encoded as UTF-8)."""
        return cls(tuple(k.encode("utf-8") if isinstance(k, str) else bytes(k) for k in keys))

    @property
    def current(self) -> bytes:
        """The newest key: the one a rotation applies to every stored pseudonym."""
        return self.keys[-1]

    @property
    def previous(self) -> KeyChain | None:
        """The chain before the newest key was added (None for a single key)."""
        return KeyChain(self.keys[:-1]) if len(self.keys) > 1 else None

    def pseudonymise(self, value: str) -> str:
        """HMAC-SHA256 under each key in turn (each over the previous one's hex digest)."""
        digest = value
        for key in self.keys:
            digest = _hmac_hex(key, digest)
        return digest

    @property
    def fingerprint(self) -> str:
        """A short public name of the chain: its pseudonym of a constant, 16 hex characters.

        It changes with every key of the chain and, like the data, a rotation takes it from the
        previous chain's full digest to HMAC(new key, that digest).
        """
        return self.pseudonymise(FINGERPRINT_INPUT)[:FINGERPRINT_CHARS]

    def __str__(self) -> str:
        return f"key chain {self.fingerprint} ({len(self.keys)} key{'s' if len(self.keys) > 1 else ''})"

    def __repr__(self) -> str:
        return f"KeyChain(fingerprint={self.fingerprint!r}, keys={len(self.keys)})"


# A transform takes one key (bytes) or the chain the settings give (PipelineSettings.require_pseudonym_key).
PseudonymKey = bytes | KeyChain


@dataclass(frozen=True)
class Pseudonym:
    """What the standard keeps of an ID number: its keyed hash and its type."""

    hash: str | None
    id_type: int | None
    valid: bool


def _hmac_hex(key: bytes, value: str) -> str:
    keyed = _keyed(key).copy()  # a copy of the keyed state: the key is not prepared again per value
    keyed.update(value.encode("utf-8"))
    return keyed.hexdigest()


@functools.lru_cache(maxsize=16)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def pseudonymise(key: PseudonymKey, value: str) -> str:
    """HMAC-SHA256 of a value under the configured key (or each key of a chain in turn), hex."""
    if isinstance(key, KeyChain):
        return key.pseudonymise(value)
    return _hmac_hex(key, value)


def id_number_pseudonymise(key: PseudonymKey, raw: object) -> Pseudonym:
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
