"""Issue 14, item 7: unauthenticated or bad input never gets a 500 — a 4xx with a JSON error
and nothing stored — and with the database down the callbacks, the customer's page and the
admin API answer 503, not 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from flows.channels.callback_urls import PLATFORM, shop_token
from flows.verification.customer_keys import CustomerKeys
from flows.verification.runtime import Verifier
from main import account_desk
from settings import Settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import JobQueue
from storage.models import Job, WebhookReceipt
from tests.conftest import SECURITY
from tests.web.test_verify_page import LINK_SETTINGS, link_order
from web.app import AppDeps, build_app

ADMIN = "platform-admin-token-0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-0123456789"
SHOPIFY_SECRET = "shpss_" + "0123456789abcdef" * 2
TWILIO_ROUTES = ["messages", "status", "voice", "voice/gather", "voice/status"]
PUBLIC_URL = "https://ordertalk.example"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(
        database={"url": database_url},
        server={"public_url": PUBLIC_URL},
        security={**SECURITY, "admin_token": ADMIN},
        shopify={"api_key": "app-key", "api_secret": SHOPIFY_SECRET},
        providers={"twilio": {"account_sid": "AC" + "0" * 32, "auth_token": TWILIO_TOKEN}},
    )


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


@pytest.fixture
def verifier(db, clock, queue, settings) -> Verifier:
    secret = settings.secret_key()
    return Verifier(
        db, clock, queue, SecretBox(secret), CustomerKeys(secret), settings.server.public_url
    )


async def stored(db: Database) -> tuple[int, int]:
    async with db.sessions() as session:
        receipts = await session.scalar(select(func.count(WebhookReceipt.id)))
        jobs = await session.scalar(select(func.count(Job.id)))
    return receipts, jobs


def twilio_signature(path: str, params: dict[str, str]) -> str:
    return RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)


async def new_shop(client) -> tuple[int, str]:
    response = await client.post(
        "/api/v1/shops",
        json={"domain": "bad-input.myshopify.com"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    return body["shop"]["id"], body["api_key"]


GARBAGE = [
    ("application/x-www-form-urlencoded", b"From=%ff%fe&Body=\xff\xfe\xfd"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"From=%2B1"),
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data\r\n\r\n\xff"),
    ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
    ("application/json", b'{"From": "+14155550123"}'),
    ("text/plain", b"\x00\x01\x02"),
]


@pytest.mark.parametrize("route", TWILIO_ROUTES)
@pytest.mark.parametrize(("content_type", "body"), GARBAGE)
async def test_twilio_routes_answer_garbage_bytes_with_a_4xx(
    client, db, route, content_type, body
):
    path = f"/webhooks/twilio/{route}"
    for signature in (twilio_signature(path, {}), "forged"):
        response = await client.post(
            path,
            data=body,
            headers={"Content-Type": content_type, "X-Twilio-Signature": signature},
        )
        assert 400 <= response.status < 500, (response.status, await response.text())
        error = (await response.json())["error"]
        if response.status != 403:  # unsigned: refused before the body is read
            assert error["fields"][0]["field"] == "body", error
    assert await stored(db) == (0, 0)


@pytest.mark.parametrize("token", ["١.abc", "1.é", "٣٤.x", "\u00e9", "1.\udcff", "0." + "ü" * 24])
@pytest.mark.parametrize("kind", ["passthru", "call-status", "sms-status"])
async def test_exotel_tokens_with_non_ascii_characters_are_404(client, db, token, kind):
    for method in ("GET", "POST"):
        response = await client.request(method, f"/webhooks/exotel/{token}/{kind}")
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    response = await client.post(f"/webhooks/gupshup/{token}", json={"type": "message"})
    assert response.status == 404
    assert await stored(db) == (0, 0)


async def test_deeply_nested_json_on_authenticated_routes_is_a_400(client, db, settings):
    _, key = await new_shop(client)
    shop_requests = [
        ("PUT", "/api/v1/shop/settings", {"Authorization": f"Bearer {key}"}),
        ("POST", "/api/v1/shops", {"Authorization": f"Bearer {ADMIN}"}),
    ]
    for method, path, headers in shop_requests:
        response = await client.request(
            method, path, data=DEEP, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status == 400, (path, response.status)
        assert (await response.json())["error"]["fields"][0]["field"] == "body"
    gupshup = f"/webhooks/gupshup/{shop_token(settings.secret_key(), PLATFORM)}"
    exotel = f"/webhooks/exotel/{shop_token(settings.secret_key(), 1)}/call-status"
    for path in (gupshup, exotel):
        response = await client.post(path, data=DEEP, headers={"Content-Type": "application/json"})
        assert response.status == 400, (path, response.status)
    before = await stored(db)
    signature = base64.b64encode(
        hmac.new(SHOPIFY_SECRET.encode(), DEEP, hashlib.sha256).digest()
    ).decode()
    response = await client.post(
        "/webhooks/shopify",
        data=DEEP,
        headers={
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": "bad-input.myshopify.com",
            "X-Shopify-Webhook-Id": "deep-1",
        },
    )
    assert response.status == 400
    assert await stored(db) == before


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", DEEP), ("application/json; charset=no-such-charset", b"{}")],
    ids=["deep", "unknown-charset"],
)
async def test_json_bodies_that_cannot_be_read_are_a_400_on_the_apis(
    client, db, clock, content_type, body
):
    _, key = await new_shop(client)
    before = await stored(db)
    now = int(clock.now().timestamp())
    claims = {"dest": "https://bad-input.myshopify.com", "aud": "app-key", "exp": now + 60}
    session = jwt.encode(claims | {"nbf": now}, SHOPIFY_SECRET, algorithm="HS256")
    requests = [
        ("/api/v1/shop/settings", "PUT", f"Bearer {key}"),
        ("/api/v1/shops", "POST", f"Bearer {ADMIN}"),
        ("/api/otp/verify", "POST", f"Bearer {session}"),
    ]
    for path, method, authorization in requests:
        headers = {"Content-Type": content_type, "Authorization": authorization}
        response = await client.request(method, path, data=body, headers=headers)
        assert response.status == 400, (path, response.status)
        assert "error" in await response.json()
        if path.startswith("/api/otp/"):
            assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert await stored(db) == before


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=9999-12-31", "from"),
        ("to=0001-01-01", "to"),
        ("from=0001-01-01T00:00:00%2B01:00", "from"),
        ("to=9999-12-31T23:59:59-01:00", "to"),
    ],
)
async def test_report_dates_at_the_ends_of_the_calendar_are_a_422(client, query, field):
    _, key = await new_shop(client)
    for report in ("orders", "calls", "messages", "missed-calls"):
        response = await client.get(
            f"/api/v1/{report}?{query}", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status == 422, (report, response.status)
        fields = [f["field"] for f in (await response.json())["error"]["fields"]]
        assert field in fields


async def test_the_pages_redirects_count_as_303_in_the_metrics(client, db, verifier, metrics):
    _, token = await link_order(db, verifier, LINK_SETTINGS)
    response = await client.post(f"/v/{token}", data={"action": "confirm"}, allow_redirects=False)
    assert response.status == 303
    counted = metrics.http_requests.labels("POST", "/v/{token}", "303")._value.get()
    assert counted == 1
    assert metrics.http_requests.labels("POST", "/v/{token}", "500")._value.get() == 0


@pytest.fixture
def down_url(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind that cannot be used: a server that is not listening, a
    file that is no database (lost to a full or failing disk)."""
    if database_url.startswith("sqlite"):
        broken = tmp_path / "broken.db"
        broken.write_bytes(b"not a database " * 512)
        return f"sqlite+aiosqlite:///{broken}"
    return "postgresql+asyncpg://postgres@127.0.0.1:1/ordertalk"


