"""The sandbox's JSON API end to end: the simulated world (fake Shopify, Exotel, Gupshup and the
customers' phones) and the real app, worker and pages in this process, on SQLite, on the
sandbox's own clock, driven over loopback HTTP as the sandbox page drives them."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from clock import OffsetClock
from main import make_worker, open_resources, open_sandbox, sandbox_settings
from providers.sandbox.shop import SHOP_DOMAIN, TWILIO_NUMBER
from providers.sandbox.world import DND_NUMBER, NEVER_ANSWERS, SandboxWorld
from settings import Settings
from tests.web.test_shopify import free_port
from web.app import AppDeps, build_app

CUSTOMER = "+919876500001"
KOLKATA = ZoneInfo("Asia/Kolkata")
WAIT_SECONDS = 15.0


@pytest.fixture
def database_url(tmp_path, sqlite_template) -> str:
    """The sandbox runs on SQLite."""
    path = tmp_path / "sandbox.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def next_morning(now: datetime) -> datetime:
    """10:00 in India, today if still ahead, else tomorrow: inside the demo calling window."""
    local = now.astimezone(KOLKATA)
    morning = datetime.combine(local.date(), time(10), KOLKATA)
    return morning if morning > local else morning + timedelta(days=1)


class Driver:
    """The sandbox page's side: reads the state and posts actions."""

    def __init__(self, base: str, http: aiohttp.ClientSession, world: SandboxWorld) -> None:
        self.base, self.http, self.world = base, http, world

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path) as response:
            return response.status, await response.json()

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body) as response:
            return response.status, await response.json()

    async def state(self) -> dict[str, Any]:
        status, body = await self.get("/sandbox/api/state")
        assert status == 200, body
        return body

    async def card(self, name: str) -> dict[str, Any]:
        """The order's card from the real admin API, with the demo shop's key ({} if none)."""
        status, card = await self.admin("GET", f"orders/{quote(name)}")
        return card if status == 200 else {}

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The real admin API (/api/v1/...) with the demo shop's key, as the page calls it."""
        key = (await self.state())["shop"]["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.request(
            method, f"{self.base}/api/v1/{path}", json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    async def use_twilio(self, *channels: str) -> dict[str, Any]:
        """Carry `channels` by the demo's simulated Twilio (PUT /shop/channels); the setup."""
        status, listing = await self.admin("GET", "shop/accounts")
        assert status == 200, listing
        twilio = next(a for a in listing["accounts"] if a["provider"] == "twilio")
        status, chosen = await self.admin(
            "PUT", "shop/channels", dict.fromkeys(channels, twilio["id"])
        )
        assert status == 200, chosen
        status, setup = await self.admin("GET", "shop/setup")
        assert status == 200, setup
        return setup

    async def until(
        self,
        check: Callable[[dict[str, Any]], Any],
        what: str,
        fetch: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> Any:
        """Poll the state (or `fetch`) until `check` returns something truthy; return it."""
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while True:
            state = await (fetch or self.state)()
            found = check(state)
            if found:
                return found
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"timed out waiting for {what}; state: {state}")
            await asyncio.sleep(0.05)

    async def order(self, phone: str, payment: str = "cod") -> dict[str, Any]:
        body = {"phone": phone, "amount": "1499", "payment": payment, "customer": "Asha Rao"}
        status, answer = await self.post("/sandbox/api/orders", body)
        assert status == 201, answer
        return answer["order"]


def phone_of(state: dict[str, Any], number: str) -> dict[str, Any]:
    return next(phone for phone in state["phones"] if phone["number"] == number)


def order_of(state: dict[str, Any], order_id: str) -> dict[str, Any]:
    return next(order for order in state["orders"] if order["id"] == order_id)


def link_sms(state: dict[str, Any], number: str) -> str | None:
    return next(
        (line["link"] for line in phone_of(state, number)["threads"]["sms"] if line["link"]),
        None,
    )


async def link_after_unanswered_calls(sandbox: Driver) -> str:
    """The link SMS the number that never answers gets once its calls rang out, the clock
    moved to each next job (the retry) on the way."""

    async def link_or_next_job(state: dict[str, Any]) -> str | None:
        """The link if it came; else, once no call rings, the clock to the next job."""
        link = link_sms(state, NEVER_ANSWERS)
        if not link and not phone_of(state, NEVER_ANSWERS)["ringing"] and state["next_job_at"]:
            status, moved = await sandbox.post("/sandbox/api/time", {"to": "next_job"})
            assert status in (200, 409), moved  # 409: what was due has just run
        return link

    link = None
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while link is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.3)  # let the app take in the last call's end
        link = await link_or_next_job(await sandbox.state())
    assert link, "no link SMS arrived"
    return link


