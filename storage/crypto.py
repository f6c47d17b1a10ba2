"""Secrets at rest: provider credentials are stored as Fernet ciphertext.

The Fernet key is derived (HKDF-SHA256) from `security.secret_key`, so the configured secret
never sits in the database and one secret can key several purposes apart.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBoxError(Exception):
    """Ciphertext that this key did not produce, or that was altered."""


class SecretBox:
    def __init__(self, secret_key: str, purpose: bytes = b"ordertalk credentials") -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, document: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(document, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretBoxError("credentials cannot be decrypted with this secret_key") from None
