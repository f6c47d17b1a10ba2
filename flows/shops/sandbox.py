"""The sandbox's demo shop and what the sandbox page reads from our records.

The demo shop is created on the first start through the same path as `main.py shop add
--token` (the fake Shopify's token), with sample settings that point its calls and SMS at the
fake Exotel, and its own fake Twilio connected beside it; later starts keep it (and any
settings or channel choices changed since), connect what it lacks of the demo's accounts, and
only issue a new admin API key and bot link code, which the sandbox holds in memory for its
page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.alerts.scan import SCAN_JOB
from flows.channels.account_desk import AccountDesk
from flows.channels.accounts import CHECK_JOB
from flows.channels.ringcentral_subscription import SUBSCRIPTION_JOB
from flows.conversations.threads import UNANSWERED, ThreadView
from flows.notifications import job as notify
from flows.notifications.template_recheck import RECHECK_JOB
from flows.shops import config as shop_config
from flows.shops import onboarding
from flows.shops.reconcile import RECONCILE_JOB
from providers.sandbox import shop as demo
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import Deferred, JobQueue
from storage.models import Activity, Consent, Job, Message, Order, Shop, Thread
from storage.shops import issue_secrets, shop_by_domain

# Periodic upkeep: "to the next job" skips these to reach the next step of a conversation.
HOUSEKEEPING = frozenset({RECONCILE_JOB, SUBSCRIPTION_JOB, CHECK_JOB, RECHECK_JOB, SCAN_JOB})


def demo_accounts(
    *, exotel_sid: str, exotel_key: str, exotel_token: str, twilio_sid: str, twilio_token: str
) -> list[dict[str, Any]]:
    """The demo shop's accounts, connected as a merchant would: its own (simulated) Exotel,
    first, so that it carries calls and SMS until the merchant picks its own (simulated)
    Twilio instead, and the platform's Gupshup for WhatsApp."""
    exotel = {
        "provider": "exotel",
        "subdomain": "api.in.exotel.com",
        "account_sid": exotel_sid,
        "api_key": exotel_key,
        "api_token": exotel_token,
        "numbers": [demo.CALLER_ID, demo.EXOPHONE],
    }
    twilio = {
        "provider": "twilio",
        "account_sid": twilio_sid,
        "auth_token": twilio_token,
        "numbers": [demo.TWILIO_NUMBER],
    }
    return [exotel, {"provider": "gupshup", "platform": True}, twilio]


def _kind(account: dict[str, Any]) -> tuple[str, str]:
    return account["provider"], "platform" if account.get("platform") else "shop"


def demo_settings() -> dict[str, Any]:
    """The demo shop's settings: an IVR call through the shop's Exotel, one retry after 10
    minutes between 9:00 and 21:00 India time, then an SMS with the confirm/cancel link (and,
    when the merchant picks OTP, an OTP SMS with a link to the page that takes the code);
    order notifications by SMS from its sender id once the merchant turns them on."""
    dlt = {"sender_id": demo.SENDER_ID, "dlt_entity_id": "1101000000000001"}
    return {
        "verification": {"for_orders": "cod", "type": "ivr"},
        # No caller id: calls come from the first voice number of whichever account carries
        # them (Exotel's CALLER_ID, or the Twilio number once the merchant picks Twilio).
        "ivr": {
            "flow_id": demo.FLOW_ID,
            "retries": 1,
            "retry_interval_minutes": 10,
            "timezone": "Asia/Kolkata",
            "window_start_hour": 9,
            "window_end_hour": 21,
            "cancel_in_shopify": True,
        },
        "fallback": {
            "mode": "sms_link",
            "sms_link": dlt | {"dlt_template_id": "1107000000000002", "cancel_in_shopify": True},
            "missed_call": dlt
            | {
                "dlt_template_id": "1107000000000003",
                "confirmation_dlt_template_id": "1107000000000004",
                "exophone": demo.EXOPHONE,
            },
        },
        # The link opens the page with a code box: the sandbox has no checkout to enter it in.
        "otp": dlt
        | {
            "dlt_template_id": "1107000000000005",
            "template": "%otp% is the code to verify your order %ordername% of %orderamount%. "
            "Enter it at %link%",
        },
        # Order notifications stay off until the merchant ticks SMS active (seed 004); they
        # then go from the shop's DLT header, like its other SMS.
        "notifications": {"sms_sender_id": demo.SENDER_ID},
        "contact_phone": demo.SHOP_PHONE,
    }