@pytest.fixture
async def sandbox(database_url) -> AsyncIterator[Driver]:
    clock = OffsetClock()
    clock.advance_to(next_morning(clock.now()))
    world = SandboxWorld(clock, ring_out_after=0.2, delivery_after=0.05)
    await world.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = sandbox_settings(Settings(database={"url": database_url}), world, base)
    try:
        async with open_resources(settings, clock) as res:
            simulation = await open_sandbox(res, world, clock)
            deps = AppDeps(
                settings,
                clock,
                res.db,
                res.queue,
                res.metrics,
                res.http,
                res.account_desk(),
                None,
                simulation,
            )
            runner = web.AppRunner(build_app(deps), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            worker = make_worker(res)
            task = asyncio.create_task(worker.run())
            try:
                async with aiohttp.ClientSession() as http:
                    yield Driver(base, http, world)
            finally:
                worker.stop()
                await task
                # The world's callbacks stop before the app they call: none is accepted
                # by a server that is shutting down (its socket would be left unclosed).
                await world.stop()
                await runner.cleanup()
    finally:
        await world.stop()


async def test_the_state_shows_the_demo_shop_and_the_special_numbers(sandbox: Driver):
    state = await sandbox.state()
    assert state["shop"]["domain"] == SHOP_DOMAIN and state["shop"]["api_key"].startswith("otk_")
    assert state["special_numbers"] == {"dnd": DND_NUMBER, "never_answers": NEVER_ANSWERS}
    assert state["offset_minutes"] >= 0 and state["orders"] == []
    assert {phone["number"] for phone in state["phones"]} == {DND_NUMBER, NEVER_ANSWERS}
    # The demo shop's API key opens the real admin API.
    headers = {"Authorization": f"Bearer {state['shop']['api_key']}"}
    async with sandbox.http.get(f"{sandbox.base}/api/v1/shop/status", headers=headers) as r:
        assert r.status == 200


async def test_answering_1_confirms_the_order_and_tags_it_in_shopify(sandbox: Driver):
    order = await sandbox.order(CUSTOMER)
    assert order["name"].startswith("#") and order["payment"] == "cod"
    ringing = await sandbox.until(lambda s: phone_of(s, CUSTOMER)["ringing"], "the call to ring")
    status, answer = await sandbox.post(f"/sandbox/api/phones/{CUSTOMER}/answer", {"digits": "1"})
    assert status == 200 and answer["call"]["call_id"] == ringing["call_id"]
    confirmed = await sandbox.until(
        lambda s: order_of(s, order["id"])["tags"] and order_of(s, order["id"]),
        "the order to be tagged",
    )
    assert confirmed["verification_status"] == "confirmed"
    assert confirmed["tags"] == ["cod_confirmed"]
    assert sandbox.world.shopify.tags(SHOP_DOMAIN, order["id"]) == ["cod_confirmed"]
    state = await sandbox.state()
    assert phone_of(state, CUSTOMER)["ringing"] is None
    assert [c["status"] for c in phone_of(state, CUSTOMER)["calls"]] == ["completed"]
    parties = {request["party"] for request in state["requests"]}
    assert parties == {"shopify", "exotel", "twilio"}
    # Twilio was only asked about the demo's account when it was connected: the call was Exotel's.
    assert {r["method"] for r in state["requests"] if r["party"] == "twilio"} == {"GET"}
    assert phone_of(state, CUSTOMER)["calls"][0]["provider"] == "exotel"
    assert any("tagsAdd" in request["summary"] for request in state["requests"])


async def test_a_number_that_never_answers_gets_the_link_and_cancels_on_its_page(
    sandbox: Driver,
):
    order = await sandbox.order(NEVER_ANSWERS)
    link = await link_after_unanswered_calls(sandbox)
    state = await sandbox.state()
    calls = phone_of(state, NEVER_ANSWERS)["calls"]
    assert [call["status"] for call in calls] == ["no-answer", "no-answer"]
    assert state["offset_minutes"] >= 10  # the retry waited its ten minutes

    async with sandbox.http.get(link) as page:
        assert page.status == 200
    async with sandbox.http.post(link, data={"action": "cancel", "sure": "yes"}) as page:
        assert page.status == 200
    cancelled = await sandbox.until(
        lambda s: order_of(s, order["id"])["cancelled"] and order_of(s, order["id"]),
        "the order to be cancelled in Shopify",
    )
    assert cancelled["verification_status"] == "cancelled"
    assert cancelled["tags"] == ["ivr_retry_limit_reached", "cod_cancelled"]


async def test_the_demo_shop_has_its_exotel_and_twilio_and_a_setup_list(sandbox: Driver):
    status, setup = await sandbox.admin("GET", "shop/setup")
    assert status == 200, setup
    assert (setup["status"], setup["missing"]) == ("installed", [])
    assert {channel: route["provider"] for channel, route in setup["channels"].items()} == {
        "voice": "exotel",  # connected first, so it carries calls and SMS until changed
        "sms": "exotel",
        "whatsapp": "gupshup",
    }
    twilio = next(a for a in setup["accounts"] if a["provider"] == "twilio")
    assert twilio["owner"] == "shop" and twilio["status"] == "active"
    assert [n["number"] for n in twilio["details"]["numbers"]] == [TWILIO_NUMBER]
    assert [item["value"] for item in twilio["paste"]] == [
        f"{sandbox.base}/webhooks/twilio/messages"
    ]
    setup = await sandbox.use_twilio("voice", "sms")
    assert (setup["channels"]["voice"]["provider"], setup["channels"]["sms"]["provider"]) == (
        "twilio",
        "twilio",
    )
    assert (setup["status"], setup["missing"]) == ("installed", [])
    # The choice is the merchant's: a wrong one is the admin API's 422 naming the channel.
    gupshup = next(a for a in setup["accounts"] if a["provider"] == "gupshup")
    status, problem = await sandbox.admin("PUT", "shop/channels", {"voice": gupshup["id"]})
    assert status == 422 and [f["field"] for f in problem["error"]["fields"]] == ["voice"]


async def test_every_method_the_setup_panel_offers_is_accepted_and_installed(sandbox: Driver):
    async with sandbox.http.get(f"{sandbox.base}/sandbox") as response:
        page = await response.text()
    offered = {
        value: json.loads(html.unescape(changes))
        for value, changes in re.findall(r'<option value="(\w+)" data-changes=\'([^\']+)\'', page)
    }
    assert list(offered) == ["ivr", "whatsapp", "otp", "missed_call"]
    for carrier in ("exotel", "twilio"):
        if carrier == "twilio":
            await sandbox.use_twilio("voice", "sms")
        for method, changes in offered.items():
            # As the page saves it: the whole document read, the method's fields set, put back.
            status, document = await sandbox.admin("GET", "shop/settings")
            for section, fields in changes.items():
                document[section] |= fields
            status, saved = await sandbox.admin("PUT", "shop/settings", document)
            assert status == 200, (carrier, method, saved)
            status, setup = await sandbox.admin("GET", "shop/setup")
            assert (setup["status"], setup["missing"]) == ("installed", []), (carrier, method)


async def test_a_call_through_twilio_plays_our_ivr_and_keypad_1_confirms(sandbox: Driver):
    await sandbox.use_twilio("voice")
    order = await sandbox.order(CUSTOMER)
    ringing = await sandbox.until(lambda s: phone_of(s, CUSTOMER)["ringing"], "the call to ring")
    assert (ringing["provider"], ringing["from"]) == ("twilio", TWILIO_NUMBER)
    status, answer = await sandbox.post(f"/sandbox/api/phones/{CUSTOMER}/answer", {"digits": "1"})
    assert status == 200, answer
    call = answer["call"]
    assert (call["call_id"], call["status"]) == (ringing["call_id"], "completed")
    speakers = [line["speaker"] for line in call["transcript"]]
    assert speakers == ["ivr", "customer", "ivr"]
    prompt, pressed, thanks = (line["text"] for line in call["transcript"])
    assert order["name"].lstrip("#") in prompt and "Press 1 to confirm" in prompt
    assert pressed == "pressed 1" and thanks
    confirmed = await sandbox.until(
        lambda s: order_of(s, order["id"])["tags"] and order_of(s, order["id"]),
        "the order to be tagged",
    )
    assert confirmed["verification_status"] == "confirmed"
    assert sandbox.world.shopify.tags(SHOP_DOMAIN, order["id"]) == ["cod_confirmed"]
    logged = await sandbox.until(
        lambda calls: calls[1]["calls"] and calls[1]["calls"][0]["duration_seconds"] and calls,
        "the call's end in the call log",
        fetch=lambda: sandbox.admin("GET", "calls"),
    )
    [row] = logged[1]["calls"]
    assert (row["provider"], row["input_digits"], row["status"]) == ("twilio", "1", "completed")
    paths = [r["path"] for r in (await sandbox.state())["requests"] if r["party"] == "twilio"]
    assert any(path.endswith("/Calls.json") for path in paths)


async def test_no_answer_on_twilio_then_the_link_sms_by_twilio_and_a_reply(sandbox: Driver):
    await sandbox.use_twilio("voice", "sms")
    order = await sandbox.order(NEVER_ANSWERS)
    link = await link_after_unanswered_calls(sandbox)
    state = await sandbox.state()
    calls = phone_of(state, NEVER_ANSWERS)["calls"]
    assert [(c["provider"], c["status"]) for c in calls] == [("twilio", "no-answer")] * 2
    [sms] = phone_of(state, NEVER_ANSWERS)["threads"]["sms"]
    # Twilio sends from the account's number (the sender id is Exotel's DLT header).
    assert (sms["provider"], sms["number"]) == ("twilio", TWILIO_NUMBER)
    # Twilio's delivery report reached the app.
    await sandbox.until(
        lambda messages: [m["status"] for m in messages[1]["messages"]] == ["delivered"],
        "the SMS to be reported delivered",
        fetch=lambda: sandbox.admin("GET", "messages"),
    )

    async with sandbox.http.post(link, data={"action": "confirm"}) as page:
        assert page.status == 200
    confirmed = await sandbox.until(
        lambda s: order_of(s, order["id"])["tags"] and order_of(s, order["id"]),
        "the order to be confirmed from its page",
    )
    assert confirmed["verification_status"] == "confirmed"

    # A reply typed on the phone reaches our app as Twilio posts it (signed).
    status, reply = await sandbox.post(
        f"/sandbox/api/phones/{NEVER_ANSWERS}/reply", {"channel": "sms", "text": "Thanks!"}
    )
    assert status == 200, reply
    assert (reply["message"]["direction"], reply["message"]["number"]) == ("in", TWILIO_NUMBER)
    inbound = await sandbox.until(
        lambda messages: [m for m in messages[1]["messages"] if m["direction"] == "inbound"],
        "the reply in the message log",
        fetch=lambda: sandbox.admin("GET", "messages"),
    )
    assert [(m["provider"], m["from_phone"], m["body"]) for m in inbound] == [
        ("twilio", NEVER_ANSWERS, "Thanks!")
    ]


async def test_otp_picked_as_the_page_does_is_entered_on_the_link_page(sandbox: Driver):
    # The Setup panel's change: the settings document read, its method set, put back whole.
    status, document = await sandbox.admin("GET", "shop/settings")
    assert status == 200, document
    document["verification"] |= {"type": "otp", "then": []}
    status, saved = await sandbox.admin("PUT", "shop/settings", document)
    assert status == 200 and saved["verification"]["type"] == "otp", saved
    await sandbox.use_twilio("sms")
    order = await sandbox.order(CUSTOMER)
    link = await sandbox.until(lambda s: link_sms(s, CUSTOMER), "the OTP SMS")
    [sms] = phone_of(await sandbox.state(), CUSTOMER)["threads"]["sms"]
    assert sms["provider"] == "twilio"
    code = sms["body"].split()[0]
    assert code.isdigit(), sms["body"]
    async with sandbox.http.post(link, data={"code": code}) as page:
        assert page.status == 200
    verified = await sandbox.until(
        lambda s: order_of(s, order["id"])["tags"] and order_of(s, order["id"]),
        "the order to be verified",
    )
    assert verified["verification_status"] == "confirmed"
    assert verified["tags"] == ["otp_verified"]


async def test_a_dnd_number_is_not_called_and_gets_the_link_at_once(sandbox: Driver):
    await sandbox.order(DND_NUMBER)
    link = await sandbox.until(lambda s: link_sms(s, DND_NUMBER), "the link SMS")
    assert "/v/" in link
    state = await sandbox.state()
    assert [call["status"] for call in phone_of(state, DND_NUMBER)["calls"]] == ["refused"]
    assert phone_of(state, DND_NUMBER)["ringing"] is None
    assert state["offset_minutes"] < 24 * 60  # no time had to pass


async def test_fulfil_fail_and_cancel_reach_the_app_as_shopify_webhooks(sandbox: Driver):
    order = await sandbox.order(CUSTOMER, payment="prepaid")
    assert order["payment"] == "prepaid"
    path = f"/sandbox/api/orders/{order['id']}"
    status, problem = await sandbox.post(f"{path}/fail")
    assert status == 409 and problem["error"]["code"] == "conflict"
    status, answer = await sandbox.post(f"{path}/fulfil")
    assert status == 200 and answer["order"]["fulfillment_status"] == "fulfilled"
    assert (await sandbox.post(f"{path}/fulfil"))[0] == 409
    assert (await sandbox.post(f"{path}/fail"))[0] == 200
    status, answer = await sandbox.post(f"{path}/cancel")
    assert status == 200 and answer["order"]["cancelled"] is True
    assert (await sandbox.post(f"{path}/cancel"))[0] == 409
    card = await sandbox.until(
        lambda c: c.get("order", {}).get("cancelled_at") and c,
        "our app to see the order cancelled",
        fetch=lambda: sandbox.card(order["name"]),
    )
    timeline = [item["kind"] for item in card["timeline"]]
    assert timeline.count("fulfillment") == 2  # shipped, then the failed delivery
    assert card["order"]["fulfillment_status"] == "fulfilled"
    assert card["order"]["verification_status"] == "skipped"  # prepaid: not verified
    assert (await sandbox.post("/sandbox/api/orders/42/fulfil"))[0] == 404


async def test_whatsapp_buttons_and_replies(sandbox: Driver):
    api_key = (await sandbox.state())["shop"]["api_key"]
    headers = {"Authorization": f"Bearer {api_key}"}
    settings_url = f"{sandbox.base}/api/v1/shop/settings"
    async with sandbox.http.get(settings_url, headers=headers) as response:
        document = await response.json()
    document["verification"] |= {"type": "whatsapp", "then": ["ivr"]}
    async with sandbox.http.put(settings_url, json=document, headers=headers) as response:
        assert response.status == 200, await response.text()

    order = await sandbox.order(CUSTOMER)
    message = await sandbox.until(
        lambda s: next(iter(phone_of(s, CUSTOMER)["threads"]["whatsapp"]), None),
        "the WhatsApp message",
    )
    assert [button["title"] for button in message["buttons"]] == ["Confirm", "Cancel", "Call me"]
    status, problem = await sandbox.post(
        f"/sandbox/api/phones/{CUSTOMER}/button", {"title": "Maybe"}
    )
    assert status == 404, problem
    status, _ = await sandbox.post(
        f"/sandbox/api/phones/{CUSTOMER}/reply", {"channel": "whatsapp", "text": "hello"}
    )
    assert status == 200
    status, _ = await sandbox.post(f"/sandbox/api/phones/{CUSTOMER}/button", {"title": "Confirm"})
    assert status == 200
    await sandbox.until(
        lambda s: order_of(s, order["id"])["verification_status"] == "confirmed",
        "the button to confirm",
    )
    thread = phone_of(await sandbox.state(), CUSTOMER)["threads"]["whatsapp"]
    assert [(line["direction"], line["body"]) for line in thread[1:]] == [
        ("in", "hello"),
        ("in", "Confirm"),
    ]


async def test_missed_call_and_time_moves(sandbox: Driver):
    status, answer = await sandbox.post(f"/sandbox/api/phones/{CUSTOMER}/missed-call")
    assert status == 200 and answer["call"]["status"] == "missed-call"
    before = await sandbox.state()
    status, moved = await sandbox.post("/sandbox/api/time", {"minutes": 30})
    assert status == 200
    assert moved["offset_minutes"] >= before["offset_minutes"] + 30
    assert datetime.fromisoformat(moved["now"]) >= datetime.fromisoformat(before["now"])


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/sandbox/api/orders", {}, {"phone", "amount", "payment"}),
        (
            "/sandbox/api/orders",
            {"phone": "12345", "amount": "0", "payment": "card", "extra": 1},
            {"phone", "amount", "payment", "extra"},
        ),
        (
            "/sandbox/api/orders",
            {"phone": CUSTOMER, "amount": "1.005", "payment": "cod"},
            {"amount"},
        ),
        ("/sandbox/api/time", {"minutes": 0}, {"minutes"}),
        ("/sandbox/api/time", {"minutes": 1441}, {"minutes"}),
        ("/sandbox/api/time", {"to": "tomorrow"}, {"to"}),
        ("/sandbox/api/time", {}, {"body"}),
        ("/sandbox/api/time", {"minutes": 5, "to": "next_job"}, {"body"}),
        (f"/sandbox/api/phones/{CUSTOMER}/answer", {"digits": "1a"}, {"digits"}),
        (
            f"/sandbox/api/phones/{CUSTOMER}/reply",
            {"channel": "fax", "text": ""},
            {"channel", "text"},
        ),
        (f"/sandbox/api/phones/{CUSTOMER}/button", {"title": ""}, {"title"}),
    ],
)
async def test_bad_input_is_422_naming_the_fields(sandbox: Driver, path, body, fields):
    status, problem = await sandbox.post(path, body)
    assert status == 422, problem
    assert {item["field"] for item in problem["error"]["fields"]} == fields


