"""Secrets at rest: provider credentials are stored as Fernet ciphertext.

The Fernet keys are derived (HKDF-SHA256) from `security.secret_key` and the previous keys
of a rotation, so the configured secrets never sit in the database and one secret can key
several purposes apart. The first key encrypts; every key decrypts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBoxError(Exception):
    """Ciphertext that none of the keys produced, or that was altered."""


class SecretBox:
    def __init__(
        self, secret_keys: str | Sequence[str], purpose: bytes = b"ordertalk credentials"
    ) -> None:
        """`secret_keys`: one key, or the keys of a rotation with the encrypting one first."""
        keys = [secret_keys] if isinstance(secret_keys, str) else list(secret_keys)
        self._fernet = MultiFernet([Fernet(_derive(key, purpose)) for key in keys])

    def seal(self, document: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(document, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretBoxError("credentials cannot be decrypted with this secret_key") from None


def _derive(secret_key: str, purpose: bytes) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(key)
