"""The URLs providers call back, and the per-shop secret in those that cannot be signed.

Exotel and Gupshup sign nothing, so their callback paths carry `{shop_id}.{mac}`: a keyed
HMAC of the shop id that only this service can make. Nothing is stored; a wrong token is
told apart in constant time. Tokens are made with `security.secret_key`; after a rotation
those made with a previous key are still accepted (the URLs at the providers keep working
until they are updated).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


def _mac(secret_key: str, label: int | str) -> str:
    digest = hmac.new(secret_key.encode(), f"callbacks:{label}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode()


PLATFORM = 0  # the shop id in tokens of callbacks configured once for the platform's account


def ringcentral_token(secret_key: str, account_id: int = PLATFORM) -> str:
    """The verification token of a RingCentral webhook subscription: the platform's, or that
    of a shop's own account (`account_id`)."""
    label = PLATFORM if account_id == PLATFORM else f"ringcentral:{account_id}"
    return _mac(secret_key, label).replace("-", "").replace("_", "")[:24]


def shop_token(secret_key: str, shop_id: int) -> str:
    return f"{shop_id}.{_mac(secret_key, shop_id)}"


def shop_from_token(secret_keys: str | Sequence[str], token: str) -> int | None:
    """The shop a callback token belongs to, or None for a forged or malformed token.

    `secret_keys`: one key, or the keys of a rotation (a token made by any of them counts).
    """
    if not token.isascii():  # other digits pass isdigit(), and compare_digest takes ASCII
        return None
    shop_part, _, mac = token.partition(".")
    if not shop_part.isdigit() or len(shop_part) > 18:
        return None
    shop_id = int(shop_part)
    keys = [secret_keys] if isinstance(secret_keys, str) else secret_keys
    # Every key is tried, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(mac, _mac(key, shop_id)) for key in keys]
    return shop_id if any(matches) else None


@dataclass(frozen=True)
class CallbackUrls:
    public_url: str
    # One key, or the keys of a rotation: the first makes the tokens.
    secret_keys: str | Sequence[str]

    @property
    def signing_key(self) -> str:
        return self.secret_keys if isinstance(self.secret_keys, str) else self.secret_keys[0]

    def twilio(self, kind: str) -> str:
        """kind: messages | status | voice | voice/gather | voice/status."""
        return f"{self.public_url}/webhooks/twilio/{kind}"

    def exotel(self, shop_id: int, kind: str) -> str:
        """kind: passthru | call-status | sms-status | sms (customers' SMS to the shop)."""
        return f"{self.public_url}/webhooks/exotel/{shop_token(self.signing_key, shop_id)}/{kind}"

    def gupshup(self, shop_id: int = PLATFORM) -> str:
        """To be set as the Gupshup app's callback URL (once, for the platform's app)."""
        return f"{self.public_url}/webhooks/gupshup/{shop_token(self.signing_key, shop_id)}"

    def ringcentral(self, account_id: int = PLATFORM) -> str:
        """Where a RingCentral subscription delivers: the platform's, or a shop account's."""
        base = f"{self.public_url}/webhooks/ringcentral"
        return base if account_id == PLATFORM else f"{base}?account={account_id}"
