"""Shopify session tokens: the JWTs an app's extensions send as `Authorization: Bearer`.

A checkout UI extension gets one from `shopify.sessionToken.get()`, the post-purchase
extension as `inputData.token`. Shopify signs it HS256 with the app's API secret; its claims
are `iss`, `dest` (`https://{shop}.myshopify.com`), `aud` (the app's API key), `sub`, `exp`,
`nbf`, `iat`, `jti` and `sid`, and it lives a few minutes.

`read_session_token` checks the signature (HS256 only: never `none`, never another
algorithm), the audience, and the lifetime against the injected `now` (PyJWT's own time
checks would read the wall clock), and answers the shop's myshopify domain from `dest` and
the buyer the token was minted for: a checkout extension's `sub` is the signed-in customer's
GID; the post-purchase extension's `sub` is the purchase's reference, and its buyer is
`input_data.initialPurchase.customerId`. Every refusal is a `SessionTokenError` naming its
reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jwt

from providers.shopify.oauth import valid_shop_domain

ALGORITHM = "HS256"
# Seconds of clock skew allowed between Shopify minting a token and this server's clock.
LEEWAY_SECONDS = 10
_REQUIRED = ["aud", "dest", "exp", "nbf"]
_OPTIONS: Any = {
    "verify_signature": True,
    "verify_aud": True,
    "verify_exp": False,  # checked below against `now`, not the wall clock
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
    "require": _REQUIRED,
}


_CUSTOMER_GID = "gid://shopify/Customer/"


class SessionTokenError(ValueError):
    """The session token is not one Shopify issued to this app for a shop, now."""


@dataclass(frozen=True)
class SessionToken:
    shop: str  # the myshopify domain, e.g. example.myshopify.com
    customer_id: str  # Shopify's numeric id of the buyer, "" when the token names none


def read_session_token(
    token: str, *, api_key: str, api_secret: str, now: datetime
) -> SessionToken:
    """The shop and the buyer of a valid session token.

    Raises SessionTokenError with the reason the token is refused. `now` must be
    timezone-aware; `api_key` and `api_secret` must be set (ValueError otherwise: an empty
    secret would accept tokens anyone can sign).
    """
    if not api_key or not api_secret:
        raise ValueError("a Shopify api_key and api_secret are needed to verify session tokens")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    claims = _decode(token, api_key, api_secret)
    shop = _shop(claims["dest"])
    moment = now.timestamp()
    expires = _seconds(claims, "exp")
    if expires <= moment:
        raise SessionTokenError("the session token has expired")
    if _seconds(claims, "nbf") > moment + LEEWAY_SECONDS:
        raise SessionTokenError("the session token is not valid yet (nbf is in the future)")
    return SessionToken(shop, _customer_id(claims))


def _decode(token: str, api_key: str, api_secret: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SessionTokenError("the session token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise SessionTokenError(
            f"the session token's algorithm must be {ALGORITHM}, not {header.get('alg')!r}"
        )
    try:
        return jwt.decode(
            token, api_secret, algorithms=[ALGORITHM], audience=api_key, options=_OPTIONS
        )
    except jwt.InvalidSignatureError:
        raise SessionTokenError("the session token's signature is wrong") from None
    except jwt.MissingRequiredClaimError as exc:
        raise SessionTokenError(f"the session token has no {exc.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise SessionTokenError("the session token's aud is not this app's API key") from None
    except jwt.PyJWTError as exc:
        raise SessionTokenError(f"the session token is malformed: {exc}") from None


def _shop(dest: Any) -> str:
    """The myshopify domain of `dest`: `https://{shop}` (or, leniently, the bare domain)."""
    problem = SessionTokenError("the session token's dest is not a https://*.myshopify.com URL")
    if not isinstance(dest, str):
        raise problem
    if "://" not in dest:
        dest = f"https://{dest}"
    try:
        parts = urlsplit(dest)
        port = parts.port
    except ValueError:
        raise problem from None
    host = (parts.hostname or "").lower()
    clean = not (parts.username or parts.password or port or parts.query or parts.fragment)
    if parts.scheme != "https" or parts.path not in ("", "/") or not clean:
        raise problem
    if not valid_shop_domain(host):
        raise problem
    return host


def _seconds(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SessionTokenError(f"the session token's {name} is not a number of seconds")
    return float(value)


def _customer_id(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if isinstance(sub, str) and sub.startswith(_CUSTOMER_GID):
        return _numeric(sub.removeprefix(_CUSTOMER_GID))
    data = claims.get("input_data")
    purchase = data.get("initialPurchase") if isinstance(data, dict) else None
    return _numeric(purchase.get("customerId")) if isinstance(purchase, dict) else ""


def _numeric(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return value
    return ""
