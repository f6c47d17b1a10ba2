"""Queued sends, STOP, START, HELP and repeated deliveries in random order, through the real
app (signed Twilio inbound on its real route), the real worker and the fake Twilio and
Shopify, against a model of the customer's consent (hypothesis; SQLite and PostgreSQL).

Each example is one new customer of the shop. A send is queued to go out later (as a
notification queued before a STOP and due after it); the worker runs after each inbound
message, and "deliver" lets time pass until every queued send has run. Invariants: no send
reaches the provider while the customer is opted out, every send made while they are opted
in does; each distinct keyword message gets exactly one answer, a repeated delivery none;
Shopify ends with the customer's last STOP or START.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from twilio.request_validator import RequestValidator

from flows.channels.messaging import SEND_JOB, queue_message
from flows.conversations.replies import START_TEXT, STOP_TEXT
from storage.models import Customer, Job, Message
from tests.web.consent_sync.conftest import DOMAIN
from tests.web.test_messaging import SMS_FROM

STATEFUL = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Typed as customers type them: any case, with spaces and punctuation around.
WORDS = {
    "stop": ["STOP", "stop", " Stop. ", "unsubscribe", "Quit!"],
    "start": ["START", "start", "Unstop"],
    "help": ["HELP", "help?", "Info"],
}
ANSWERS = {"stop": STOP_TEXT, "start": START_TEXT}
SEND_DELAY = timedelta(minutes=10)
_PHONES = itertools.count(1)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("send")),
        st.tuples(st.just("keyword"), st.sampled_from(list(WORDS)), st.integers(0, 4)),
        st.tuples(st.just("repeat"), st.integers(0, 20)),
        st.tuples(st.just("deliver")),
    ),
    min_size=1,
    max_size=14,
)


@dataclass
class Model:
    """What the customer asked for, and what the providers should have seen."""

    phone: str
    shopify_id: int
    opted_out: bool = False
    inbound: list[tuple[str, str]] = field(default_factory=list)  # (sid, text) delivered
    answers: list[str] = field(default_factory=list)  # the one answer per keyword message
    sends: dict[str, bool] = field(default_factory=dict)  # body -> delivered
    waiting: list[str] = field(default_factory=list)  # queued sends not yet due
    last_change: str = ""  # the last STOP or START


@STATEFUL
@given(steps=steps)
async def test_no_send_after_an_opt_out_and_one_answer_per_keyword(
    res, server, worker, fakes, shopify, shop, clock, steps
):
    model = await new_customer(res, shop, shopify)
    for step in steps:
        if step[0] == "send":
            await queue_send(res, shop, model)
        elif step[0] == "keyword":
            _, kind, variant = step
            sid = "SM" + uuid.uuid4().hex
            await inbound(fakes, server, model, sid, WORDS[kind][variant % len(WORDS[kind])])
            model.inbound.append((sid, kind))
            model.answers.append(ANSWERS.get(kind, "help"))
            if kind in ANSWERS:
                model.opted_out, model.last_change = kind == "stop", kind
            await settle(res, worker, clock)
        elif step[0] == "repeat" and model.inbound:
            sid, kind = model.inbound[step[1] % len(model.inbound)]
            await inbound(fakes, server, model, sid, WORDS[kind][0])
            await settle(res, worker, clock)
        elif step[0] == "deliver":
            await deliver(res, worker, clock, model)
        check(fakes, model)
    await deliver(res, worker, clock, model)
    check(fakes, model)
    assert await unsettled(res) == 0
    if model.last_change:
        customer = shopify.customer(DOMAIN, model.shopify_id)
        expected = "unsubscribed" if model.last_change == "stop" else "subscribed"
        assert customer["sms_marketing_consent"]["state"] == expected


async def new_customer(res, shop, shopify) -> Model:
    """A customer of the shop (here and in Shopify, subscribed) no earlier example knew."""
    number = next(_PHONES)
    model = Model(phone=f"+9198{number:08d}", shopify_id=8_100_000_000_000 + number)
    shopify.add_customer(
        DOMAIN,
        {
            "id": model.shopify_id,
            "phone": model.phone,
            "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        },
    )
    now = res.clock.now()
    async with res.db.transaction() as session:
        session.add(Customer(shop_id=shop.id, phone=model.phone, created_at=now))
        # The shop wrote to them from the platform's number: their replies there are its own.
        session.add(
            Message(
                shop_id=shop.id,
                channel="sms",
                direction="out",
                provider="twilio",
                account="platform",
                to_phone=model.phone,
                from_phone=SMS_FROM,
                body="Welcome",
                provider_message_id=f"SMwelcome{model.shopify_id}",
                status="sent",
                created_at=now,
                updated_at=now,
            )
        )
    return model


async def queue_send(res, shop, model: Model) -> None:
    """A notification to the customer, queued now and due later."""
    body = f"Your order update {len(model.sends) + len(model.waiting) + 1} for {model.phone}"
    now = res.clock.now()
    async with res.db.transaction() as session:
        await queue_message(
            session,
            res.queue,
            now,
            shop_id=shop.id,
            channel="sms",
            to=model.phone,
            idempotency_key=body,
            body=body,
        )
        await session.execute(
            update(Job)
            .where(Job.idempotency_key == f"{SEND_JOB}:{body}")
            .values(due_at=now + SEND_DELAY)
        )
    model.waiting.append(body)


async def inbound(fakes, server, model: Model, sid: str, text: str) -> None:
    """A signed Twilio inbound SMS on the real route (a repeat reuses its message sid)."""
    twilio = fakes["twilio"]
    url = str(server.make_url("/webhooks/twilio/messages"))
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": twilio.account_sid,
        "From": model.phone,
        "To": SMS_FROM,
        "Body": text,
        "NumMedia": "0",
    }
    signature = RequestValidator(twilio.auth_token).compute_signature(url, params)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as response,
    ):
        assert response.status == 200, await response.text()


async def deliver(res, worker, clock, model: Model) -> None:
    """Time passes until every queued send has run."""
    clock.advance(SEND_DELAY)
    await settle(res, worker, clock)
    for body in model.waiting:
        model.sends[body] = not model.opted_out
    model.waiting.clear()
    async with res.db.sessions() as session:
        statuses = dict(
            (
                await session.execute(
                    select(Message.body, Message.status).where(Message.body.in_(list(model.sends)))
                )
            ).all()
        )
    for body, delivered in model.sends.items():
        assert statuses[body] == ("sent" if delivered else "suppressed"), (body, model)


def check(fakes, model: Model) -> None:
    seen = [m["Body"] for m in fakes["twilio"].messages if m["To"] == model.phone]
    answers = ["help" if body.startswith("Please call") else body for body in seen]
    answers = [body for body in answers if body in (STOP_TEXT, START_TEXT, "help")]
    assert answers == model.answers, model
    delivered = sorted(body for body in seen if body in model.sends or body in model.waiting)
    assert delivered == sorted(body for body, sent in model.sends.items() if sent), model


async def settle(res, worker, clock) -> None:
    """Run what is due, and what the sender's rate limit (one SMS a second) put off by a few
    seconds, moving the clock to each; sends queued for later stay queued."""
    await worker.run_until_idle()
    while True:
        async with res.db.sessions() as session:
            due = await session.scalar(select(func.min(Job.due_at)).where(Job.status == "queued"))
        if due is None or due > clock.now() + timedelta(seconds=5):
            return
        clock.advance(max(due - clock.now(), timedelta(0)))
        await worker.run_until_idle()


async def unsettled(res) -> int:
    async with res.db.sessions() as session:
        return await session.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_(("queued", "running")))
        )
