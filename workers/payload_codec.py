"""Optional encryption of every payload the engine sends to Temporal (`PAYLOAD_KEYS`).

Run inputs, node outputs, review decisions and queries travel through Temporal's
history, which its operators (and its database's) can read. With keys set, each
payload is sealed with AES-256-GCM before it leaves the client or worker, so the
server stores only ciphertext; `meta-agent codec-server` decodes them for the
Temporal UI of operators who hold the keys.

Keys are `keyid:base64-of-32-bytes`, comma-separated, the first encrypting and
every one decrypting (the same scheme as SECRETS_KEYS): rotate by putting a new
key first and dropping the old one once no open run still holds payloads sealed
with it. Payloads that are not sealed (a run started with the plain `temporal`
CLI, a history from before the keys were set) pass through as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from persistence.secret_keys import NONCE_BYTES, Sealed, SecretDecryptError, SecretKeys

#: The encoding a sealed payload declares, and the metadata naming its key (the names
#: Temporal's own encryption samples use, so its tools recognise them).
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
_ASSOCIATED_DATA = b"meta-agent/payload/v1"


class PayloadDecryptError(ValueError):
    """A sealed payload that no configured key opens."""


class EncryptionCodec(PayloadCodec):
    """Seals payloads with the current key; opens those sealed with any configured key."""

    def __init__(self, keys: SecretKeys) -> None:
        self.keys = keys

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload, serialized whole (metadata too) and sealed."""
        sealed: list[Payload] = []
        for payload in payloads:
            box = self.keys.encrypt(payload.SerializeToString(), _ASSOCIATED_DATA)
            sealed.append(
                Payload(
                    metadata={
                        "encoding": ENCRYPTED_ENCODING,
                        KEY_ID_METADATA: box.key_id.encode(),
                    },
                    data=box.nonce + box.ciphertext,
                )
            )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each sealed payload opened; others as they are."""
        return [self._open(p) for p in payloads]

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        data = payload.data
        box = Sealed(ciphertext=data[NONCE_BYTES:], nonce=data[:NONCE_BYTES], key_id=key_id)
        try:
            plain = self.keys.decrypt(box, _ASSOCIATED_DATA)
        except SecretDecryptError as exc:
            raise PayloadDecryptError(f"a payload {exc}") from None
        opened = Payload()
        opened.ParseFromString(plain)
        return opened
