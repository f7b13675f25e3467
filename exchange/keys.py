"""Ed25519 keys of the dossier exchange: the signing key from configuration, the trusted public keys."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.settings import MissingSetting
from transforms.codes import AGENCY_CODE

__all__ = [
    "SigningKey",
    "TrustedKeys",
    "generate_keypair",
    "load_signing_key",
    "load_trusted_keys",
]

# A key id is a file name as well (trusted/<agency>/<key_id>.pem): no path separators.
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class SigningKey:
    """An agency's Ed25519 private key and its id; never shown by `repr`."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        return self.private_key.sign(data)

    def public_pem(self) -> str:
        """The public half, PEM (SubjectPublicKeyInfo), to hand to receiving agencies."""
        return _public_pem(self.private_key.public_key())


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys this warehouse accepts, by sender agency code, then key id."""

    keys: Mapping[str, Mapping[str, Ed25519PublicKey]] = field(default_factory=dict)

    def lookup(self, sender: str, key_id: str) -> Ed25519PublicKey | None:
        """The public key `key_id` of `sender`, or None when it is not trusted."""
        return self.keys.get(sender, {}).get(key_id)

    def verify(self, sender: str, key_id: str, signature: bytes, data: bytes) -> bool:
        """True when `signature` is `sender`'s key `key_id` over `data`; False otherwise."""
        key = self.lookup(sender, key_id)
        if key is None:
            return False
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _pem_text(value: str, what: str) -> bytes:
    """A PEM given inline, or read from the file `value` names."""
    if "-----BEGIN" in value:
        return value.encode("ascii")
    path = Path(value).expanduser()
    if not path.is_file():
        raise MissingSetting(f"{what}: {path} is not a file nor a PEM key")
    return path.read_bytes()


def load_signing_key(key: str | None = None, key_id: str | None = None, *,
                     environ: Mapping[str, str] | None = None) -> SigningKey:
    """The signing key: `key` (a PEM or a path to one) and `key_id`, else LIENTHONG_SIGNING_KEY and
    LIENTHONG_SIGNING_KEY_ID. A missing one is an error, never a made-up key."""
    env = os.environ if environ is None else environ
    key = key or env.get("LIENTHONG_SIGNING_KEY", "").strip()
    key_id = key_id or env.get("LIENTHONG_SIGNING_KEY_ID", "").strip()
    if not key:
        raise MissingSetting("LIENTHONG_SIGNING_KEY is not set: packages cannot be signed "
                             "(a PEM Ed25519 private key or its path; `lienthong keys generate` makes one)")
    if not key_id or not _KEY_ID.match(key_id):
        raise MissingSetting("LIENTHONG_SIGNING_KEY_ID is not set or not a key id "
                             "(letters, digits, '.', '_', '-'; at most 64)")
    try:
        private = serialization.load_pem_private_key(_pem_text(key, "LIENTHONG_SIGNING_KEY"), password=None)
    except ValueError as exc:
        raise MissingSetting(f"LIENTHONG_SIGNING_KEY is not a readable PEM private key ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise MissingSetting(f"LIENTHONG_SIGNING_KEY is a {type(private).__name__}, not an Ed25519 key")
    return SigningKey(key_id, private)


def _public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise MissingSetting(f"trusted key {where} is not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise MissingSetting(f"trusted key {where} is a {type(key).__name__}, not an Ed25519 key")
    return key


def load_trusted_keys(source: str | Path | None = None, *,
                      environ: Mapping[str, str] | None = None) -> TrustedKeys:
    """The trusted public keys from `source`, else LIENTHONG_TRUSTED_KEYS.

    `source` is a folder `<agency code>/<key id>.pem` (what `lienthong keys generate` writes under
    `trusted/`) or a JSON file `{"<agency code>": {"<key id>": "<PEM>"}}`. Unset: no key is trusted,
    so every package is refused (said in its reason).
    """
    env = os.environ if environ is None else environ
    source = source or env.get("LIENTHONG_TRUSTED_KEYS", "").strip()
    if not source:
        return TrustedKeys({})
    path = Path(source).expanduser()
    keys: dict[str, dict[str, Ed25519PublicKey]] = {}
    if path.is_dir():
        for pem in sorted(path.glob("*/*.pem")):
            agency, key_id = pem.parent.name, pem.stem
            if AGENCY_CODE.match(agency) and _KEY_ID.match(key_id):
                keys.setdefault(agency, {})[key_id] = _public_key(pem.read_bytes(), str(pem))
        return TrustedKeys(keys)
    if not path.is_file():
        raise MissingSetting(f"LIENTHONG_TRUSTED_KEYS: {path} is neither a folder nor a JSON file")
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MissingSetting(f"LIENTHONG_TRUSTED_KEYS: {path} is not JSON ({exc})") from None
    if not isinstance(listed, dict):
        raise MissingSetting(f"LIENTHONG_TRUSTED_KEYS: {path} must map agency codes to {{key id: PEM}}")
    for agency, by_id in listed.items():
        if not isinstance(by_id, dict):
            raise MissingSetting(f"LIENTHONG_TRUSTED_KEYS: {agency} must map key ids to PEM keys")
        for key_id, pem in by_id.items():
            keys.setdefault(agency, {})[key_id] = _public_key(str(pem).encode("ascii"), f"{agency}/{key_id}")
    return TrustedKeys(keys)


def generate_keypair(out_dir: str | Path, agency: str, key_id: str) -> tuple[Path, Path]:
    """A new Ed25519 key pair for `agency`: `<out>/<key_id>.key.pem` (private, mode 0600: the
    agency's LIENTHONG_SIGNING_KEY) and `<out>/trusted/<agency>/<key_id>.pem` (public: what the
    receiving agencies add to their LIENTHONG_TRUSTED_KEYS folder). Never overwrites a key."""
    if not AGENCY_CODE.match(agency):
        raise ValueError(f"{agency!r} is not an agency code (NNN.NN.NN.XNN, e.g. 000.00.04.H62)")
    if not _KEY_ID.match(key_id):
        raise ValueError(f"{key_id!r} is not a key id (letters, digits, '.', '_', '-'; at most 64)")
    out = Path(out_dir)
    private_path = out / f"{key_id}.key.pem"
    public_path = out / "trusted" / agency / f"{key_id}.pem"
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists: a key is never overwritten (choose another key id)")
    public_path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_text(_public_pem(private.public_key()), encoding="ascii")
    return private_path, public_path