@dataclass(frozen=True)
class DemoShop:
    shop_id: int
    domain: str
    api_key: str  # issued at this start; never stored in clear
    bot_link_code: str  # the owner's one-time code for the bot, issued with the key


async def seed_demo_shop(
    db: Database,
    queue: JobQueue,
    box: SecretBox,
    clock: Clock,
    accounts: AccountDesk,
    settings: dict[str, Any],
    connections: list[dict[str, Any]],
) -> DemoShop:
    """Create the demo shop with `settings` and its accounts (`connections`) unless it
    exists (what a first start that stopped half-way, or an older sandbox, left out is done
    now); issue it a new API key."""
    async with db.sessions() as session:
        shop = await shop_by_domain(session, demo.SHOP_DOMAIN)
    if shop is None:
        # The simulated Shopify signs the demo's webhooks as the platform's app.
        access = onboarding.ShopifyAccess(demo.SHOP_TOKEN, custom_app=False)
        connected = await onboarding.connect_with_token(
            db, queue, box, clock, demo.SHOP_DOMAIN, access
        )
        shop_id = connected.shop_id
    else:
        shop_id = shop.id
    if shop is None or not shop.settings:
        await shop_config.save(db, box, clock, shop_id, settings)
    listed = (await accounts.listing(shop_id))["accounts"]
    present = {(account["provider"], account["owner"]) for account in listed}
    for connection in connections:
        if _kind(connection) not in present:
            await accounts.connect(shop_id, connection)
    async with db.transaction() as session:
        stored = await session.get(Shop, shop_id, with_for_update=True)
        assert stored is not None
        issued = issue_secrets(stored, clock.now())
    return DemoShop(shop_id, demo.SHOP_DOMAIN, issued.api_key, issued.bot_link_code)


@dataclass(frozen=True)
class AppFacts:
    """What the sandbox page shows from our own records."""

    shop_name: str
    verification_statuses: dict[str, str]  # by Shopify order id
    next_job_at: datetime | None
    # By Shopify order id, oldest first: the journey events our app took or found stale,
    # and each notification sent, skipped (with its reason), fallen back or waiting.
    notifications: dict[str, list[dict[str, Any]]]


async def app_facts(
    db: Database, shop_id: int, shopify_order_ids: Iterable[str], now: datetime
) -> AppFacts:
    ids = list(shopify_order_ids)
    async with db.sessions() as session:
        name = await session.scalar(select(Shop.name).where(Shop.id == shop_id))
        rows = (
            await session.execute(
                select(Order.shopify_order_id, Order.verification_status).where(
                    Order.shop_id == shop_id, Order.shopify_order_id.in_(ids)
                )
            )
            if ids
            else []
        )
        statuses = {order_id: status for order_id, status in rows}
        next_job = await next_job_at(session, now)
        notifications = await _notifications(session, shop_id, ids) if ids else {}
    return AppFacts(name or "", statuses, next_job, notifications)


_NOTIFICATION_LINES = {
    notify.EVENT_KIND: "event",
    notify.STALE_KIND: "stale",
    notify.SKIPPED_KIND: "skipped",
    notify.FALLBACK_KIND: "fallback",
}


