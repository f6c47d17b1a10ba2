"""The checkout extension's OTP API over HTTP: verify and resend by shop and order, the wrong
code and resend limits, 422 naming each bad field, 404 for an unknown order, CORS for the
shop's own storefront only, and concurrent entries that each count."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flows.customer_keys import CustomerKeys
from flows.verifier import Verifier
from storage.crypto import SecretBox
from tests.web.test_verify_page import (
    OTP_SETTINGS,
    SHOP,
    other_code,
    otp_code,
    place_order,
    status_of,
    tag_jobs,
)

STOREFRONT = f"https://{SHOP}"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
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


async def call(client, path: str, body, origin: str = "") -> tuple[int, dict, dict]:
    headers = {"Origin": origin} if origin else {}
    response = await client.post(f"/api/otp/{path}", json=body, headers=headers)
    return response.status, await response.json(), dict(response.headers)


async def verify(client, order, code: str, ref: str = "") -> dict:
    body = {"shop": SHOP, "order": ref or order.shopify_order_id, "code": code}
    status, answer, _ = await call(client, "verify", body)
    assert status == 200, answer
    return answer


async def resend(client, order) -> dict:
    status, answer, _ = await call(client, "resend", {"shop": SHOP, "order": order.name})
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
    status, answer, _ = await call(client, "verify", {})
    assert status == 422
    problems = {p["field"]: p["message"] for p in answer["error"]["fields"]}
    assert problems == {"shop": "is required", "order": "is required", "code": "is required"}

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
    response = await client.post("/api/otp/resend", data=b"{nope")
    assert response.status == 400


async def test_an_unknown_shop_or_order_is_a_404(client, order):
    for path in ("verify", "resend"):
        for shop, ref in ((SHOP, "#9999"), ("other-shop.myshopify.com", order.name)):
            body = {"shop": shop, "order": ref, "code": "123456"}
            status, answer, _ = await call(client, path, body)
            assert status == 404 and answer["error"]["code"] == "not_found"


async def test_cors_headers_only_for_the_shops_own_storefront(client, db, keys, order):
    body = {"shop": SHOP, "order": order.name, "code": "12ab"}
    status, _, headers = await call(client, "verify", body, origin=STOREFRONT)
    assert status == 422  # the error is readable by the extension too
    assert headers["Access-Control-Allow-Origin"] == STOREFRONT
    assert headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert headers["Vary"] == "Origin"

    body["code"] = await otp_code(db, keys, order)
    for origin in ("https://other-shop.myshopify.com", "https://evil.example", f"http://{SHOP}"):
        status, answer, headers = await call(client, "verify", body, origin=origin)
        assert status == 200 and headers["Vary"] == "Origin"
        assert not set(CORS_HEADERS) & set(headers)
    status, answer, headers = await call(client, "verify", body, origin=STOREFRONT)
    assert answer["result"] == "already_verified"
    assert headers["Access-Control-Allow-Origin"] == STOREFRONT


@pytest.mark.parametrize("path", ["verify", "resend"])
async def test_the_preflight_allows_myshopify_storefronts_only(client, path):
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = await client.options(f"/api/otp/{path}", headers={"Origin": STOREFRONT, **asks})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == STOREFRONT
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert response.headers["Vary"] == "Origin"
    for origin in ("https://evil.example", "http://x.myshopify.com", "https://myshopify.com.evil"):
        response = await client.options(f"/api/otp/{path}", headers={"Origin": origin, **asks})
        assert response.status == 204
        assert not set(CORS_HEADERS) & set(response.headers)
