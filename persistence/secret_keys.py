"""The keys of the tenant secret store, and sealing a value to its (tenant, name).

Values are encrypted with AES-256-GCM. The associated data is the row's tenant
and name, so a ciphertext copied to another tenant's row, or renamed, fails its
authentication check instead of handing one tenant's secret to another.

`SECRETS_KEYS` holds `keyid:base64-of-32-bytes` entries, comma-separated. The
first is current and encrypts; the others only decrypt, which is what lets an
operator rotate: put a new key first, re-encrypt (`meta-agent secrets rotate`),
then drop the old one. Nothing here ever puts key material or a value into a
message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Versions the associated data: a later scheme can tell its rows from these.
_AAD_PREFIX = b"meta-agent/tenant-secret/v1"


class SecretKeysError(ValueError):
    """SECRETS_KEYS is malformed; the message says which entry, never what it holds."""


class SecretDecryptError(ValueError):
    """A stored value does not open: unknown key id, wrong key, or moved to another row."""


@dataclass(frozen=True)
class Sealed:
    """A value as the `tenant_secrets` row stores it."""

    ciphertext: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    key_id: str


@dataclass(frozen=True)
class SecretKeys:
    """The current key (encrypts) and every key still accepted for decryption."""

    current_id: str
    _keys: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> SecretKeys:
        """Keys from `keyid:base64,keyid:base64,...`; raises SecretKeysError."""
        entries = [e.strip() for e in text.split(",") if e.strip()]
        if not entries:
            raise SecretKeysError("no key given; expected keyid:base64-of-32-bytes[,...]")
        keys: dict[str, bytes] = {}
        for position, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not KEY_ID.match(key_id):
                raise SecretKeysError(
                    f"entry {position} is not keyid:base64-of-32-bytes "
                    "(key ids use letters, digits, '.', '_' and '-', at most 64)"
                )
            if key_id in keys:
                raise SecretKeysError(f"key id {key_id!r} is given twice")
            try:
                raw = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise SecretKeysError(f"key {key_id!r} is not valid base64") from None
            if len(raw) != KEY_BYTES:
                raise SecretKeysError(
                    f"key {key_id!r} decodes to {len(raw)} bytes; AES-256 needs {KEY_BYTES}"
                )
            keys[key_id] = raw
        return cls(current_id=next(iter(keys)), _keys=keys)

    @staticmethod
    def generate_entry(key_id: str | None = None) -> str:
        """A fresh `keyid:base64` entry for SECRETS_KEYS (or the dev stack's key file)."""
        key_id = key_id or f"k{secrets.token_hex(4)}"
        if not KEY_ID.match(key_id):
            raise SecretKeysError(f"key id {key_id!r}: use letters, digits, '.', '_' and '-'")
        return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the configured keys, the current one first."""
        return tuple(self._keys)

    def seal(self, tenant_id: uuid.UUID, name: str, value: str) -> Sealed:
        """`value` encrypted with the current key, bound to (`tenant_id`, `name`)."""
        return self.encrypt(value.encode(), _associated_data(tenant_id, name))

    def open(self, tenant_id: uuid.UUID, name: str, sealed: Sealed) -> str:
        """The value of a row of (`tenant_id`, `name`); raises SecretDecryptError."""
        if sealed.key_id not in self._keys:
            raise SecretDecryptError(
                f"secret {name} is encrypted with key {sealed.key_id!r}, which is not in "
                f"SECRETS_KEYS (keys there: {', '.join(self._keys)})"
            )
        try:
            plain = self.decrypt(sealed, _associated_data(tenant_id, name))
        except SecretDecryptError:
            raise SecretDecryptError(
                f"secret {name} does not decrypt with key {sealed.key_id!r}: the key differs "
                "from the one that stored it, or the row was altered or copied from another "
                "tenant or name; store the value again with `meta-agent secrets set`"
            ) from None
        return plain.decode()

    def encrypt(self, plain: bytes, associated_data: bytes) -> Sealed:
        """`plain` encrypted with the current key (AES-256-GCM, a fresh nonce), bound to
        `associated_data`.
        """
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self._keys[self.current_id]).encrypt(nonce, plain, associated_data)
        return Sealed(ciphertext=ciphertext, nonce=nonce, key_id=self.current_id)

    def decrypt(self, sealed: Sealed, associated_data: bytes) -> bytes:
        """What `encrypt` sealed; raises SecretDecryptError (unknown key, altered or moved)."""
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise SecretDecryptError(
                f"encrypted with key {sealed.key_id!r}, which is not configured "
                f"(keys: {', '.join(self._keys)})"
            )
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
        except (InvalidTag, ValueError):
            raise SecretDecryptError(
                f"does not decrypt with key {sealed.key_id!r}: another key of that name, or altered"
            ) from None


def _associated_data(tenant_id: uuid.UUID, name: str) -> bytes:
    # NUL cannot occur in a UUID's text nor in a secret name: the parts cannot run together.
    return b"\x00".join((_AAD_PREFIX, str(tenant_id).encode(), name.encode()))
