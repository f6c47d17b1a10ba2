"""The checkout extension's OTP API over HTTP: Shopify session tokens as the credential (the
shop is the token's), verify and resend by order, the wrong code and resend limits, 422 naming
each bad field, 404 for an unknown order, CORS `*` on every answer, and concurrent entries
that each count."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from flows.verification.customer_keys import CustomerKeys
from flows.verification.runtime import Verifier
from main import account_desk
from settings import Settings
from storage.crypto import SecretBox
from storage.models import Job, Verification
from tests.conftest import SECURITY
from tests.web.test_verify_page import (
    OTP_SETTINGS,
    SHOP,
    other_code,
    otp_code,
    place_order,
    status_of,
    tag_jobs,
)
from web.app import AppDeps, build_app
from web.keys import clock_key
from web.otp_api import IP_BURST, TOKEN_BURST

API_KEY = "b1c2d3e4f5a60718293a4b5c6d7e8f90"
API_SECRET = "shpss_" + "0123456789abcdef" * 2
OTHER_SHOP = "other-shop.myshopify.com"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
}
ANONYMOUS = ""  # call(..., token=ANONYMOUS): no Authorization header at all


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        shopify={"api_key": API_KEY, "api_secret": API_SECRET},
    )


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


@pytest.fixture
def keys(settings) -> CustomerKeys:
    return CustomerKeys(settings.secret_key())


@pytest.fixture
async def order(db, clock, queue, settings, keys):
    box = SecretBox(settings.secret_key())
    verifier = Verifier(db, clock, queue, box, keys, settings.server.public_url)
    return await place_order(db, verifier, OTP_SETTINGS)


def session_token(client, shop: str = SHOP, *, secret: str = API_SECRET, **claims: Any) -> str:
    """A session token as Shopify's checkout mints it, issued now by the app's (manual) clock
    and valid for a minute."""
    issued = int(client.app[clock_key].now().timestamp())
    document = {
        "iss": f"https://{shop}",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "gid://shopify/Customer/1",
        "exp": issued + 60,
        "nbf": issued,
        "iat": issued,
        "jti": f"jti-{issued}",
        "sid": "sid-1",
        **claims,
    }
    return jwt.encode(document, secret, algorithm="HS256")


async def call(client, path: str, body, token: str | None = None) -> tuple[int, dict, dict]:
    """POST `body` with `token` (default: a fresh one for SHOP; ANONYMOUS: none)."""
    token = session_token(client) if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(f"/api/otp/{path}", json=body, headers=headers)
    return response.status, await response.json(), dict(response.headers)


def assert_cors(headers) -> None:
    assert {name: headers.get(name) for name in CORS} == CORS


async def verify(client, order, code: str, ref: str = "") -> dict:
    body = {"shop": SHOP, "order": ref or order.shopify_order_id, "code": code}
    status, answer, _ = await call(client, "verify", body)
    assert status == 200, answer
    return answer


async def resend(client, order) -> dict:
    status, answer, _ = await call(client, "resend", {"order": order.name})  # shop: the token's
    assert status == 200, answer
    return answer


async def test_the_right_code_verifies_the_order_once(client, db, keys, order):
    code = await otp_code(db, keys, order)
    assert await verify(client, order, code) == {"result": "verified", "attempts_left": 0}
    assert await status_of(db, order) == "confirmed"
    assert await tag_jobs(db) == 1
    assert (await verify(client, order, code))["result"] == "already_verified"
    assert (await resend(client, order))["result"] == "already_verified"
    assert await tag_jobs(db) == 1


@pytest.mark.parametrize("ref", ["id", "#1001", "1001", "gid"])
async def test_the_order_is_named_by_id_gid_or_name(client, db, keys, order, ref):
    refs = {"id": order.shopify_order_id, "gid": f"gid://shopify/Order/{order.shopify_order_id}"}
    code = await otp_code(db, keys, order)
    assert (await verify(client, order, code, refs.get(ref, ref)))["result"] == "verified"


async def test_wrong_codes_count_down_then_lock(client, db, keys, order):
    code = await otp_code(db, keys, order)
    wrong = other_code(code)
    answers = [await verify(client, order, wrong) for _ in range(4)]
    assert answers == [
        {"result": "wrong", "attempts_left": 3},
        {"result": "wrong", "attempts_left": 2},
        {"result": "wrong", "attempts_left": 1},
        {"result": "locked", "attempts_left": 0},
    ]
    assert (await verify(client, order, code))["result"] == "locked"  # no more tries
    assert await status_of(db, order) == "unverified"


async def test_an_expired_code_is_refused_and_not_counted(client, db, keys, order, clock):
    code = await otp_code(db, keys, order)
    clock.advance(timedelta(minutes=10))  # otp.expiry_minutes
    assert await verify(client, order, code) == {"result": "expired", "attempts_left": 4}
    assert await status_of(db, order) == "pending"


async def test_resend_waits_then_sends_up_to_its_limit(client, db, keys, order, clock):
    first = await otp_code(db, keys, order)
    assert await resend(client, order) == {"result": "too_early", "retry_after": 30}
    clock.advance(timedelta(seconds=12))
    assert await resend(client, order) == {"result": "too_early", "retry_after": 18}
    clock.advance(timedelta(seconds=18))
    assert await resend(client, order) == {"result": "resent", "retry_after": 30}
    clock.advance(timedelta(seconds=30))
    assert await resend(client, order) == {"result": "resent", "retry_after": 30}
    clock.advance(timedelta(seconds=30))
    assert (await resend(client, order))["result"] == "resend_limit"  # otp.resend_limit 2
    assert (await verify(client, order, first))["result"] == "wrong"  # replaced
    latest = await otp_code(db, keys, order)
    assert (await verify(client, order, latest))["result"] == "verified"


async def test_two_concurrent_wrong_codes_count_twice(client, db, keys, order):
    wrong = other_code(await otp_code(db, keys, order))
    answers = await asyncio.gather(verify(client, order, wrong), verify(client, order, wrong))
    assert sorted(answer["attempts_left"] for answer in answers) == [2, 3]
    assert (await verify(client, order, wrong))["attempts_left"] == 1


async def test_bad_fields_are_a_422_naming_each_one(client, order):
    status, answer, headers = await call(client, "verify", {})
    assert status == 422
    assert_cors(headers)  # the error is readable by the extension too
    problems = {p["field"]: p["message"] for p in answer["error"]["fields"]}
    assert problems == {"order": "is required", "code": "is required"}  # shop is optional

    body = {"shop": "evil.example.com", "order": " ", "code": "12ab"}
    status, answer, _ = await call(client, "verify", body)
    assert status == 422 and answer["error"]["code"] == "invalid"
    assert [p["field"] for p in answer["error"]["fields"]] == ["shop", "order", "code"]

    for code in ("123", "123456789", 123456, None):
        body = {"shop": SHOP, "order": order.name, "code": code}
        status, answer, _ = await call(client, "verify", body)
        assert status == 422 and [p["field"] for p in answer["error"]["fields"]] == ["code"]

    status, answer, _ = await call(client, "resend", {"shop": SHOP, "order": "x" * 65})
    assert status == 422 and [p["field"] for p in answer["error"]["fields"]] == ["order"]
    status, answer, _ = await call(client, "resend", ["not", "an", "object"])
    assert status == 422 and answer["error"]["fields"][0]["field"] == "body"
    token = session_token(client)
    response = await client.post(
        "/api/otp/resend", data=b"{nope", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 400
    assert_cors(response.headers)


async def test_an_unknown_order_is_a_404(client, order):
    for path in ("verify", "resend"):
        for body in ({"shop": SHOP, "order": "#9999"}, {"order": "#9999"}):
            status, answer, headers = await call(client, path, {**body, "code": "123456"})
            assert status == 404 and answer["error"]["code"] == "not_found"
            assert_cors(headers)


async def test_a_token_for_another_shop_cannot_reach_this_shops_order(client, db, keys, order):
    wrong = other_code(await otp_code(db, keys, order))
    other = session_token(client, OTHER_SHOP)
    for path in ("verify", "resend"):
        # Naming this shop in the body does not help: the token is another shop's.
        body = {"shop": SHOP, "order": order.name, "code": wrong}
        status, answer, headers = await call(client, path, body, other)
        assert status == 403 and answer["error"]["code"] == "forbidden"
        assert OTHER_SHOP in answer["error"]["message"]
        assert_cors(headers)
        # Without a body shop the token's shop is asked, and it has no such order.
        body = {"order": order.name, "code": wrong}
        status, answer, _ = await call(client, path, body, other)
        assert status == 404 and OTHER_SHOP in answer["error"]["message"]
    assert await verify(client, order, wrong) == {"result": "wrong", "attempts_left": 3}


async def test_a_missing_token_is_a_401_and_counts_nothing(client, db, keys, order):
    wrong = other_code(await otp_code(db, keys, order))
    body = {"shop": SHOP, "order": order.name, "code": wrong}
    for path in ("verify", "resend"):
        for _ in range(5):
            status, answer, headers = await call(client, path, body, ANONYMOUS)
            assert status == 401 and answer["error"]["code"] == "unauthorized"
            assert "Authorization: Bearer" in answer["error"]["message"]
            assert headers["WWW-Authenticate"] == "Bearer"
            assert_cors(headers)
    for authorization in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", session_token(client)):
        headers = {"Authorization": authorization}
        response = await client.post("/api/otp/verify", json=body, headers=headers)
        assert response.status == 401, authorization
    assert await verify(client, order, wrong) == {"result": "wrong", "attempts_left": 3}
    assert await status_of(db, order) == "pending"


async def test_an_invalid_token_is_a_401_naming_the_reason(client, db, keys, order, clock):
    wrong = other_code(await otp_code(db, keys, order))
    body = {"order": order.name, "code": wrong}
    token = session_token(client)
    clock.advance(timedelta(seconds=60))  # the token's exp
    status, answer, headers = await call(client, "verify", body, token)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert "expired" in answer["error"]["message"]
    assert_cors(headers)

    reasons = {
        "signature": session_token(client, secret="shpss_" + "f" * 32),
        "aud": session_token(client, aud="another-apps-key"),
        "dest": session_token(client, dest="https://evil.example.com"),
        "not valid yet": session_token(client, nbf=int(clock.now().timestamp()) + 60),
        "HS256": jwt.encode({"dest": f"https://{SHOP}", "aud": API_KEY}, None, "none"),
    }
    for reason, token in reasons.items():
        status, answer, _ = await call(client, "verify", body, token)
        assert status == 401 and reason in answer["error"]["message"], (reason, answer)
    assert await verify(client, order, wrong) == {"result": "wrong", "attempts_left": 3}


async def test_cors_allows_any_origin_on_every_answer(client, db, keys, order):
    body = {"order": order.name, "code": await otp_code(db, keys, order)}
    for origin in ("https://extensions.shopifycdn.com", "null", "https://evil.example", ""):
        headers = {"Origin": origin} if origin else {}
        authorized = {"Authorization": f"Bearer {session_token(client)}", **headers}
        for sent, status in ((authorized, 200), (headers, 401)):
            response = await client.post("/api/otp/verify", json=body, headers=sent)
            assert response.status == status
            assert_cors(response.headers)
            assert "Access-Control-Allow-Credentials" not in response.headers
    status, _, headers = await call(client, "resend", {"order": ""})
    assert status == 422
    assert_cors(headers)


@pytest.mark.parametrize("path", ["verify", "resend"])
async def test_the_preflight_allows_the_token_from_anywhere(client, path):
    asks = {
        "Origin": "https://extensions.shopifycdn.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = await client.options(f"/api/otp/{path}", headers=asks)
    assert response.status == 204
    assert_cors(response.headers)
    assert response.headers["Access-Control-Max-Age"] == "600"
    response = await client.options(f"/api/otp/{path}")  # no Origin: the same answer
    assert response.status == 204
    assert_cors(response.headers)


@pytest.mark.parametrize(
    ("shopify", "missing"),
    [
        ({"api_key": API_KEY}, "shopify.api_secret"),
        ({"api_secret": API_SECRET}, "shopify.api_key"),
        ({}, "shopify.api_key and shopify.api_secret"),
    ],
)
async def test_without_the_apps_key_and_secret_tokens_cannot_be_checked(
    aiohttp_client,
    database_url,
    db,
    queue,
    clock,
    metrics,
    http,
    provider_clients,
    order,
    shopify,
    missing,
):
    bare = Settings(database={"url": database_url}, security=SECURITY, shopify=shopify)
    accounts = account_desk(bare, db, queue, clock, provider_clients)
    client = await aiohttp_client(
        build_app(AppDeps(bare, clock, db, queue, metrics, http, accounts))
    )
    for path in ("verify", "resend"):
        body = {"shop": SHOP, "order": order.name, "code": "123456"}
        for token in (None, ANONYMOUS):
            status, answer, headers = await call(client, path, body, token)
            assert status == 503 and answer["error"]["code"] == "not_configured"
            assert f"{missing} not configured" in answer["error"]["message"]
            assert_cors(headers)


async def verification_of(db, order) -> tuple[Any, ...]:
    async with db.sessions() as session:
        row = await session.scalar(select(Verification).where(Verification.order_id == order.id))
        jobs = await session.scalar(select(func.count(Job.id)))
    return row.data, row.version, jobs


async def test_another_customers_order_answers_as_not_found_and_changes_nothing(
    client, db, keys, order
):
    code = await otp_code(db, keys, order)
    before = await verification_of(db, order)
    strangers = {
        "another customer": session_token(client, sub="gid://shopify/Customer/2"),
        "no customer": session_token(client, sub="gid://shopify/Shop/1"),
        "post-purchase of another": session_token(
            client, sub="ref-2", input_data={"initialPurchase": {"customerId": 2}}
        ),
    }
    for who, token in strangers.items():
        for path in ("verify", "resend"):
            theirs = await call(client, path, {"order": order.name, "code": code}, token)
            unknown = await call(client, path, {"order": "#9999", "code": code}, token)
            assert theirs[0] == 404 and theirs[1]["error"]["code"] == "not_found", who
            assert theirs[:2] == unknown[:2], who  # "not yours" reads as "no such order"
    assert await verification_of(db, order) == before
    assert await status_of(db, order) == "pending"

    post_purchase = session_token(
        client, sub="ref-1", input_data={"initialPurchase": {"customerId": 1}}
    )
    answer = await call(client, "verify", {"order": order.name, "code": code}, post_purchase)
    assert answer[:2] == (200, {"result": "verified", "attempts_left": 0})


@pytest.fixture(params=["in-process", "redis"])
def limits_in(request):
    """Where the app keeps its rate limits: None (in-process) or Redis."""
    return request.getfixturevalue("redis") if request.param == "redis" else None


@pytest.fixture
async def limited(limits_in, aiohttp_client, app_factory, db, queue):
    if limits_in is not None:
        for key in await limits_in.keys("ordertalk:rate:otp:*"):
            await limits_in.delete(key)
    return await aiohttp_client(app_factory(db, queue, limits_in))


async def test_requests_are_rate_limited_per_token_then_per_ip(limited, db, keys, order, clock):
    wrong = other_code(await otp_code(db, keys, order))
    body = {"order": order.name, "code": wrong}
    token = session_token(limited, jti="busy")
    answers = [(await call(limited, "resend", body, token))[0] for _ in range(TOKEN_BURST)]
    assert answers == [200] * TOKEN_BURST
    status, answer, headers = await call(limited, "verify", body, token)
    assert status == 429 and answer["error"]["code"] == "too_many_requests"
    assert int(headers["Retry-After"]) >= 1
    assert_cors(headers)
    assert (await verification_of(db, order))[0]["otp_wrong"] == 0  # the 429 counted nothing
    clock.advance(timedelta(seconds=int(headers["Retry-After"])))
    assert (await call(limited, "resend", body, token))[0] == 200

    # Fresh tokens, one each: the address's own limit.
    statuses = [
        (await call(limited, "resend", body, session_token(limited, jti=f"j{n}")))[0]
        for n in range(IP_BURST)
    ]
    assert 429 in statuses and statuses[0] == 200
    status, answer, _ = await call(limited, "resend", body, ANONYMOUS)
    assert status == 429  # unauthenticated requests count too
