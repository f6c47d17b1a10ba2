"""The decision, pure: what one journey event of an order sends, on which channel, and what it
skips and why. The job (flows/notifications/job.py) gathers the facts and applies it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flows.conversations.consent import OPTED_IN, OPTED_OUT
from flows.notifications.events import taken
from flows.notifications.templates import render
from flows.shops.settings import Notifications, SmsNotice


@dataclass(frozen=True)
class Facts:
    """What the decision reads about the order and its customer."""

    held: frozenset[str]  # the journey events the order had
    phone: str
    consents: Mapping[str, str]  # channel -> opted_in | opted_out (absent: never asked)
    values: Mapping[str, str]  # token -> value
    zone: str


@dataclass(frozen=True)
class Send:
    channel: str
    body: str = ""
    template_id: str = ""
    params: tuple[str, ...] = ()
    # An SMS's DLT ids (Exotel in India).
    dlt_entity_id: str = ""
    dlt_template_id: str = ""


@dataclass(frozen=True)
class Skip:
    channel: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """`stale`: the event is behind the journey, nothing happens. `wait_until`: quiet hours,
    decide again then. Otherwise the event is taken, with its sends and skips."""

    stale: bool = False
    wait_until: datetime | None = None
    sends: tuple[Send, ...] = ()
    skips: tuple[Skip, ...] = field(default_factory=tuple)


def decide(event: str, facts: Facts, settings: Notifications, now: datetime) -> Decision:
    if not taken(event, set(facts.held)):
        return Decision(stale=True)
    notice = settings.notice(event)
    wanted = []
    if settings.sms_active and notice.sms.active:
        wanted.append(sms(settings, notice.sms, facts.values))
    if notice.whatsapp.active:
        params = tuple(facts.values.get(name, "") for name in notice.whatsapp.params)
        wanted.append(Send("whatsapp", template_id=notice.whatsapp.template_id, params=params))
    if not wanted:
        return Decision()
    if not notice.urgent:
        until = quiet_until(settings, facts.zone, now)
        if until is not None:
            return Decision(wait_until=until)
    sends, skips = [], []
    for send in wanted:
        reason = _no_consent(send.channel, facts)
        if not facts.phone:
            skips.append(Skip(send.channel, "the order has no usable phone"))
        elif reason:
            skips.append(Skip(send.channel, reason))
        else:
            sends.append(send)
    return Decision(sends=tuple(sends), skips=tuple(skips))


def fall_back(event: str, facts: Facts, settings: Notifications, decision: Decision) -> Decision:
    """`decision` without its WhatsApp send, whose template cannot be used: the event's SMS
    instead when the shop allows it (and the SMS is not going already), else nothing."""
    sends = tuple(send for send in decision.sends if send.channel != "whatsapp")
    notice = settings.notice(event)
    allowed = settings.sms_active and notice.whatsapp.fallback_to_sms
    if not allowed or any(send.channel == "sms" for send in sends):
        return Decision(sends=sends, skips=decision.skips)
    reason = _no_consent("sms", facts)
    if reason:
        return Decision(sends=sends, skips=(*decision.skips, Skip("sms", reason)))
    instead = sms(settings, notice.sms, facts.values)
    return Decision(sends=(*sends, instead), skips=decision.skips)


def sms(settings: Notifications, notice: SmsNotice, values: Mapping[str, str]) -> Send:
    """The SMS of `notice` filled with `values`, with the DLT ids Exotel passes on."""
    return Send(
        "sms",
        body=render(notice.text, values),
        dlt_entity_id=settings.dlt_entity_id,
        dlt_template_id=notice.dlt_template_id,
    )


def _no_consent(channel: str, facts: Facts) -> str:
    """Why `channel` may not carry a notification to the customer ("" when it may): seed 001
    sends only to customers who gave SMS consent; WhatsApp needs an opt-in on WhatsApp."""
    state = facts.consents.get(channel)
    if state == OPTED_IN:
        return ""
    name = "SMS" if channel == "sms" else "WhatsApp"
    if state == OPTED_OUT:
        return f"the customer opted out of {name}"
    return f"the customer has not consented to {name}"


def quiet_until(settings: Notifications, zone: str, now: datetime) -> datetime | None:
    """The end of the quiet hours `now` is in (shop's local time), or None outside them."""
    quiet = settings.quiet_hours
    if not quiet.active or quiet.start_hour == quiet.end_hour:
        return None
    local = now.astimezone(ZoneInfo(zone))
    hour = local.hour
    inside = (
        quiet.start_hour <= hour < quiet.end_hour
        if quiet.start_hour < quiet.end_hour
        else hour >= quiet.start_hour or hour < quiet.end_hour
    )
    if not inside:
        return None
    end = local.replace(hour=quiet.end_hour, minute=0, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(now.tzinfo)
