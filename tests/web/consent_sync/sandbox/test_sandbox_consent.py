"""Consent in the sandbox, driven as its page drives it: a phone texts STOP (at any time, with
no SMS received yet) and sees the one confirmation, the simulated Shopify customer's consent
flips in the shop view, HELP answers with the shop's phone, the verification then skips its
link SMS, and the merchant's own change in Shopify reaches our app (SQLite, as the sandbox).

SMS go by the demo's Twilio here: an answer is sent from the number the customer texted."""

from __future__ import annotations

import pytest

from flows.conversations.replies import STOP_TEXT
from providers.sandbox.shop import SHOP_PHONE, TWILIO_NUMBER
from providers.sandbox.world import NEVER_ANSWERS
from tests.web.test_sandbox_api import CUSTOMER, Driver, order_of, phone_of

OTHER = "+919876500077"


def received_sms(state: dict, number: str) -> list[str]:
    return [
        line["body"]
        for line in phone_of(state, number)["threads"]["sms"]
        if line["direction"] == "out"
    ]


def shopify_consent(state: dict, number: str) -> str | None:
    return next((c["sms_consent"] for c in state["customers"] if c["phone"] == number), None)


async def text(sandbox: Driver, number: str, body: str) -> dict:
    status, answer = await sandbox.post(
        f"/sandbox/api/phones/{number}/reply", {"channel": "sms", "text": body}
    )
    assert status == 200, answer
    return answer["message"]


async def test_stop_confirms_flips_shopify_and_help_gives_the_shop_phone(sandbox: Driver):
    await sandbox.use_twilio("sms")
    await sandbox.order(CUSTOMER)
    sent = await text(sandbox, CUSTOMER, "STOP")
    assert (sent["direction"], sent["number"]) == ("in", TWILIO_NUMBER)
    await sandbox.until(lambda s: STOP_TEXT in received_sms(s, CUSTOMER), "the confirmation")
    state = await sandbox.until(
        lambda s: shopify_consent(s, CUSTOMER) == "unsubscribed" and s,
        "the Shopify customer's consent to flip",
    )
    assert phone_of(state, CUSTOMER)["consent"] == {"sms": "opted_out"}

    await text(sandbox, CUSTOMER, "help")
    state = await sandbox.until(
        lambda s: any(SHOP_PHONE in body for body in received_sms(s, CUSTOMER)) and s,
        "the HELP answer",
    )
    assert received_sms(state, CUSTOMER).count(STOP_TEXT) == 1


async def test_after_stop_the_verification_skips_its_link_sms(sandbox: Driver):
    await sandbox.use_twilio("sms")
    order = await sandbox.order(NEVER_ANSWERS)  # its first call rings while the STOP comes
    await text(sandbox, NEVER_ANSWERS, "STOP")
    await sandbox.until(lambda s: STOP_TEXT in received_sms(s, NEVER_ANSWERS), "the confirmation")

    async def unverified(state: dict) -> bool:
        if order_of(state, order["id"])["verification_status"] == "unverified":
            return True
        if not phone_of(state, NEVER_ANSWERS)["ringing"] and state["next_job_at"]:
            status, moved = await sandbox.post("/sandbox/api/time", {"to": "next_job"})
            assert status in (200, 409), moved  # 409: what was due has just run
        return False

    for _ in range(200):
        if await unverified(await sandbox.state()):
            break
    else:
        pytest.fail("the verification did not end")
    card = await sandbox.card(order["name"])
    skipped = [line for line in card["timeline"] if line["kind"] == "method_skipped"]
    assert skipped and skipped[0]["detail"] == {"reason": "the customer opted out of sms"}
    assert received_sms(await sandbox.state(), NEVER_ANSWERS) == [STOP_TEXT]


async def test_the_merchant_unsubscribing_in_shopify_reaches_our_app(sandbox: Driver):
    await sandbox.order(OTHER)
    await sandbox.until(lambda s: shopify_consent(s, OTHER), "the customer in Shopify")
    status, answer = await sandbox.post(
        f"/sandbox/api/customers/{OTHER}/sms-consent", {"subscribed": False}
    )
    assert status == 200 and answer["customer"]["sms_consent"] == "unsubscribed"
    await sandbox.until(
        lambda s: phone_of(s, OTHER)["consent"] == {"sms": "opted_out"}, "our consent"
    )
    status, problem = await sandbox.post(
        "/sandbox/api/customers/+919800000000/sms-consent", {"subscribed": True}
    )
    assert status == 404, problem
    status, problem = await sandbox.post(f"/sandbox/api/customers/{OTHER}/sms-consent", {})
    assert status == 422 and problem["error"]["fields"][0]["field"] == "subscribed"
