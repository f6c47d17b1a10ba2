"""The secrets a customer holds: the verification page's link token and the OTP.

Both are keyed by `security.secret_key` (HKDF, one key per purpose), so nothing the customer
sees is stored. A link token is the verification id and expiry time in one AES block, then an
HMAC of that block: opaque, short enough for an SMS, and unforgeable. An OTP is derived from
a random nonce kept in the send job, and only its keyed hash is kept in the verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flows.verification.flow import OtpIssue

_BLOCK = struct.Struct(">QI4x")  # verification id, expiry (unix seconds), zero padding
_MAC_BYTES = 10


class TokenError(Exception):
    """A link token that is forged, damaged (`expired` False) or past its expiry."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class LinkClaim:
    verification_id: int
    expires_at: datetime


class CustomerKeys:
    def __init__(self, secret_key: str) -> None:
        def key(purpose: bytes, length: int = 32) -> bytes:
            kdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose)
            return kdf.derive(secret_key.encode())

        self._link_cipher = Cipher(algorithms.AES(key(b"ordertalk link cipher", 16)), modes.ECB())
        self._link_mac = key(b"ordertalk link mac")
        self._otp_code = key(b"ordertalk otp code")
        self._otp_hash = key(b"ordertalk otp hash")

    def link_token(self, verification_id: int, expires_at: datetime) -> str:
        encryptor = self._link_cipher.encryptor()
        block = encryptor.update(_BLOCK.pack(verification_id, int(expires_at.timestamp())))
        block += encryptor.finalize()
        return _encode(block + self._mac(block))

    def read_link(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a token made here; TokenError when forged, damaged or expired.

        Only the exact spelling `link_token` makes is read: no padding, nothing after it, no
        other alphabet, no stray bits in the last character.
        """
        raw = _decode(token)
        block, mac = raw[:16], raw[16:]
        if len(raw) != 16 + _MAC_BYTES or not hmac.compare_digest(mac, self._mac(block)):
            raise TokenError("the link is not valid")
        decryptor = self._link_cipher.decryptor()
        verification_id, expiry = _BLOCK.unpack(decryptor.update(block) + decryptor.finalize())
        claim = LinkClaim(verification_id, datetime.fromtimestamp(expiry, UTC))
        if now >= claim.expires_at:
            raise TokenError("the link has expired", expired=True)
        return claim

    def new_otp(self, verification_id: int, length: int) -> OtpIssue:
        nonce = secrets.token_urlsafe(12)
        code = self.otp_code(nonce, length)
        return OtpIssue(nonce, self.otp_hash(verification_id, code))

    def otp_code(self, nonce: str, length: int) -> str:
        digest = hmac.new(self._otp_code, nonce.encode(), hashlib.sha256).digest()
        return str(int.from_bytes(digest[:8], "big") % 10**length).zfill(length)

    def otp_hash(self, verification_id: int, code: str) -> str:
        message = f"{verification_id}:{code}".encode()
        return hmac.new(self._otp_hash, message, hashlib.sha256).hexdigest()

    def _mac(self, block: bytes) -> bytes:
        return hmac.new(self._link_mac, block, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> bytes:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("the link is damaged") from None
    if _encode(raw) != token:
        raise TokenError("the link is damaged")
    return raw
