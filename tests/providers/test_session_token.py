"""Shopify session tokens, pure: a valid token names its shop and its buyer; a wrong
signature, algorithm (`none` above all), audience or `dest`, an expired or not yet valid
token, or a missing claim is refused with its reason; the clock is the injected `now`, never
the wall clock."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from providers.shopify.session_token import (
    LEEWAY_SECONDS,
    SessionTokenError,
    read_session_token,
)

API_KEY = "0123456789abcdef0123456789abcdef"
API_SECRET = "shpss_" + "5" * 32
SHOP = "chai-house.myshopify.com"
# Far from the wall clock, both ways: only the injected `now` may matter.
NOW = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)


def claims(**overrides: Any) -> dict[str, Any]:
    issued = int(NOW.timestamp())
    document = {
        "iss": f"https://{SHOP}/admin",
        "dest": f"https://{SHOP}",
        "aud": API_KEY,
        "sub": "gid://shopify/Customer/7",
        "exp": issued + 60,
        "nbf": issued,
        "iat": issued,
        "jti": "8a6b3c1e-1d2f-4e5a-9b7c-0d1e2f3a4b5c",
        "sid": "session-1",
    }
    document.update(overrides)
    return {name: value for name, value in document.items() if value is not None}


def mint(secret: str = API_SECRET, algorithm: str = "HS256", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm=algorithm)


def shop_of(token: str, now: datetime = NOW) -> str:
    return read_session_token(token, api_key=API_KEY, api_secret=API_SECRET, now=now).shop


def refused(token: str, now: datetime = NOW) -> str:
    with pytest.raises(SessionTokenError) as caught:
        shop_of(token, now)
    return str(caught.value)


def b64(part: dict[str, Any] | bytes) -> str:
    raw = part if isinstance(part, bytes) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_valid_token_names_its_shop():
    assert shop_of(mint()) == SHOP
    assert issubclass(SessionTokenError, ValueError)


@pytest.mark.parametrize(
    "dest",
    [f"https://{SHOP}", f"https://{SHOP}/", f"HTTPS://{SHOP.upper()}", SHOP],
)
def test_the_shop_is_the_host_of_dest(dest):
    assert shop_of(mint(dest=dest)) == SHOP


def test_a_token_signed_with_another_secret_is_refused():
    assert "signature" in refused(mint(secret="shpss_" + "6" * 32))


def test_a_tampered_payload_is_refused():
    header, _, signature = mint().split(".")
    forged = b64(claims(dest="https://other-shop.myshopify.com"))
    assert "signature" in refused(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused():
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert "HS256" in refused(unsigned)
    assert "HS256" in refused(unsigned + "c2ln")  # with a signature part, still no
    handmade = f"{b64({'alg': 'None', 'typ': 'JWT'})}.{b64(claims())}."
    assert "HS256" in refused(handmade)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # minting HS512
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_another_algorithm_is_refused_even_with_the_right_secret(algorithm):
    assert "HS256" in refused(mint(algorithm=algorithm))


def test_a_token_for_another_app_is_refused():
    assert "aud" in refused(mint(aud="another-apps-key"))
    assert "aud" in refused(mint(aud=["another-apps-key"]))


@pytest.mark.parametrize("claim", ["aud", "dest", "exp", "nbf"])
def test_a_missing_claim_is_refused(claim):
    assert f"no {claim} claim" in refused(mint(**{claim: None}))


@pytest.mark.parametrize(
    "dest",
    [
        "https://evil.example.com",
        "http://chai-house.myshopify.com",
        "https://chai-house.myshopify.com.evil.example",
        "https://chai-house.myshopify.com/admin",
        "https://user@chai-house.myshopify.com",
        "https://chai-house.myshopify.com:8443",
        "https://chai-house.myshopify.com?x=1",
        "https://",
        "",
        12345,
        ["https://chai-house.myshopify.com"],
    ],
)
def test_a_dest_that_is_not_a_myshopify_url_is_refused(dest):
    assert "dest" in refused(mint(dest=dest))


def test_an_expired_token_is_refused_at_its_exp():
    token = mint()
    expiry = NOW + timedelta(seconds=60)
    assert shop_of(token, expiry - timedelta(seconds=1)) == SHOP
    assert "expired" in refused(token, expiry)
    assert "expired" in refused(token, expiry + timedelta(days=1))


def test_a_token_not_valid_yet_is_refused_beyond_the_leeway():
    start = int(NOW.timestamp()) + 30
    token = mint(nbf=start, iat=start, exp=start + 60)
    assert "not valid yet" in refused(token)
    edge = datetime.fromtimestamp(start - LEEWAY_SECONDS, UTC)
    assert shop_of(token, edge) == SHOP
    assert "not valid yet" in refused(token, edge - timedelta(seconds=1))


def test_the_wall_clock_does_not_matter():
    # Minted long ago and long expired by the wall clock's standards: `now` alone decides.
    past = datetime(2001, 1, 1, tzinfo=UTC)
    stamp = int(past.timestamp())
    assert shop_of(mint(nbf=stamp, iat=stamp, exp=stamp + 60), past) == SHOP


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", ["soon", True])
def test_non_numeric_times_are_refused(claim, value):
    assert f"{claim} is not a number" in refused(mint(**{claim: value}))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "...."])
def test_garbage_is_refused(token):
    refused(token)


def test_it_needs_an_api_key_secret_and_an_aware_now():
    token = mint()
    with pytest.raises(ValueError, match="api_secret"):
        read_session_token(token, api_key=API_KEY, api_secret="", now=NOW)
    with pytest.raises(ValueError, match="api_key"):
        read_session_token(token, api_key="", api_secret=API_SECRET, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        read_session_token(
            token, api_key=API_KEY, api_secret=API_SECRET, now=NOW.replace(tzinfo=None)
        )


@pytest.mark.parametrize(
    ("overrides", "buyer"),
    [
        ({}, "7"),
        ({"sub": None}, ""),
        ({"sub": "gid://shopify/Customer/x7"}, ""),
        ({"sub": "gid://shopify/StaffMember/7"}, ""),
        ({"sub": "ref-1", "input_data": {"initialPurchase": {"customerId": 42}}}, "42"),
        ({"sub": "ref-1", "input_data": {"initialPurchase": {"customerId": "42"}}}, "42"),
        ({"sub": "ref-1", "input_data": {"initialPurchase": {"customerId": True}}}, ""),
        ({"sub": "ref-1", "input_data": {"initialPurchase": []}}, ""),
        ({"sub": "ref-1", "input_data": "x"}, ""),
    ],
)
def test_the_buyer_is_the_subject_customer_or_the_post_purchase_customer(overrides, buyer):
    token = read_session_token(mint(**overrides), api_key=API_KEY, api_secret=API_SECRET, now=NOW)
    assert (token.shop, token.customer_id) == (SHOP, buyer)