async def test_actions_without_a_call_or_message_are_404(sandbox: Driver):
    for action in ("answer", "ring-out"):
        status, problem = await sandbox.post(f"/sandbox/api/phones/{CUSTOMER}/{action}", {})
        assert status == 404 and "ringing" in problem["error"]["message"]
    status, _ = await sandbox.post(f"/sandbox/api/phones/{CUSTOMER}/button", {"title": "Confirm"})
    assert status == 404


async def test_a_phone_texts_the_shops_number_when_it_has_no_sms_to_answer(sandbox: Driver):
    status, sent = await sandbox.post(
        f"/sandbox/api/phones/{CUSTOMER}/reply", {"channel": "sms", "text": "hello"}
    )
    assert status == 200 and sent["message"]["number"] == TWILIO_NUMBER


async def test_an_sms_reply_through_exotel_reaches_the_app(sandbox: Driver):
    # The SMS came from a sender id: the reply goes to the shop's ExoPhone, which Exotel
    # passes on to our inbound-SMS route.
    await sandbox.order(DND_NUMBER)
    await sandbox.until(lambda s: link_sms(s, DND_NUMBER), "the link SMS")
    status, reply = await sandbox.post(
        f"/sandbox/api/phones/{DND_NUMBER}/reply", {"channel": "sms", "text": "Where is it?"}
    )
    assert status == 200, reply
    assert reply["message"]["provider"] == "exotel"
    inbound = await sandbox.until(
        lambda messages: [m for m in messages[1]["messages"] if m["direction"] == "inbound"],
        "the reply in the message log",
        fetch=lambda: sandbox.admin("GET", "messages"),
    )
    assert [(m["provider"], m["from_phone"], m["body"]) for m in inbound] == [
        ("exotel", DND_NUMBER, "Where is it?")
    ]


