"""Every customer reply answered by a flow, end to end: signed inbound messages into the real
app and worker, the answers seen by the fake providers, and the merchant's threads through
the admin API (issue 15), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

from sqlalchemy import select

from flows.channels.callback_urls import PLATFORM, shop_token
from flows.channels.provider_events import EVENT_JOB, event_payload
from flows.conversations.keywords import STOP_TEXT
from logs import JsonFormatter
from providers.events import InboundMessage
from providers.sandbox.gupshup import message_text
from storage.jobs import NewJob
from storage.models import Activity, Consent, Message, PendingChoice, Thread
from tests.web.conversations.conftest import (
    WHATSAPP_FIRST,
    add_shop,
    api_key,
    settle,
    status,
    verify,
)
from tests.web.test_messaging import CUSTOMER, SMS_FROM, count, wrote_from

TOLD = {**WHATSAPP_FIRST, "conversations": {"not_understood": True}}
NOT_UNDERSTOOD = (
    "Sorry, we did not understand your reply. Please answer 1 (Confirm), 2 (Cancel), 3 (Call me)."
)


def gupshup_url(res, server) -> str:
    token = shop_token(res.settings.secret_key(), PLATFORM)
    return str(server.make_url(f"/webhooks/gupshup/{token}"))


async def whatsapp(res, server, fakes, text: str, phone: str = CUSTOMER) -> None:
    answer = await fakes["gupshup"].send_text(
        gupshup_url(res, server), from_phone=phone, text=text
    )
    assert answer[0] == 200, answer


def whatsapp_texts(fakes, phone: str = CUSTOMER) -> list[str]:
    destination = phone.removeprefix("+")
    return [
        message_text(sent["message"])[0]
        for sent in fakes["gupshup"].messages
        if sent["destination"] == destination
    ]


async def server_get(server, path: str, headers: dict[str, str], res) -> dict:
    async with res.http.get(str(server.make_url(path)), headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def inbound_rows(res, shop_id: int) -> list[str]:
    async with res.db.sessions() as session:
        rows = await session.scalars(
            select(Message)
            .where(Message.shop_id == shop_id, Message.direction == "in")
            .order_by(Message.id)
        )
        return [row.body for row in rows]


async def test_a_reply_not_understood_is_answered_twice_then_handed_over(
    res, server, worker, fakes, clock
):
    row = await add_shop(res, "Acme", CUSTOMER, 1001, TOLD)
    await verify(res, worker, row)
    assert whatsapp_texts(fakes) == ["Please confirm your order #1001 of ₹999.00."]
    for text in ("maybe", "what?", "hmm"):
        await whatsapp(res, server, fakes, text)
        await settle(res, worker)
    assert whatsapp_texts(fakes)[1:] == [NOT_UNDERSTOOD, NOT_UNDERSTOOD]
    assert await status(res, row) == "pending"
    headers = await api_key(res, row.shop_id)
    answer = await server_get(server, "/api/v1/threads?status=unanswered", headers, res)
    [thread] = answer["threads"]
    assert (thread["phone"], thread["channel"], thread["handed_over"]) == (
        CUSTOMER,
        "whatsapp",
        "not_understood",
    )
    async with res.db.sessions() as session:
        handed = await session.scalar(select(Activity).where(Activity.kind == "handed_over"))
    assert (handed.order_id, handed.detail["reason"]) == (row.id, "not_understood")
    # Handed over, the conversation still takes an answer it offers.
    await whatsapp(res, server, fakes, "1")
    await settle(res, worker)
    assert await status(res, row) == "confirmed"
    assert len(whatsapp_texts(fakes)) == 3


async def test_two_shops_awaiting_the_same_phone_on_a_shared_number_ask_which_order(
    res, server, worker, fakes, clock
):
    acme = await add_shop(res, "Acme", CUSTOMER, 1001, WHATSAPP_FIRST)
    bolt = await add_shop(res, "Bolt", CUSTOMER, 2001, WHATSAPP_FIRST)
    await verify(res, worker, acme)
    await verify(res, worker, bolt)
    assert len(whatsapp_texts(fakes)) == 2

    await whatsapp(res, server, fakes, "2")  # cancel, but of which order?
    await settle(res, worker)
    question = (
        "Which order is your message about? Reply with its number: "
        "1) Bolt order #2001 2) Acme order #1001"
    )
    assert whatsapp_texts(fakes)[2:] == [question]
    assert await inbound_rows(res, acme.shop_id) == []
    assert await inbound_rows(res, bolt.shop_id) == []
    assert (await status(res, acme), await status(res, bolt)) == ("pending", "pending")
    async with res.db.sessions() as session:
        [held] = await session.scalars(select(PendingChoice))
    assert (held.held_text, held.answered_at) == ("2", None)

    await whatsapp(res, server, fakes, "2")  # Acme's order
    await settle(res, worker)
    assert await status(res, acme) == "cancelled"
    assert await status(res, bolt) == "pending"
    assert await inbound_rows(res, acme.shop_id) == ["2", "2"]  # the choice, then the reply
    assert await inbound_rows(res, bolt.shop_id) == []
    assert len(whatsapp_texts(fakes)) == 3  # nothing more was asked

    # The choice is answered: Bolt alone awaits now, so the next reply is Bolt's.
    await whatsapp(res, server, fakes, "1")
    await settle(res, worker)
    assert await status(res, bolt) == "confirmed"
    assert await inbound_rows(res, acme.shop_id) == ["2", "2"]


async def test_a_relay_round_trip_through_the_admin_api(res, server, worker, fakes, order, clock):
    await wrote_from(res, order, "twilio", SMS_FROM)
    url = str(server.make_url("/webhooks/twilio/messages"))
    sent = await fakes["twilio"].send_inbound(
        url, from_=CUSTOMER, to=SMS_FROM, body="Can you deliver after 6pm?"
    )
    assert sent[0] == 200
    await settle(res, worker)
    headers = await api_key(res, order.shop_id)
    [thread] = (await server_get(server, "/api/v1/threads?status=unanswered", headers, res))[
        "threads"
    ]
    assert (thread["phone"], thread["channel"], thread["status"]) == (
        CUSTOMER,
        "sms",
        "unanswered",
    )
    view = await server_get(server, thread["url"], headers, res)
    assert [(m["direction"], m["body"]) for m in view["messages"]] == [
        ("inbound", "Can you deliver after 6pm?")
    ]

    async with res.http.post(
        str(server.make_url(f"{thread['url']}/reply")),
        json={"text": "Yes, we will call before."},
        headers=headers,
    ) as response:
        assert response.status == 201, await response.text()
        answer = (await response.json())["message"]
    await settle(res, worker)
    [relayed] = fakes["twilio"].messages
    assert (relayed["From"], relayed["To"], relayed["Body"]) == (
        SMS_FROM,
        CUSTOMER,
        "Yes, we will call before.",
    )
    view = await server_get(server, thread["url"], headers, res)
    assert view["thread"]["status"] == "answered"
    assert [(m["id"], m["direction"], m["status"]) for m in view["messages"]][1:] == [
        (answer["id"], "outbound", "sent")
    ]
    assert (await server_get(server, "/api/v1/threads?status=unanswered", headers, res))[
        "threads"
    ] == []


async def test_another_shops_thread_is_not_found_and_bad_input_names_the_field(
    res, server, worker, fakes, order, clock
):
    await wrote_from(res, order, "twilio", SMS_FROM)
    url = str(server.make_url("/webhooks/twilio/messages"))
    assert (await fakes["twilio"].send_inbound(url, from_=CUSTOMER, to=SMS_FROM, body="hi"))[
        0
    ] == 200
    await settle(res, worker)
    async with res.db.sessions() as session:
        thread_id = await session.scalar(select(Thread.id))
    other = await add_shop(res, "Other", "+919800000000", 3001, {})
    headers = await api_key(res, other.shop_id)
    for method, path, body in (
        ("GET", f"/api/v1/threads/{thread_id}", None),
        ("POST", f"/api/v1/threads/{thread_id}/reply", {"text": "not yours"}),
        ("GET", "/api/v1/threads/abc", None),
    ):
        async with res.http.request(
            method, str(server.make_url(path)), json=body, headers=headers
        ) as response:
            assert response.status == 404, (path, await response.text())
    assert (await server_get(server, "/api/v1/threads", headers, res))["threads"] == []

    own = await api_key(res, order.shop_id)
    for method, path, body, field in (
        ("GET", "/api/v1/threads?status=closed", None, "status"),
        ("POST", f"/api/v1/threads/{thread_id}/reply", {"text": "   "}, "text"),
        ("POST", f"/api/v1/threads/{thread_id}/reply", {}, "text"),
        ("GET", "/api/v1/customers/919876543210/consent", None, "phone"),
        (
            "PUT",
            "/api/v1/customers/%2B919876543210/consent",
            {"channel": "sms", "state": "opted_out", "source": "keyword"},
            "source",
        ),
        (
            "PUT",
            "/api/v1/customers/%2B919876543210/consent",
            {"channel": "fax", "state": "opted_out", "source": "merchant"},
            "channel",
        ),
    ):
        async with res.http.request(
            method, str(server.make_url(path)), json=body, headers=own
        ) as response:
            assert response.status == 422, (path, await response.text())
            fields = [p["field"] for p in (await response.json())["error"]["fields"]]
            assert field in fields, (path, fields)
    assert fakes["twilio"].messages == []


async def test_consent_through_the_admin_api_with_its_history(
    res, server, worker, fakes, order, clock
):
    await wrote_from(res, order, "twilio", SMS_FROM)
    url = str(server.make_url("/webhooks/twilio/messages"))
    assert (await fakes["twilio"].send_inbound(url, from_=CUSTOMER, to=SMS_FROM, body="STOP"))[
        0
    ] == 200
    await settle(res, worker)
    headers = await api_key(res, order.shop_id)
    path = "/api/v1/customers/%2B919876543210/consent"
    found = await server_get(server, path, headers, res)
    sms, whatsapp_consent = found["channels"]["sms"], found["channels"]["whatsapp"]
    assert (sms["state"], sms["source"]) == ("opted_out", "keyword")
    assert [(h["state"], h["source"]) for h in sms["history"]] == [("opted_out", "keyword")]
    assert whatsapp_consent == {
        "state": "unknown",
        "source": None,
        "updated_at": None,
        "history": [],
    }

    async with res.http.put(
        str(server.make_url(path)),
        json={"channel": "sms", "state": "opted_in", "source": "merchant"},
        headers=headers,
    ) as response:
        assert response.status == 200, await response.text()
        sms = (await response.json())["channels"]["sms"]
    assert (sms["state"], sms["source"]) == ("opted_in", "merchant")
    assert [h["source"] for h in sms["history"]] == ["merchant", "keyword"]


async def test_a_duplicate_inbound_changes_nothing_and_sends_nothing(
    res, server, worker, fakes, clock
):
    row = await add_shop(res, "Acme", CUSTOMER, 1001, TOLD)
    await verify(res, worker, row)
    events = [
        InboundMessage("gupshup", "wamid-1", "whatsapp", CUSTOMER, "OrderTalkDemo", "maybe"),
        InboundMessage("gupshup", "wamid-2", "whatsapp", CUSTOMER, "OrderTalkDemo", "Hello?"),
    ]
    for attempt in ("first", "again"):  # each handled twice: a job retried after its commit
        async with res.db.transaction() as session:
            for event in events:
                await res.queue.enqueue(
                    session,
                    NewJob(
                        EVENT_JOB,
                        event_payload(event),
                        idempotency_key=f"{attempt}:{event.message_id}",
                    ),
                )
        await settle(res, worker)
    # "maybe" got one answer; "Hello?" was not understood either, and got the second.
    assert whatsapp_texts(fakes)[1:] == [NOT_UNDERSTOOD, NOT_UNDERSTOOD]
    assert await inbound_rows(res, row.shop_id) == ["maybe", "Hello?"]
    assert await count(res, Thread) == 0


async def test_stop_on_a_shared_number_opts_out_every_shop_that_wrote_with_one_confirmation(
    res, server, worker, fakes, clock
):
    acme = await add_shop(res, "Acme", CUSTOMER, 1001, WHATSAPP_FIRST)
    bolt = await add_shop(res, "Bolt", CUSTOMER, 2001, WHATSAPP_FIRST)
    quiet = await add_shop(res, "Quiet", CUSTOMER, 3001, {})
    await verify(res, worker, acme)
    await verify(res, worker, bolt)
    await whatsapp(res, server, fakes, "Stop")
    await settle(res, worker)
    assert whatsapp_texts(fakes)[2:] == [STOP_TEXT]
    async with res.db.sessions() as session:
        rows = await session.scalars(select(Consent).order_by(Consent.shop_id))
        opted = [(c.shop_id, c.channel, c.state, c.source) for c in rows]
    assert opted == [
        (acme.shop_id, "whatsapp", "opted_out", "keyword"),
        (bolt.shop_id, "whatsapp", "opted_out", "keyword"),
    ]
    assert quiet.shop_id not in [shop_id for shop_id, *_ in opted]  # it never wrote


async def test_a_keyword_from_a_number_no_shop_wrote_to_records_nothing(
    res, server, worker, fakes, clock, caplog
):
    caplog.set_level(logging.INFO, logger="flows.conversations.inbound")
    await add_shop(res, "Acme", CUSTOMER, 1001, WHATSAPP_FIRST)  # an order, but no message
    await whatsapp(res, server, fakes, "STOP")
    await settle(res, worker)
    assert await count(res, Consent) == 0
    assert fakes["gupshup"].messages == []
    assert await count(res, Message) == 0
    [logged] = [r for r in caplog.records if "no shop wrote" in r.getMessage()]
    line = JsonFormatter().format(logged)
    assert "STOP" in line and CUSTOMER not in line  # the phone is masked


async def test_the_shops_own_words_and_flagged_phrases(res, server, worker, fakes, clock):
    document = {
        **WHATSAPP_FIRST,
        "conversations": {"stop_words": ["रोकें"], "opt_out_on_flag": True},
    }
    acme = await add_shop(res, "Acme", CUSTOMER, 1001, document)
    other_phone = "+919811111111"
    bolt = await add_shop(res, "Bolt", other_phone, 2001, document)
    await verify(res, worker, acme)
    await verify(res, worker, bolt)
    await whatsapp(res, server, fakes, "रोकें।")
    await whatsapp(res, server, fakes, "Sorry, wrong number", phone=other_phone)
    await settle(res, worker)
    assert whatsapp_texts(fakes)[1:] == [STOP_TEXT]
    assert whatsapp_texts(fakes, other_phone)[1:] == [STOP_TEXT]
    async with res.db.sessions() as session:
        opted = {c.phone for c in await session.scalars(select(Consent))}
        thread = await session.scalar(select(Thread))
    assert opted == {CUSTOMER, other_phone}
    assert (thread.shop_id, thread.phone, thread.handed_over) == (
        bolt.shop_id,
        other_phone,
        "flagged: wrong number",
    )


async def test_a_button_names_its_order_on_a_shared_number_and_no_one_is_asked(
    res, server, worker, fakes, clock
):
    acme = await add_shop(res, "Acme", CUSTOMER, 1001, WHATSAPP_FIRST)
    bolt = await add_shop(res, "Bolt", CUSTOMER, 2001, WHATSAPP_FIRST)
    await verify(res, worker, acme)
    await verify(res, worker, bolt)
    sent = fakes["gupshup"].messages[0]  # Acme's, the older
    option = next(o for o in sent["message"]["options"] if o["title"] == "Confirm")
    answer = await fakes["gupshup"].send_button_reply(
        gupshup_url(res, server),
        from_phone=CUSTOMER,
        title="Confirm",
        reply_id=sent["message"]["msgid"],
        postback=option["postbackText"],
    )
    assert answer[0] == 200
    await settle(res, worker)
    assert (await status(res, acme), await status(res, bolt)) == ("confirmed", "pending")
    assert len(whatsapp_texts(fakes)) == 2
    assert await count(res, PendingChoice) == 0
