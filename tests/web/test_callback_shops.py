"""Issue 14, item 2: an Exotel callback acts only inside the shop its path token names, and a
keypad digit only on the open call it belongs to.

Shop A is another shop of the platform: its callback URLs are its merchant's to read. Its
token with shop B's call ids, message ids or verification reference changes nothing of B's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Activity, Call, Message, Shop
from tests.web.test_verification_journeys import (
    CUSTOMER,
    Journey,
    settings,  # noqa: F401 (the journeys' fixture)
)


async def other_shop(journey: Journey) -> int:
    now = journey.res.clock.now()
    async with journey.res.db.transaction() as session:
        shop = Shop(
            domain="shop-a.myshopify.com",
            name="Shop A",
            currency="INR",
            country="IN",
            timezone="Asia/Kolkata",
            language="en",
            status="installed",
            settings={},
            created_at=now,
            updated_at=now,
        )
        session.add(shop)
    return shop.id


async def snapshot(journey: Journey) -> dict[str, Any]:
    async with journey.res.db.sessions() as session:
        calls = [
            (c.id, c.provider_call_id, c.status, c.input_digits, c.ended_at)
            for c in await session.scalars(select(Call).order_by(Call.id))
        ]
        messages = [
            (m.id, m.status, m.error_code)
            for m in await session.scalars(select(Message).order_by(Message.id))
        ]
        activities = [a.kind for a in await session.scalars(select(Activity))]
    return {"calls": calls, "messages": messages, "activities": activities}


async def forged_keypad(journey: Journey, shop_a: int, sid: str, digits: str, ref: str) -> None:
    answer = await journey.exotel.passthru(
        journey.urls.exotel(shop_a, "passthru"),
        call_sid=sid,
        call_from=CUSTOMER,
        call_to="08047110000",
        direction="outbound-dial",
        digits=digits,
        custom_field=ref,
    )
    assert answer[0] == 200
    await journey.worker.run_until_idle()


@pytest.mark.parametrize("digits", ["1", "2"])
@pytest.mark.parametrize("known_sid", [True, False], ids=["b-call-sid", "b-reference-only"])
async def test_a_forged_keypad_with_another_shops_token_changes_nothing(
    journey: Journey, digits: str, known_sid: bool
):
    await journey.install()
    payload = await journey.order()
    shop_a = await other_shop(journey)
    sid = await journey.last_call_sid()
    ref = journey.exotel.placed_calls[sid]["CustomField"]
    if not known_sid:  # the worker died before saving Exotel's call id: found by reference
        async with journey.res.db.transaction() as session:
            call = await session.scalar(select(Call))
            call.provider_call_id = None
    before = await snapshot(journey)

    await forged_keypad(journey, shop_a, sid if known_sid else "forged-sid", digits, ref)
    for _ in range(4):  # the unknown call's retries (2, 4, 6 s) run out
        journey.res.clock.advance(timedelta(seconds=10))
        await journey.worker.run_until_idle()
    assert await snapshot(journey) == before
    assert await journey.status(payload) == "pending"
    assert journey.tags(payload) == []

    # B's own token, the same press: it counts.
    await journey.press(digits, sid)
    assert await journey.status(payload) == ("confirmed" if digits == "1" else "cancelled")


async def test_forged_call_and_sms_statuses_with_another_shops_token_change_nothing(
    journey: Journey,
):
    await journey.install({"ivr": {"retries": 0, "retry_interval_minutes": 0}})
    payload = await journey.order()
    shop_a = await other_shop(journey)
    sid = await journey.last_call_sid()
    forged = journey.urls.exotel(shop_a, "call-status")
    assert (await journey.exotel.call_status(forged, call_sid=sid, status="no-answer"))[0] == 200
    await journey.worker.run_until_idle()
    assert journey.exotel.sms == []  # B's call did not end: no fallback SMS
    await journey.call_ends("no-answer")
    [sms_sid] = list(journey.exotel.accepted_sms)
    before = await snapshot(journey)

    forged = journey.urls.exotel(shop_a, "sms-status")
    answer = await journey.exotel.sms_status(forged, sms_sid=sms_sid, status="failed")
    assert answer[0] == 200
    await journey.worker.run_until_idle()
    assert await snapshot(journey) == before
    assert await journey.status(payload) == "pending"


async def test_a_key_of_a_call_that_ended_decides_nothing(journey: Journey):
    await journey.install()
    payload = await journey.order()
    first = await journey.last_call_sid()
    await journey.call_ends("no-answer")  # the retry waits its interval
    await journey.press("2", first)
    assert await journey.status(payload) == "pending"
    await journey.advance(10)
    second = await journey.last_call_sid()
    assert second != first
    await journey.press("2", first)  # the first call's key, during the second call
    assert await journey.status(payload) == "pending"
    await journey.press("1", second)
    assert await journey.status(payload) == "confirmed"
