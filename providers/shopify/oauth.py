"""Shopify OAuth install: the grant-screen URL, the callback's query HMAC, the code exchange."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from providers.base import ProviderError
from providers.http import exchange

_SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
_UNSIGNED = frozenset({"hmac", "signature"})
_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class AccessGrant:
    """An offline access token and the scopes the merchant granted."""

    access_token: str
    scope: str


def valid_shop_domain(shop: str) -> bool:
    """True for a lowercase `name.myshopify.com` domain (the only form OAuth accepts)."""
    return _SHOP_DOMAIN.fullmatch(shop) is not None


def shop_base_url(admin_url_template: str, shop: str) -> str:
    """The shop's base URL: the admin_url template up to `/admin/api/`, `{shop}` filled in."""
    head, found, _ = admin_url_template.partition("/admin/api/")
    if not found:
        raise ValueError(f"admin_url must contain /admin/api/: {admin_url_template!r}")
    return head.replace("{shop}", shop)


def authorize_url(
    admin_url_template: str, shop: str, api_key: str, scopes: str, redirect_uri: str, state: str
) -> str:
    """The grant screen the merchant's browser is sent to."""
    query = urlencode(
        {"client_id": api_key, "scope": scopes, "redirect_uri": redirect_uri, "state": state}
    )
    return f"{shop_base_url(admin_url_template, shop)}/admin/oauth/authorize?{query}"


def query_signature(query: Mapping[str, str], secret: str) -> str:
    """Shopify's hex HMAC-SHA256 of a redirect's query, `hmac` and `signature` left out."""
    pairs = sorted((key, value) for key, value in query.items() if key not in _UNSIGNED)
    # Shopify escapes the delimiters so that one parameter cannot pose as two.
    message = "&".join(
        f"{_escape(key).replace('=', '%3D')}={_escape(value)}" for key, value in pairs
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_query_hmac(query: Mapping[str, str], secret: str) -> bool:
    """True when the query's `hmac` parameter signs the rest of it with `secret`."""
    keys = list(query.keys())
    signature = query.get("hmac", "")
    if not secret or not signature or len(keys) != len(set(keys)):
        return False
    expected = query_signature(query, secret).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


async def exchange_code(
    http: aiohttp.ClientSession,
    admin_url_template: str,
    shop: str,
    api_key: str,
    api_secret: str,
    code: str,
) -> AccessGrant:
    """Trade the callback's one-time `code` for the shop's offline access token."""
    url = f"{shop_base_url(admin_url_template, shop)}/admin/oauth/access_token"
    body = {"client_id": api_key, "client_secret": api_secret, "code": code}
    answer = await exchange(
        http, "POST", url, "shopify token exchange", client_timeout=_TIMEOUT, json=body
    )
    status, text = answer.status, answer.text
    if not 200 <= status < 300:
        raise ProviderError(
            f"shopify token exchange: HTTP {status}: {text[:300]}",
            retryable=status >= 500,
            code=f"HTTP_{status}",
        )
    return _grant(text)


def _grant(text: str) -> AccessGrant:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise ProviderError(
            "shopify token exchange: no access_token in the answer",
            retryable=False,
            code="BAD_RESPONSE",
        )
    scope = data.get("scope")
    return AccessGrant(data["access_token"], scope if isinstance(scope, str) else "")


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("&", "%26")
