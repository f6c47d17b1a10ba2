"""What each linked chat of a shop is told about one event, as a pure function.

An event is a `Fact` read from a committed row (an activity on the timeline, a dead job, a
customer's message filed in a thread) or the daily summary falling due. `decide` renders it
once and addresses it to every chat that takes the shop's alerts, each push keyed by the
fact and the chat, so a fact read twice is still pushed once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flows.shops.settings import AlertSettings

NEW_ORDER = "new_order"
CALLBACK = "callback_requested"
DEAD_JOB = "dead_job"
REJECTED = "account_rejected"
CUSTOMER_MESSAGE = "customer_message"
TEMPLATE_UNUSABLE = "notification_fallback"
SUMMARY = "daily_summary"

# What a push's button asks the bot to do, with the row it names.
CALL, REPLY = "call", "reply"

_CHANNELS = {"sms": "SMS", "whatsapp": "WhatsApp"}
_ERROR_SHOWN = 300


@dataclass(frozen=True)
class Fact:
    kind: str
    shop_id: int
    ref: str  # unique per source row ("activity:17", "job:9", "summary:3:2026-12-07")
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    name: str  # CALL (ref: the callback's activity) | REPLY (ref: the thread)
    ref: int
    label: str


@dataclass(frozen=True)
class Push:
    chat_id: int
    text: str
    key: str
    action: Action | None = None


def decide(fact: Fact, chats: Sequence[int], settings: AlertSettings) -> list[Push]:
    """The pushes of `fact` to the shop's `chats` (those taking alerts) under its settings."""
    if fact.kind == NEW_ORDER and not settings.new_orders:
        return []
    if fact.kind == SUMMARY and not settings.daily_summary:
        return []
    text, action = render(fact)
    return [Push(chat, text, f"alert:{fact.ref}:{chat}", action) for chat in chats]


def summary_day(now: datetime, zone: str, settings: AlertSettings) -> str | None:
    """The shop's local date when its daily summary falls due in this hour, else None."""
    local = now.astimezone(ZoneInfo(zone))
    if not settings.daily_summary or local.hour != settings.summary_hour:
        return None
    return local.date().isoformat()


def render(fact: Fact) -> tuple[str, Action | None]:
    d = fact.detail
    if fact.kind == NEW_ORDER:
        pay = " (cash on delivery)" if d.get("payment_method") == "cod" else ""
        return f"New order {d['order']}: {d['amount']} {d['currency']}{pay}, {d['phone']}.", None
    if fact.kind == CALLBACK:
        via = f" (by {d['mode']})" if d.get("mode") else ""
        text = f"Callback requested for order {d['order']} by {d['phone']}{via}."
        return text, Action(CALL, int(d["activity_id"]), f"Call {d['phone']}")
    if fact.kind == DEAD_JOB:
        error = str(d.get("error", ""))[:_ERROR_SHOWN]
        return (
            f"Work that failed for good: {d['job_kind']} (job {d['job_id']}) after "
            f"{d['attempts']} attempts.\n{error}",
            None,
        )
    if fact.kind == REJECTED:
        return (
            f"Your {d['owner']} {d['provider']} account was refused by {d['provider']}: "
            f"{d['reason']}\nIts work waits until you fix the credentials (/status).",
            None,
        )
    if fact.kind == TEMPLATE_UNUSABLE and not d.get("order"):  # the hourly re-check's
        goes = "go by SMS instead" if d.get("fallback") else "are not sent"
        return (
            f"Your WhatsApp template {d['template_id']} cannot be used ({d['reason']}): its "
            f"notifications ({d['event']}) {goes} until it is approved again. Fix the "
            "template with your provider, or turn the WhatsApp notification off.",
            None,
        )
    if fact.kind == TEMPLATE_UNUSABLE:
        instead = "it went by SMS instead" if d.get("fallback") else "it was not sent"
        return (
            f"Your WhatsApp template {d['template_id']} cannot be used ({d['reason']}): the "
            f"{d['event']} notification for order {d['order']} was not sent on WhatsApp; "
            f"{instead}. Fix the template with your provider, or turn the WhatsApp "
            "notification off.",
            None,
        )
    if fact.kind == CUSTOMER_MESSAGE:
        channel = _CHANNELS.get(str(d["channel"]), str(d["channel"]))
        text = (
            f"Message from {d['phone']} on {channel}:\n\n{d['body']}\n\n"
            "Reply to this message (or press Reply) to answer on the same channel."
        )
        return text, Action(REPLY, int(d["thread_id"]), "Reply")
    if fact.kind == SUMMARY:
        totals = d["totals"]
        return (
            f"{d['shop']}: the last 24 hours up to {d['until']}\n"
            f"Orders: {totals['total']}\nConfirmed: {totals['confirmed']}\n"
            f"Cancelled: {totals['cancelled']}\n"
            f"Callback requested: {totals['callback_requested']}\n"
            f"Pending: {totals['pending']}",
            None,
        )
    raise ValueError(f"no alert for {fact.kind!r}")
