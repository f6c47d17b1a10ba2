"""Provider accounts through the admin API, against the providers' fakes over HTTP: each
provider's live check (good credentials stored sealed; bad ones refused naming the field,
nothing stored), the account that carries each channel (seed 002's table, row by row, for
every channel), the merchant's choice, removal, and the status that follows."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from providers.sandbox.exotel import FakeExotel
from providers.sandbox.gupshup import FakeGupshup
from providers.sandbox.twilio import FakeTwilio
from settings import Settings
from storage.models import Activity, ProviderAccount
from tests.conftest import SECURITY
from tests.fakes.ringcentral import FakeRingCentral

ADMIN = "platform-admin-token-0123456789abcdef"
TWILIO_NUMBER = "+15005550006"
TWILIO_VOICE_ONLY = "+15005550007"
PLATFORM_SMS = "+15005550001"
EXOPHONE = "08047112345"
RC_NUMBER = "+16505550100"
RC_NO_SMS = "+16505550101"


@pytest.fixture
async def fakes(clock):
    twilio = FakeTwilio()
    twilio.add_number(TWILIO_NUMBER)
    twilio.add_number(TWILIO_VOICE_ONLY, sms=False)
    exotel = FakeExotel()
    exotel.add_exophone(EXOPHONE)
    ringcentral = FakeRingCentral(clock=clock)
    ringcentral.add_number(RC_NUMBER)
    ringcentral.add_number(RC_NO_SMS, features=("CallerId",))
    started = {
        "twilio": twilio,
        "exotel": exotel,
        "gupshup": FakeGupshup(),
        "ringcentral": ringcentral,
    }
    for fake in started.values():
        await fake.start()
    yield started
    for fake in started.values():
        await fake.close()


@pytest.fixture
def settings(database_url, fakes):
    """The platform offers its Twilio (calls and SMS) and its Gupshup (WhatsApp)."""
    twilio, gupshup = fakes["twilio"], fakes["gupshup"]
    return Settings(
        database={"url": database_url},
        security={**SECURITY, "admin_token": ADMIN},
        providers={
            "twilio": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_url": twilio.base_url,
                "sms_from": PLATFORM_SMS,
            },
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
            "exotel": {"api_url": fakes["exotel"].base_url},
            "ringcentral": {"api_url": fakes["ringcentral"].base_url},
        },
    )


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


@pytest.fixture
async def key(client) -> str:
    created = await client.post(
        "/api/v1/shops",
        json={"domain": "acme.myshopify.com"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert created.status == 201
    return (await created.json())["api_key"]


def own(fakes: dict[str, Any], provider: str, **changes: Any) -> dict[str, Any]:
    """A shop's own account on the provider's fake, as the merchant enters it."""
    fake = fakes[provider]
    if provider == "twilio":
        body = {
            "account_sid": fake.account_sid,
            "auth_token": fake.auth_token,
            "numbers": [TWILIO_NUMBER, TWILIO_VOICE_ONLY],
        }
    elif provider == "exotel":
        body = {
            "account_sid": fake.account_sid,
            "api_key": fake.api_key,
            "api_token": fake.api_token,
            "subdomain": "api.in.exotel.com",
            "numbers": [EXOPHONE],
        }
    elif provider == "gupshup":
        body = {
            "api_key": fake.api_key,
            "app_name": fake.app_name,
            "whatsapp_number": "+" + fake.source,
        }
    else:
        body = {
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "jwt": fake.jwt,
            "sms_number": RC_NUMBER,
        }
    return {"provider": provider, **body, **changes}


def platform(provider: str) -> dict[str, Any]:
    return {"provider": provider, "platform": True}


class Merchant:
    def __init__(self, client, key: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {key}"}

    async def connect(self, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        response = await self.client.post("/api/v1/shop/accounts", json=body, headers=self.headers)
        assert response.status == expect, await response.text()
        return await response.json()

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/shop/{path}", headers=self.headers)
        assert response.status == 200, await response.text()
        return await response.json()

    async def channel(self, channel: str) -> dict[str, Any] | None:
        return (await self.get("accounts"))["channels"][channel]

    async def choose(self, choices: Any, expect: int = 200) -> dict[str, Any]:
        response = await self.client.put(
            "/api/v1/shop/channels", json=choices, headers=self.headers
        )
        assert response.status == expect, await response.text()
        return await response.json()


@pytest.fixture
def merchant(client, key) -> Merchant:
    return Merchant(client, key)


async def stored(db) -> list[ProviderAccount]:
    async with db.sessions() as session:
        return list(await session.scalars(select(ProviderAccount)))


SECRETS = {
    "twilio": ("auth_token",),
    "exotel": ("api_token",),
    "gupshup": ("api_key",),
    "ringcentral": ("client_secret", "jwt"),
}


@pytest.mark.parametrize("provider", ["twilio", "exotel", "gupshup", "ringcentral"])
async def test_a_checked_account_is_stored_sealed_and_never_shown(merchant, fakes, db, provider):
    body = own(fakes, provider)
    account = await merchant.connect(body)
    assert (account["provider"], account["owner"], account["status"]) == (
        provider,
        "shop",
        "active",
    )
    listed = await merchant.get("accounts")
    [row] = await stored(db)
    for name in SECRETS[provider]:
        secret = body[name]
        assert secret not in str(account) + str(listed)
        assert secret not in str(row.details) and secret not in row.secrets
    if provider == "twilio":
        assert account["details"]["numbers"] == [
            {"number": TWILIO_NUMBER, "sms": True, "voice": True},
            {"number": TWILIO_VOICE_ONLY, "sms": False, "voice": True},
        ]
        assert account["channels"] == ["voice", "sms"]
    if provider == "exotel":
        assert account["details"]["numbers"][0]["number"] == "+918047112345"
        assert account["channels"] == ["voice", "sms"]


@pytest.mark.parametrize(
    ("provider", "changes", "field", "reason"),
    [
        ("twilio", {"auth_token": "wrong"}, "auth_token", "20003"),
        ("twilio", {"numbers": ["+15005550199"]}, "numbers.0", "not a number"),
        ("exotel", {"api_token": "wrong"}, "api_token", "Invalid API Key or Token"),
        ("exotel", {"numbers": [EXOPHONE, "08047119999"]}, "numbers.1", ""),
        ("gupshup", {"api_key": "wrong"}, "api_key", "Authentication Failed"),
        ("gupshup", {"app_name": "SomeoneElse"}, "app_name", "Invalid App Details"),
        ("ringcentral", {"client_secret": "wrong"}, "client_secret", ""),
        ("ringcentral", {"jwt": "wrong"}, "jwt", ""),
        ("ringcentral", {"sms_number": RC_NO_SMS}, "sms_number", "cannot send SMS"),
        ("ringcentral", {"sms_number": "+16505550199"}, "sms_number", ""),
    ],
)
async def test_refused_credentials_name_the_field_and_store_nothing(
    merchant, fakes, db, provider, changes, field, reason
):
    refused = await merchant.connect(own(fakes, provider, **changes), expect=422)
    [problem] = refused["error"]["fields"]
    assert problem["field"] == field
    assert reason in problem["message"]
    assert await stored(db) == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"provider": "twilio", "auth_token": "x", "numbers": []}, {"account_sid", "numbers"}),
        ({"provider": "sinch"}, {"provider"}),
        ({"provider": "exotel", "platform": True}, {"provider"}),  # the platform has none
        ([], {"body"}),
    ],
)
async def test_malformed_connections_are_refused(merchant, db, body, fields):
    refused = await merchant.connect(body, expect=422)
    assert {f["field"] for f in refused["error"]["fields"]} >= fields
    assert await stored(db) == []


async def test_a_provider_that_cannot_answer_stores_nothing(merchant, fakes, db):
    fakes["twilio"].fail_next(1, status=503)
    refused = await merchant.connect(own(fakes, "twilio"), expect=502)
    assert refused["error"]["code"] == "provider_unavailable"
    assert await stored(db) == []


# (channel, the platform's account, the shop's own account of that channel)
CHANNEL_PAIRS = [
    ("voice", "twilio", "exotel"),
    ("sms", "twilio", "ringcentral"),
    ("whatsapp", "gupshup", "gupshup"),
]


@pytest.mark.parametrize(("channel", "platform_provider", "own_provider"), CHANNEL_PAIRS)
async def test_seed_002_table_for_every_channel(
    merchant, fakes, channel, platform_provider, own_provider
):
    # No account installed: no selection, and the status says what to connect.
    assert await merchant.channel(channel) is None
    # Only the platform's installed: it is selected.
    first = await merchant.connect(platform(platform_provider))
    assert (await merchant.channel(channel))["account_id"] == first["id"]
    # The platform's first, the shop's later: the platform's stays selected.
    second = await merchant.connect(own(fakes, own_provider))
    assert (await merchant.channel(channel))["account_id"] == first["id"]
    # Until the merchant changes it.
    chosen = await merchant.choose({channel: second["id"]})
    assert chosen["channels"][channel]["account_id"] == second["id"]
    assert (await merchant.channel(channel))["owner"] == "shop"


@pytest.mark.parametrize(("channel", "platform_provider", "own_provider"), CHANNEL_PAIRS)
async def test_the_shops_own_account_first_stays_selected(
    merchant, fakes, channel, platform_provider, own_provider
):
    mine = await merchant.connect(own(fakes, own_provider))
    assert (await merchant.channel(channel))["account_id"] == mine["id"]  # only the shop's
    await merchant.connect(platform(platform_provider))
    assert (await merchant.channel(channel))["account_id"] == mine["id"]


async def test_removing_the_selected_account_falls_back_to_the_other(merchant, fakes, client):
    platform_twilio = await merchant.connect(platform("twilio"))
    exotel = await merchant.connect(own(fakes, "exotel"))
    await merchant.choose({"voice": exotel["id"]})
    removed = await client.delete(
        f"/api/v1/shop/accounts/{exotel['id']}", headers=merchant.headers
    )
    assert removed.status == 204
    assert (await merchant.channel("voice"))["account_id"] == platform_twilio["id"]
    again = await client.delete(f"/api/v1/shop/accounts/{exotel['id']}", headers=merchant.headers)
    assert again.status == 404


async def test_choices_must_name_an_account_that_carries_the_channel(merchant, fakes):
    gupshup = await merchant.connect(own(fakes, "gupshup"))
    refused = await merchant.choose({"voice": gupshup["id"], "fax": 1, "sms": 999}, expect=422)
    assert {f["field"] for f in refused["error"]["fields"]} == {"voice", "fax", "sms"}
    assert await merchant.channel("voice") is None
    assert (await merchant.choose([1], expect=422))["error"]["fields"][0]["field"] == "body"


async def test_another_shop_never_sees_or_removes_an_account(client, merchant, fakes):
    mine = await merchant.connect(own(fakes, "exotel"))
    created = await client.post(
        "/api/v1/shops",
        json={"domain": "other.myshopify.com"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    other = Merchant(client, (await created.json())["api_key"])
    assert (await other.get("accounts"))["accounts"] == []
    deleted = await client.delete(f"/api/v1/shop/accounts/{mine['id']}", headers=other.headers)
    assert deleted.status == 404
    assert (await other.choose({"voice": mine["id"]}, expect=422))["error"]["fields"]


async def test_status_names_the_channel_to_connect_and_the_exotel_fields(merchant, fakes):
    status = await merchant.get("status")
    assert "channels.voice" in status["missing"]
    problem = next(p for p in status["problems"] if p["field"] == "channels.voice")
    assert "Twilio" in problem["message"] and "Exotel" in problem["message"]
    await merchant.connect(own(fakes, "exotel"))
    status = await merchant.get("status")
    assert "channels.voice" not in status["missing"]
    assert "ivr.flow_id" in status["missing"]  # calls through Exotel need the merchant's flow


async def test_the_setup_list_says_what_to_paste_where(merchant, fakes, settings):
    await merchant.connect(own(fakes, "twilio"))
    await merchant.connect(own(fakes, "gupshup"))
    await merchant.connect(own(fakes, "exotel"))
    setup = await merchant.get("setup")
    public_url = settings.server.public_url
    paste = {a["provider"]: a["paste"] for a in setup["accounts"]}
    assert [item["value"] for item in paste["twilio"]] == [
        f"{public_url}/webhooks/twilio/messages"
    ]
    assert TWILIO_NUMBER in paste["twilio"][0]["where"]
    assert paste["gupshup"][0]["value"].startswith(f"{public_url}/webhooks/gupshup/")
    exotel = paste["gupshup"][0]["value"].replace("/gupshup/", "/exotel/")
    assert {item["value"] for item in paste["exotel"]} == {f"{exotel}/passthru", f"{exotel}/sms"}
    assert any("Inbound SMS" in item["where"] for item in paste["exotel"])
    assert setup["channels"]["voice"]["provider"] == "twilio"  # connected first
    assert {p["field"] for p in setup["missing"]} >= {"shopify.access_token", "contact_phone"}
    assert not any(
        "secret" in str(a) or fakes["twilio"].auth_token in str(a) for a in setup["accounts"]
    )


async def test_connecting_is_recorded_on_the_shops_timeline(merchant, fakes, db):
    await merchant.connect(own(fakes, "twilio"))
    async with db.sessions() as session:
        kinds = list(await session.scalars(select(Activity.kind)))
        count = await session.scalar(select(func.count()).select_from(ProviderAccount))
    assert kinds == ["account_connected"] and count == 1


async def test_a_caller_id_that_is_not_the_voice_accounts_is_flagged(merchant, fakes, client):
    await merchant.connect(own(fakes, "exotel"))
    document = await merchant.get("settings")
    for caller_id, flagged in (("08047119999", True), ("+918047112345", False), ("", False)):
        document["ivr"]["caller_id"] = caller_id
        saved = await client.put("/api/v1/shop/settings", json=document, headers=merchant.headers)
        assert saved.status == 200, await saved.text()
        assert ("ivr.caller_id" in (await merchant.get("status"))["missing"]) is flagged
