"""Rotating `security.secret_key`: the new key encrypts and signs, the previous ones still
decrypt and verify (stored credentials, customer links and OTPs, callback path tokens) until
they are dropped; then what they made is refused."""

from __future__ import annotations

import pytest

from flows.channels.callback_urls import PLATFORM, CallbackUrls, ringcentral_token, shop_token
from flows.verification.customer_keys import CustomerKeys, TokenError
from flows.verification.runtime import Verifier
from main import account_desk
from settings import Settings
from storage.crypto import SecretBox, SecretBoxError
from tests.conftest import SECRET_KEY
from tests.web.test_verify_page import (
    LINK_SETTINGS,
    follow,
    link_order,
    otp_code,
    otp_order,
    post,
    status_of,
)
from web.app import AppDeps, build_app

NEW_KEY = "the-key-after-the-rotation-0123456789"
CREDENTIALS = {"exotel": {"api_token": "exo-secret"}}


def rotated(settings: Settings, *previous: str) -> Settings:
    security = settings.security.model_copy(
        update={"secret_key": NEW_KEY, "previous_secret_keys": list(previous)}
    )
    return Settings.model_validate(
        settings.model_dump(mode="python") | {"security": security.model_dump(mode="python")}
    )


@pytest.fixture
def keys(settings) -> CustomerKeys:
    return CustomerKeys(settings.secret_keys())


@pytest.fixture
def verifier(db, clock, queue, settings, keys) -> Verifier:
    box = SecretBox(settings.secret_keys())
    return Verifier(db, clock, queue, box, keys, settings.server.public_url)


@pytest.fixture
def app_with(aiohttp_client, clock, db, queue, metrics, http, provider_clients):
    async def make(settings: Settings):
        accounts = account_desk(settings, db, queue, clock, provider_clients)
        deps = AppDeps(settings, clock, db, queue, metrics, http, accounts)
        return await aiohttp_client(build_app(deps))

    return make


def test_settings_list_the_signing_key_first(settings):
    assert rotated(settings, SECRET_KEY).secret_keys() == (NEW_KEY, SECRET_KEY)
    assert rotated(settings, SECRET_KEY).secret_key() == NEW_KEY


def test_stored_credentials(settings):
    sealed = SecretBox(settings.secret_keys()).seal(CREDENTIALS)
    box = SecretBox(rotated(settings, SECRET_KEY).secret_keys())
    assert box.open(sealed) == CREDENTIALS
    resealed = box.seal(CREDENTIALS)
    assert SecretBox(NEW_KEY).open(resealed) == CREDENTIALS
    with pytest.raises(SecretBoxError):
        SecretBox(SECRET_KEY).open(resealed)
    with pytest.raises(SecretBoxError):
        SecretBox(rotated(settings).secret_keys()).open(sealed)


async def test_a_customer_link_made_before(app_with, settings, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    dropped = await app_with(rotated(settings))
    assert (await dropped.get(f"/v/{token}")).status == 404
    client = await app_with(rotated(settings, SECRET_KEY))
    assert (await client.get(f"/v/{token}")).status == 200
    html = await follow(client, token, await post(client, token, action="confirm"))
    assert "Your order is confirmed." in html
    assert await status_of(db, order) == "confirmed"


def test_new_links_are_signed_with_the_new_key(settings, clock):
    now = clock.now()
    made = CustomerKeys(rotated(settings, SECRET_KEY).secret_keys()).link_token(7, now)
    assert CustomerKeys(NEW_KEY).read_link(made, now.replace(year=now.year - 1))
    with pytest.raises(TokenError, match="not valid"):
        CustomerKeys(SECRET_KEY).read_link(made, now.replace(year=now.year - 1))


async def test_an_otp_sent_before(app_with, settings, db, verifier, keys):
    order, token = await otp_order(db, verifier)
    code = await otp_code(db, keys, order)
    client = await app_with(rotated(settings, SECRET_KEY))
    right = await post(client, token, code=code)
    assert right.headers["Location"] == f"{token}?otp=verified"
    assert await status_of(db, order) == "confirmed"


async def test_callback_path_tokens_made_before(app_with, settings):
    old = CallbackUrls("http://x", settings.secret_keys())
    assert old.gupshup() == f"http://x/webhooks/gupshup/{shop_token(SECRET_KEY, PLATFORM)}"
    gupshup_path = old.gupshup().removeprefix("http://x")
    ringcentral = {"Verification-Token": ringcentral_token(SECRET_KEY)}

    dropped = await app_with(rotated(settings))
    assert (await dropped.post(gupshup_path, json={})).status == 404
    assert (
        await dropped.post("/webhooks/ringcentral", json={}, headers=ringcentral)
    ).status == 403

    client = await app_with(rotated(settings, SECRET_KEY))
    assert (await client.post(gupshup_path, json={})).status != 404
    assert (await client.post("/webhooks/ringcentral", json={}, headers=ringcentral)).status == 200
    new = CallbackUrls("http://x", rotated(settings, SECRET_KEY).secret_keys())
    assert new.gupshup() == f"http://x/webhooks/gupshup/{shop_token(NEW_KEY, PLATFORM)}"
