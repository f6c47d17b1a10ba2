"""The merchant's threads in the sandbox, driven as its page drives them: a customer's free
text, typed on the simulated phone by SMS or WhatsApp, shows in the merchant's thread in the
sandbox's state, and the merchant's answer from the page reaches that phone on the same
channel from the number the customer wrote to (SQLite, as the sandbox)."""

from __future__ import annotations

from typing import Any

from providers.sandbox.shop import TWILIO_NUMBER
from tests.web import test_sandbox_api
from tests.web.test_sandbox_api import CUSTOMER, Driver, order_of, phone_of

# The sandbox (its world, app and worker) as the sandbox API tests run it.
database_url = test_sandbox_api.database_url
sandbox = test_sandbox_api.sandbox


def thread_of(state: dict[str, Any], phone: str, channel: str) -> dict[str, Any] | None:
    return next(
        (t for t in state["threads"] if t["phone"] == phone and t["channel"] == channel), None
    )


def lines(thread: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["direction"], m["body"]) for m in thread["messages"]]


async def text(sandbox: Driver, channel: str, body: str) -> None:
    status, sent = await sandbox.post(
        f"/sandbox/api/phones/{CUSTOMER}/reply", {"channel": channel, "text": body}
    )
    assert status == 200, sent


async def answer(sandbox: Driver, thread: dict[str, Any], body: str) -> dict[str, Any]:
    status, sent = await sandbox.post(f"/sandbox/api/threads/{thread['id']}/reply", {"text": body})
    assert status == 201, sent
    return sent["message"]


async def test_a_free_text_sms_reaches_the_merchants_thread_and_the_answer_the_phone(
    sandbox: Driver,
):
    await sandbox.use_twilio("sms")
    await text(sandbox, "sms", "Can I change the delivery address?")
    thread = await sandbox.until(
        lambda s: thread_of(s, CUSTOMER, "sms"), "the message in the merchant's thread"
    )
    assert thread["status"] == "unanswered" and thread["handed_over"] == ""
    assert lines(thread) == [("in", "Can I change the delivery address?")]

    sent = await answer(sandbox, thread, "Yes: reply with the new one.")
    assert (sent["direction"], sent["body"]) == ("out", "Yes: reply with the new one.")
    received = await sandbox.until(
        lambda s: [
            line for line in phone_of(s, CUSTOMER)["threads"]["sms"] if line["direction"] == "out"
        ],
        "the answer on the phone",
    )
    assert [(line["body"], line["number"]) for line in received] == [
        ("Yes: reply with the new one.", TWILIO_NUMBER)
    ]
    thread = thread_of(await sandbox.state(), CUSTOMER, "sms")
    assert thread is not None and thread["status"] == "answered"
    assert lines(thread) == [
        ("in", "Can I change the delivery address?"),
        ("out", "Yes: reply with the new one."),
    ]
    # The same thread, as the admin API shows it to the merchant's own tools.
    status, read = await sandbox.admin("GET", f"threads/{thread['id']}")
    assert status == 200, read
    assert [m["body"] for m in read["messages"]] == [body for _, body in lines(thread)]


async def test_a_whatsapp_free_text_after_the_verification_is_answered_on_whatsapp(
    sandbox: Driver,
):
    status, document = await sandbox.admin("GET", "shop/settings")
    assert status == 200, document
    document["verification"] |= {"type": "whatsapp", "then": []}
    status, saved = await sandbox.admin("PUT", "shop/settings", document)
    assert status == 200, saved
    order = await sandbox.order(CUSTOMER)
    await sandbox.until(
        lambda s: phone_of(s, CUSTOMER)["threads"]["whatsapp"], "the WhatsApp message"
    )
    status, pressed = await sandbox.post(
        f"/sandbox/api/phones/{CUSTOMER}/button", {"title": "Confirm"}
    )
    assert status == 200, pressed
    await sandbox.until(
        lambda s: order_of(s, order["id"])["verification_status"] == "confirmed",
        "the order to be confirmed",
    )

    await text(sandbox, "whatsapp", "When will it ship?")
    thread = await sandbox.until(
        lambda s: thread_of(s, CUSTOMER, "whatsapp"), "the message in the merchant's thread"
    )
    assert lines(thread) == [("in", "When will it ship?")]
    await answer(sandbox, thread, "Tomorrow morning.")
    await sandbox.until(
        lambda s: phone_of(s, CUSTOMER)["threads"]["whatsapp"][-1]["body"] == "Tomorrow morning.",
        "the answer on the phone's WhatsApp",
    )
    assert thread_of(await sandbox.state(), CUSTOMER, "sms") is None


async def test_unanswered_threads_come_first(sandbox: Driver):
    await sandbox.use_twilio("sms")
    other = "+919876500078"
    await text(sandbox, "sms", "First question")
    first = await sandbox.until(lambda s: thread_of(s, CUSTOMER, "sms"), "the first thread")
    status, _ = await sandbox.post(
        f"/sandbox/api/phones/{other}/reply", {"channel": "sms", "text": "Second question"}
    )
    assert status == 200
    await sandbox.until(lambda s: thread_of(s, other, "sms"), "the second thread")
    await answer(sandbox, first, "An answer")
    state = await sandbox.state()
    assert [(t["phone"], t["status"]) for t in state["threads"]] == [
        (other, "unanswered"),
        (CUSTOMER, "answered"),
    ]


async def test_an_unknown_thread_is_404_and_a_bad_answer_422_naming_the_field(sandbox: Driver):
    for thread_id in ("999999", "abc", "9" * 30):
        status, problem = await sandbox.post(
            f"/sandbox/api/threads/{thread_id}/reply", {"text": "x"}
        )
        assert status == 404, problem
        assert problem["error"]["code"] == "not_found"
    await sandbox.use_twilio("sms")
    await text(sandbox, "sms", "Hello?")
    thread = await sandbox.until(lambda s: thread_of(s, CUSTOMER, "sms"), "the thread")
    for body, fields in [
        ({}, {"text"}),
        ({"text": "   "}, {"text"}),
        ({"text": "x" * 1601}, {"text"}),
        ({"text": "ok", "to": "+15550000000"}, {"to"}),
        ([], {"body"}),
    ]:
        status, problem = await sandbox.post(f"/sandbox/api/threads/{thread['id']}/reply", body)
        assert status == 422, (body, problem)
        assert {item["field"] for item in problem["error"]["fields"]} == fields, body


async def test_the_answer_goes_back_through_the_provider_the_customer_wrote_to(sandbox: Driver):
    # The demo shop's SMS are carried by Exotel; the customer texts its Twilio number.
    await text(sandbox, "sms", "Is it cash on delivery?")
    thread = await sandbox.until(
        lambda s: thread_of(s, CUSTOMER, "sms"), "the message in the merchant's thread"
    )
    sent = await answer(sandbox, thread, "Yes, pay when it arrives.")
    received = await sandbox.until(
        lambda s: [
            line for line in phone_of(s, CUSTOMER)["threads"]["sms"] if line["direction"] == "out"
        ],
        "the answer on the phone",
    )
    assert [(line["body"], line["number"]) for line in received] == [
        ("Yes, pay when it arrives.", TWILIO_NUMBER)
    ]
    status, read = await sandbox.admin("GET", f"threads/{thread['id']}")
    assert status == 200, read
    [out] = [m for m in read["messages"] if m["id"] == sent["id"]]
    assert out["status"] != "failed", out
