"""The secrets a customer holds: the verification page's link token and the OTP.

Both are keyed by `security.secret_key` (HKDF, one key per purpose), so nothing the customer
sees is stored. A link token is the verification id and expiry time in one AES block, then an
HMAC of that block: opaque, short enough for an SMS, and unforgeable. An OTP is derived from
a random nonce kept in the send job, and only its keyed hash is kept in the verification.
After a key rotation the previous keys still read the links and codes they made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
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


@dataclass(frozen=True)
class _Keys:
    """The keys one secret derives, one per purpose."""

    link_cipher: Cipher[modes.ECB]
    link_mac: bytes
    otp_code: bytes
    otp_hash: bytes

    @classmethod
    def derive(cls, secret_key: str) -> _Keys:
        def key(purpose: bytes, length: int = 32) -> bytes:
            kdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose)
            return kdf.derive(secret_key.encode())

        return cls(
            Cipher(algorithms.AES(key(b"ordertalk link cipher", 16)), modes.ECB()),
            key(b"ordertalk link mac"),
            key(b"ordertalk otp code"),
            key(b"ordertalk otp hash"),
        )

    def mac(self, block: bytes) -> bytes:
        return hmac.new(self.link_mac, block, hashlib.sha256).digest()[:_MAC_BYTES]

    def otp_hash_of(self, verification_id: int, code: str) -> str:
        message = f"{verification_id}:{code}".encode()
        return hmac.new(self.otp_hash, message, hashlib.sha256).hexdigest()


class CustomerKeys:
    def __init__(self, secret_keys: str | Sequence[str]) -> None:
        """`secret_keys`: one key, or the keys of a rotation with the signing one first;
        the others are only tried on what the customer brings back."""
        keys = [secret_keys] if isinstance(secret_keys, str) else list(secret_keys)
        self._keys = [_Keys.derive(key) for key in keys]
        self._signing = self._keys[0]

    def link_token(self, verification_id: int, expires_at: datetime) -> str:
        encryptor = self._signing.link_cipher.encryptor()
        block = encryptor.update(_BLOCK.pack(verification_id, int(expires_at.timestamp())))
        block += encryptor.finalize()
        return _encode(block + self._signing.mac(block))

    def read_link(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a token made here; TokenError when forged, damaged or expired.

        Only the exact spelling `link_token` makes is read: no padding, nothing after it, no
        other alphabet, no stray bits in the last character.
        """
        raw = _decode(token)
        block, mac = raw[:16], raw[16:]
        keys = next((k for k in self._keys if hmac.compare_digest(mac, k.mac(block))), None)
        if len(raw) != 16 + _MAC_BYTES or keys is None:
            raise TokenError("the link is not valid")
        decryptor = keys.link_cipher.decryptor()
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
        digest = hmac.new(self._signing.otp_code, nonce.encode(), hashlib.sha256).digest()
        return str(int.from_bytes(digest[:8], "big") % 10**length).zfill(length)

    def otp_hash(self, verification_id: int, code: str, issued: str = "") -> str:
        """The keyed hash of `code`; with `issued` (the hash kept when the code was issued),
        under whichever key made that one, so a code sent before a key rotation still works."""
        for keys in self._keys if issued else ():
            code_hash = keys.otp_hash_of(verification_id, code)
            if hmac.compare_digest(code_hash, issued):
                return code_hash
        return self._signing.otp_hash_of(verification_id, code)


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