async def _notifications(
    session: AsyncSession, shop_id: int, shopify_order_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    found = await session.execute(
        select(Order.id, Order.shopify_order_id, Order.name).where(
            Order.shop_id == shop_id, Order.shopify_order_id.in_(shopify_order_ids)
        )
    )
    rows = found.all()
    orders: dict[int, str] = {order_id: shopify_id for order_id, shopify_id, _name in rows}
    if not orders:
        return {}
    # A journey event names its order by Shopify id, or by name (the shipment webhook's).
    refs = {ref: shopify_id for _id, shopify_id, name in rows for ref in (shopify_id, name)}
    refs |= {name.removeprefix("#"): shopify_id for _id, shopify_id, name in rows}
    # (when, 0 for a timeline line / 1 for a message, id): a message comes after the line of
    # its event, written in the same transaction.
    lines: dict[str, list[tuple[tuple[datetime, int, int], dict[str, Any]]]] = {}
    activities = await session.scalars(
        select(Activity).where(
            Activity.order_id.in_(list(orders)), Activity.kind.in_(list(_NOTIFICATION_LINES))
        )
    )
    for activity in activities:
        detail = activity.detail or {}
        line = {
            "kind": _NOTIFICATION_LINES[activity.kind],
            "event": detail.get("event", ""),
            "channel": detail.get("channel", ""),
            "reason": detail.get("reason", ""),
            "at": activity.created_at.isoformat(),
        }
        key = (activity.created_at, 0, activity.id)
        lines.setdefault(orders[activity.order_id], []).append((key, line))
    messages = await session.scalars(
        select(Message).where(
            Message.order_id.in_(list(orders)), Message.idempotency_key.like("notify:%")
        )
    )
    for message in messages:
        line = {
            "kind": "message",
            "event": notify.key_event(message.idempotency_key),
            "channel": message.channel,
            "status": message.status,
            "reason": message.error or "",
            "at": message.created_at.isoformat(),
        }
        key = (message.created_at, 1, message.id)
        lines.setdefault(orders[message.order_id], []).append((key, line))
    # A notification put off (quiet hours) waits as its job, due when they end; one line per
    # event, however many webhooks announced it.
    waiting = await session.scalars(
        select(Job)
        .where(
            Job.shop_id == shop_id,
            Job.kind == notify.NOTIFY_JOB,
            Job.status == "queued",
            Job.last_error != "",
        )
        .order_by(Job.due_at, Job.id)
    )
    shown: set[tuple[str, str]] = set()
    for job in waiting:
        event = job.payload.get("event") or {}
        order = refs.get(str(event.get("order", "")))
        if order is None or (order, event.get("kind", "")) in shown:
            continue
        shown.add((order, event.get("kind", "")))
        line = {
            "kind": "waiting",
            "event": event.get("kind", ""),
            "channel": "",
            "reason": job.last_error.removeprefix(f"{Deferred.__name__}: "),
            "at": job.due_at.isoformat(),
        }
        lines.setdefault(order, []).append(((job.due_at, 2, job.id), line))
    return {
        order: [line for _key, line in sorted(items, key=lambda item: item[0])]
        for order, items in lines.items()
    }


@dataclass(frozen=True)
class PhoneFacts:
    """What our app holds of each phone: its consent per channel ({"sms": "opted_out"}) and
    what it did not send it, oldest first: the messages the send gate kept from it and the
    order notifications skipped (no consent, no usable phone)."""

    consents: dict[str, dict[str, str]]
    suppressed: dict[str, list[dict[str, Any]]]


# The latest messages not sent (suppressed, skipped) the sandbox page lists.
SUPPRESSED_SHOWN = 100


async def phone_facts(db: Database, shop_id: int) -> PhoneFacts:
    async with db.sessions() as session:
        consents: dict[str, dict[str, str]] = {}
        for row in await session.scalars(select(Consent).where(Consent.shop_id == shop_id)):
            consents.setdefault(row.phone, {})[row.channel] = row.state
        rows = await session.scalars(
            select(Message)
            .where(Message.shop_id == shop_id, Message.status == "suppressed")
            .order_by(Message.id.desc())
            .limit(SUPPRESSED_SHOWN)
        )
        kept: list[tuple[datetime, str, dict[str, Any]]] = [
            (
                message.updated_at,
                message.to_phone,
                {
                    "channel": message.channel,
                    "body": message.body,
                    "at": message.updated_at.isoformat(),
                    "reason": message.error,
                },
            )
            for message in rows
        ]
        skips = await session.execute(
            select(Activity, Order.phone, Order.name)
            .join(Order, Order.id == Activity.order_id)
            .where(Activity.shop_id == shop_id, Activity.kind == notify.SKIPPED_KIND)
            .order_by(Activity.id.desc())
            .limit(SUPPRESSED_SHOWN)
        )
        for activity, phone, name in skips:
            event = str((activity.detail or {}).get("event", "")).replace("_", " ")
            kept.append(
                (
                    activity.created_at,
                    phone,
                    {
                        "channel": (activity.detail or {}).get("channel", ""),
                        "body": f"The {event} notification of order {name}",
                        "at": activity.created_at.isoformat(),
                        "reason": (activity.detail or {}).get("reason", ""),
                    },
                )
            )
    suppressed: dict[str, list[dict[str, Any]]] = {}
    for _at, phone, line in sorted(kept, key=lambda item: item[0])[-SUPPRESSED_SHOWN:]:
        suppressed.setdefault(phone, []).append(line)
    return PhoneFacts(consents, suppressed)


# The threads the sandbox page shows: the unanswered ones first, then the latest active.
THREADS_SHOWN = 50


async def merchant_threads(db: Database, shop_id: int) -> list[ThreadView]:
    """The shop's threads as its merchant works through them, unanswered first, then by
    latest activity; each with its messages both ways, oldest first."""
    async with db.sessions() as session:
        found = list(
            await session.scalars(
                select(Thread)
                .where(Thread.shop_id == shop_id)
                .order_by(
                    case((Thread.status == UNANSWERED, 0), else_=1),
                    Thread.updated_at.desc(),
                    Thread.id.desc(),
                )
                .limit(THREADS_SHOWN)
            )
        )
        messages: dict[int | None, list[Message]] = {thread.id: [] for thread in found}
        if found:
            rows = await session.scalars(
                select(Message)
                .where(Message.shop_id == shop_id, Message.thread_id.in_([t.id for t in found]))
                .order_by(Message.created_at, Message.id)
            )
            for message in rows:
                messages[message.thread_id].append(message)
    return [ThreadView(thread, messages[thread.id]) for thread in found]


async def next_job_at(session: AsyncSession, now: datetime) -> datetime | None:
    """When the next queued job falls due after `now`, housekeeping left aside."""
    return await session.scalar(
        select(func.min(Job.due_at)).where(
            Job.status == "queued", Job.due_at > now, Job.kind.not_in(HOUSEKEEPING)
        )
    )


async def work_in_flight(db: Database, now: datetime) -> bool:
    """Whether a job is due or running now, housekeeping left aside: moving the clock on then
    would skip what that job is about to do."""
    async with db.sessions() as session:
        found = await session.scalar(
            select(Job.id)
            .where(
                Job.kind.not_in(HOUSEKEEPING),
                ((Job.status == "queued") & (Job.due_at <= now)) | (Job.status == "running"),
            )
            .limit(1)
        )
    return found is not None


async def latest_moment(db: Database) -> datetime | None:
    """The latest moment our records hold: the sandbox clock never goes back behind it."""
    async with db.sessions() as session:
        return await session.scalar(select(func.max(Activity.created_at)))


async def last_order_number(db: Database, shop_id: int) -> int:
    """The shop's highest order number (0 if none): new orders are numbered after it."""
    async with db.sessions() as session:
        number = await session.scalar(
            select(func.max(Order.number)).where(Order.shop_id == shop_id)
        )
    return number or 0
