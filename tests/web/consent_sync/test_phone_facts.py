"""What the sandbox page reads of a phone from our records: its consent per channel and the
messages the send gate kept from it (SQLite and PostgreSQL)."""

from __future__ import annotations

from flows.shops.sandbox import phone_facts
from tests.web.consent.test_keywords import inbound_sms, run
from tests.web.test_messaging import CUSTOMER, send


async def test_a_phone_shows_its_opt_out_and_the_messages_not_sent(
    res, server, worker, fakes, shop, order, clock
):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    await send(res, order, body="Your order #1001 is on its way", key="after-stop")
    await run(worker, clock)
    facts = await phone_facts(res.db, shop.id)
    assert facts.consents == {CUSTOMER: {"sms": "opted_out"}}
    [kept] = facts.suppressed[CUSTOMER]
    assert (kept["channel"], kept["body"]) == ("sms", "Your order #1001 is on its way")
    assert "opted out of sms" in kept["reason"]