@pytest.fixture
async def down_db(down_url):
    database = Database(down_url)
    yield database
    await database.close()


@pytest.fixture
async def down(down_db, aiohttp_client, settings, clock, metrics, http, provider_clients):
    queue = JobQueue(down_db, clock, settings.jobs)
    accounts = account_desk(settings, down_db, queue, clock, provider_clients)
    deps = AppDeps(settings, clock, down_db, queue, metrics, http, accounts)
    return await aiohttp_client(build_app(deps))


async def test_with_the_database_down_callbacks_page_and_api_answer_503(down, settings, clock):
    secret = settings.secret_key()
    exotel = f"/webhooks/exotel/{shop_token(secret, 1)}/passthru"
    passthru = {
        "CallSid": "c1",
        "CallFrom": "09876543210",
        "CallTo": "08047112345",
        "Direction": "incoming",
    }
    twilio = {
        "AccountSid": settings.providers.twilio.account_sid,
        "MessageSid": "SM1",
        "From": "+14155550123",
        "To": "+14155550100",
        "Body": "Hi",
    }
    link = CustomerKeys(secret).link_token(1, clock.now() + timedelta(hours=1))
    shopify_body = b'{"id": 1}'
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", exotel, {"params": passthru}),
        (
            "POST",
            "/webhooks/twilio/messages",
            {
                "data": twilio,
                "headers": {
                    "X-Twilio-Signature": twilio_signature("/webhooks/twilio/messages", twilio)
                },
            },
        ),
        (
            "POST",
            f"/webhooks/gupshup/{shop_token(secret, PLATFORM)}",
            {
                "json": {
                    "type": "message",
                    "payload": {
                        "id": "m1",
                        "type": "text",
                        "source": "919876543210",
                        "payload": {"text": "Hi"},
                    },
                }
            },
        ),
        (
            "POST",
            "/webhooks/shopify",
            {
                "data": shopify_body,
                "headers": {
                    "X-Shopify-Hmac-Sha256": base64.b64encode(
                        hmac.new(SHOPIFY_SECRET.encode(), shopify_body, hashlib.sha256).digest()
                    ).decode(),
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Shop-Domain": "down.myshopify.com",
                    "X-Shopify-Webhook-Id": "w1",
                },
            },
        ),
        ("GET", "/api/v1/orders", {"headers": {"Authorization": "Bearer otk_some-key"}}),
        ("GET", "/api/v1/shop/status", {"headers": {"Authorization": "Bearer otk_some-key"}}),
        (
            "POST",
            "/api/v1/shops",
            {
                "json": {"domain": "a.myshopify.com"},
                "headers": {"Authorization": f"Bearer {ADMIN}"},
            },
        ),
    ]
    for method, path, options in requests:
        response = await down.request(method, path, **options)
        assert response.status == 503, (path, response.status, await response.text())
        assert (await response.json())["error"]["code"] == "service_unavailable", path
        assert response.headers["Retry-After"]
    for method in ("GET", "POST"):
        response = await down.request(method, f"/v/{link}", data={"action": "confirm"})
        assert response.status == 503, (method, response.status)
        assert response.headers["Retry-After"]
