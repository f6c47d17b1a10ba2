"""Template governance: the hourly re-check of a shop's own Gupshup templates (fake Gupshup,
injected clock). A template paused at Gupshup is recorded once as a shop-wide fallback, which
the bot's alert scan pushes; its notifications go by SMS; APPROVED again is recorded and the
template is used again. One check per shop and hour, however often it is started."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from flows.alerts.decide import decide
from flows.alerts.scan import _facts
from flows.notifications.template_recheck import RECHECK_JOB, recheck_job
from flows.shops.settings import AlertSettings
from main import schedule_periodic
from storage.models import Job
from tests.web.notifications.helpers import NOTIFYING, fulfillment, paid_order, texts, timeline
from tests.web.notifications.helpers import webhook as shopify_webhook
from tests.web.notifications.test_whatsapp import TEXT, enable, opted_in_on_whatsapp, own_gupshup

HOUR = timedelta(hours=1)


async def next_hour(journey) -> None:
    journey.res.clock.advance(HOUR)
    await journey.worker.run_until_idle()
    await journey.settle()


async def shop_wide(journey, kind: str) -> list[dict]:
    return [d for d in await timeline(journey, kind) if d.get("source") == "recheck"]


async def queued_rechecks(journey) -> int:
    async with journey.res.db.sessions() as session:
        return await session.scalar(
            select(func.count()).where(Job.kind == RECHECK_JOB, Job.status == "queued")
        )


async def test_a_paused_template_is_alerted_once_falls_back_and_is_used_again(journey, gupshup):
    await journey.install(NOTIFYING)
    await own_gupshup(journey, gupshup)
    template = gupshup.add_template("tpl-ok", "order_shipped", "APPROVED", TEXT)
    assert (await enable(journey, "tpl-ok"))[0] == 200
    await opted_in_on_whatsapp(journey)
    await next_hour(journey)
    assert await shop_wide(journey, "notification_fallback") == []

    template["status"] = "PAUSED"
    await next_hour(journey)
    await next_hour(journey)  # still paused: the merchant was told already
    (fallback,) = await shop_wide(journey, "notification_fallback")
    assert fallback["template_id"] == "tpl-ok" and fallback["status"] == "PAUSED"
    assert fallback["event"] == "shipped" and fallback["fallback"] == "sms"

    since = journey.res.clock.now() - 3 * HOUR
    async with journey.res.db.sessions() as session:
        facts = await _facts(session, [journey.shop_id], since, journey.res.clock.now())
    (alert,) = [f for f in facts if f.kind == "notification_fallback"]
    (push,) = decide(alert, [4242], AlertSettings())
    assert push.text.startswith("Your WhatsApp template tpl-ok cannot be used (")
    assert "its notifications (shipped) go by SMS instead" in push.text

    journey.res.clock.advance(timedelta(minutes=10))  # past the send job's remembered status
    order = await paid_order(journey)
    await shopify_webhook(journey, "fulfillments/create", fulfillment(order))
    assert [m for m in gupshup.messages if "template" in m] == []
    assert any("has been fulfilled" in body for body in texts(journey))

    template["status"] = "APPROVED"
    await next_hour(journey)
    (approved,) = await shop_wide(journey, "notification_template_approved")
    assert approved["template_id"] == "tpl-ok" and approved["status"] == "APPROVED"
    second = await paid_order(journey)
    await shopify_webhook(journey, "fulfillments/create", fulfillment(second))
    (sent,) = [m for m in gupshup.messages if "template" in m]
    assert sent["template"]["id"] == "tpl-ok"


async def test_one_check_per_shop_and_hour_however_often_started(journey, gupshup):
    await journey.install(NOTIFYING)
    await own_gupshup(journey, gupshup)  # connecting the account starts the checks
    await journey.worker.run_until_idle()
    assert await queued_rechecks(journey) == 1
    await schedule_periodic(journey.res)  # a second process starting
    await schedule_periodic(journey.res)
    now = journey.res.clock.now()
    async with journey.res.db.transaction() as session:
        await journey.res.queue.enqueue(session, recheck_job(journey.shop_id, now))
    await journey.worker.run_until_idle()
    assert await queued_rechecks(journey) == 1


async def test_shops_on_the_platforms_account_are_not_rechecked(journey, gupshup):
    await journey.install(NOTIFYING)  # WhatsApp by the platform's Gupshup account
    await schedule_periodic(journey.res)
    await journey.worker.run_until_idle()
    assert await queued_rechecks(journey) == 0