async def test_events_stream_says_changed(sandbox: Driver):
    async with sandbox.http.get(f"{sandbox.base}/sandbox/api/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert await response.content.readline() == b"event: changed\n"
        await response.content.readline()
        await response.content.readline()
        await sandbox.order(CUSTOMER)
        line = await asyncio.wait_for(response.content.readline(), WAIT_SECONDS)
        assert line == b"event: changed\n"


async def test_a_normal_app_has_no_sandbox_routes(aiohttp_client, app_factory, db, queue):
    client = await aiohttp_client(app_factory(db, queue))
    assert (await client.get("/sandbox/api/state")).status == 404
    assert (await client.post("/sandbox/api/orders", json={})).status == 404
    assert (await client.post("/sandbox/api/time", json={"minutes": 5})).status == 404


async def test_a_sandbox_from_before_twilio_gains_it_at_the_next_start(database_url):
    clock = OffsetClock()
    world = SandboxWorld(clock)
    await world.start()
    settings = sandbox_settings(Settings(database={"url": database_url}), world, "http://[::1]:9")
    try:
        async with open_resources(settings, clock) as res:
            shop_id = (await open_sandbox(res, world, clock)).shop.shop_id
            desk = res.account_desk()
            listed = (await desk.listing(shop_id))["accounts"]
            twilio = next(account for account in listed if account["provider"] == "twilio")
            assert await desk.remove(shop_id, twilio["id"])  # as a sandbox.db from before
            await open_sandbox(res, world, clock)  # the next start, on the same database
            listed = (await desk.listing(shop_id))["accounts"]
    finally:
        await world.stop()
    assert [account["provider"] for account in listed] == ["exotel", "gupshup", "twilio"]
