"""What a shop still lacks to be `installed`, and what the merchant must paste where.

`installed` means it can work: a Shopify token, a contact phone, and for every method of the
shop's verification cascade a channel whose account is connected and not refused, plus that
method's own fields (an Exotel call flow only when calls go through Exotel, a sender id only
where the provider sends from one). The setup list names, per connected account, the real
callback URLs under `server.public_url` that the provider's console must be given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flows.channels.accounts import OFFERS, PLATFORM, REJECTED, SHOP, public, selected
from flows.channels.callback_urls import CallbackUrls
from flows.notifications.events import EVENTS
from flows.shops.settings import FieldProblem, ShopSettings, methods
from storage.models import ProviderAccount, Shop

METHOD_CHANNEL = {
    "ivr": "voice",
    "whatsapp": "whatsapp",
    "otp": "sms",
    "sms_link": "sms",
    "missed_call": "sms",
}
_SENDER_SECTION = {
    "otp": "otp",
    "sms_link": "fallback.sms_link",
    "missed_call": "fallback.missed_call",
}
_METHOD_NAMES = {
    "ivr": "the IVR call",
    "whatsapp": "WhatsApp verification",
    "otp": "the OTP SMS",
    "sms_link": "the SMS with a link",
    "missed_call": "the SMS with a missed-call number",
}


def _providers_of(channel: str) -> str:
    return ", ".join(p.capitalize() for p, channels in OFFERS.items() if channel in channels)


def missing(
    shop: Shop, settings: ShopSettings, accounts: Sequence[ProviderAccount], has_token: bool
) -> list[FieldProblem]:
    """Every problem that keeps the shop `partially_installed`, by field, in a stable order."""
    problems: dict[str, str] = {}
    if not has_token:
        problems["shopify.access_token"] = (
            "connect the shop to Shopify (OAuth install or a custom app's access token)"
        )
    if not settings.contact_phone:
        problems["contact_phone"] = "the phone number customers can call about their order"
    for method in methods(settings):
        channel = METHOD_CHANNEL[method]
        account = selected(shop, accounts, channel)
        if account is None:
            problems.setdefault(
                f"channels.{channel}",
                f"{_METHOD_NAMES[method]} needs a {channel} account: connect one "
                f"({_providers_of(channel)})",
            )
            continue
        if account.status == REJECTED:
            problems.setdefault(
                f"accounts.{account.id}",
                f"the {account.provider} account was refused by {account.provider}: "
                f"{account.status_reason}; connect it again with working credentials",
            )
        caller_id = settings.ivr.caller_id
        if method == "ivr" and caller_id and account.owner == SHOP:
            voice = [n["number"] for n in account.details.get("numbers", []) if n.get("voice")]
            if not any(_same_number(caller_id, number) for number in voice):
                problems["ivr.caller_id"] = (
                    f"not a voice number of the {account.provider} account "
                    f"({', '.join(voice)}); leave it empty to use the first"
                )
        if method == "ivr" and account.provider == "exotel" and not settings.ivr.flow_id:
            problems["ivr.flow_id"] = (
                "calls go through Exotel: the id of the call flow (app) that holds the "
                "verification's Passthru applet"
            )
        section = _SENDER_SECTION.get(method)
        if section and account.provider == "exotel" and not _sender(settings, section):
            problems[f"{section}.sender_id"] = "Exotel sends SMS from a sender id (DLT header)"
        if method == "missed_call":
            if not settings.fallback.missed_call.exophone:
                problems["fallback.missed_call.exophone"] = (
                    "the number customers give a missed call"
                )
            if not any(a.provider == "exotel" for a in accounts):
                problems["channels.missed_call"] = (
                    "missed calls are received through Exotel: connect an Exotel account"
                )
    return [FieldProblem(field, message) for field, message in problems.items()]


def _same_number(a: str, b: str) -> bool:
    """Whether two spellings name one number (080 4711 2345, +91 80 4711 2345)."""
    digits = ["".join(c for c in n if c.isdigit()).lstrip("0")[-10:] for n in (a, b)]
    return digits[0] == digits[1]


def _sender(settings: ShopSettings, section: str) -> str:
    node: Any = settings
    for part in section.split("."):
        node = getattr(node, part)
    return node.sender_id


def setup_list(
    shop: Shop,
    settings: ShopSettings,
    accounts: Sequence[ProviderAccount],
    urls: CallbackUrls,
    problems: Sequence[FieldProblem],
    subscriptions: Mapping[int, datetime],
    shipments_url: str,
) -> dict[str, Any]:
    """What to paste where for each connected account and for the shop itself, the channel
    each account carries, and what is still missing. `subscriptions`: when each RingCentral
    account's webhook subscription expires; `shipments_url`: the shop's shipment webhook."""
    channels = {}
    for channel in ("voice", "sms", "whatsapp"):
        account = selected(shop, accounts, channel)
        channels[channel] = (
            None
            if account is None
            else {"account_id": account.id, "provider": account.provider, "owner": account.owner}
        )
    return {
        "status": shop.status,
        "channels": channels,
        "accounts": [
            public(account) | {"paste": _paste(shop, settings, account, urls, subscriptions)}
            for account in accounts
        ],
        "paste": [
            {
                "where": "Your carrier or fulfilment platform (Shiprocket, Delhivery, ...): its "
                "webhook or tracking-status callback URL (HTTP POST, JSON body: order, status, "
                "awb, carrier, reason, tracking_url); shipment events drive the customer's "
                "packed, shipped, out-for-delivery, delivered and failed-delivery messages",
                "value": shipments_url,
            }
        ],
        "missing": [{"field": p.field, "message": p.message} for p in problems],
        "warnings": [
            {"field": p.field, "message": p.message}
            for p in notification_warnings(shop, settings, accounts)
        ],
    }


def notification_warnings(
    shop: Shop, settings: ShopSettings, accounts: Sequence[ProviderAccount]
) -> list[FieldProblem]:
    """What keeps active SMS notifications from reaching anyone, though the shop works: on
    Exotel a sender id, and in India (DLT) the entity id and each active text's template id,
    without which the operators drop the SMS."""
    notifications = settings.notifications
    account = selected(shop, accounts, "sms")
    if not notifications.sms_active or account is None or account.provider != "exotel":
        return []
    texts = [
        (f"notifications.events.{event}.sms", f"the {event.replace('_', ' ')} SMS", notice.sms)
        for event in EVENTS
        if (notice := notifications.notice(event)).sms.active
    ]
    texts += [
        (f"notifications.merchant.{alert}", f"your {alert.replace('_', ' ')} SMS", notice)
        for alert in ("new_order", "callback_requested")
        if (notice := notifications.merchant_sms(alert)) is not None
    ]
    if not texts:
        return []
    found = []
    if not notifications.sms_sender_id:
        found.append(
            FieldProblem(
                "notifications.sms_sender_id",
                "SMS go through Exotel, which sends from a sender id (DLT header)",
            )
        )
    if shop.country != "IN":
        return found
    if not notifications.dlt_entity_id:
        found.append(
            FieldProblem(
                "notifications.dlt_entity_id",
                "SMS go through Exotel in India: the DLT entity id of your business",
            )
        )
    found += [
        FieldProblem(
            f"{path}.dlt_template_id",
            f"{name} is active and SMS go through Exotel in India: its DLT template id, "
            "without which operators drop it",
        )
        for path, name, notice in texts
        if not notice.dlt_template_id
    ]
    return found


def _paste(
    shop: Shop,
    settings: ShopSettings,
    account: ProviderAccount,
    urls: CallbackUrls,
    subscriptions: Mapping[int, datetime],
) -> list[dict[str, str]]:
    if account.provider == "exotel":
        passthru = urls.exotel(shop.id, "passthru")
        flow = settings.ivr.flow_id or "(set ivr.flow_id)"
        exophone = settings.fallback.missed_call.exophone or "(set fallback.missed_call.exophone)"
        return [
            {
                "where": f"Exotel call flow {flow}: the Passthru applet after the Gather "
                "(keypad input of the verification call)",
                "value": passthru,
            },
            {
                "where": f"Exotel flow of the missed-call number {exophone}: its Passthru "
                "applet (missed calls)",
                "value": passthru,
            },
            *_exotel_sms(account, urls.exotel(shop.id, "sms")),
        ]
    if account.owner == PLATFORM:
        return []  # the platform's operator configured its callbacks once for every shop
    if account.provider == "gupshup":
        return [
            {
                "where": f"Gupshup app {account.details.get('app_name', '')}: Webhooks, "
                "callback URL (inbound messages and message events)",
                "value": urls.gupshup(shop.id),
            }
        ]
    if account.provider == "twilio":
        numbers = [n["number"] for n in account.details.get("numbers", []) if n.get("sms")]
        whatsapp = account.details.get("whatsapp_number")
        items = [
            {
                "where": f"Twilio phone number {number}: Messaging, 'A message comes in' "
                "webhook (HTTP POST)",
                "value": urls.twilio("messages"),
            }
            for number in numbers
        ]
        if whatsapp:
            items.append(
                {
                    "where": f"Twilio WhatsApp sender {whatsapp}: webhook URL for incoming "
                    "messages (HTTP POST)",
                    "value": urls.twilio("messages"),
                }
            )
        return items
    expires = subscriptions.get(account.id)
    state = (
        f"live until {expires.isoformat(timespec='minutes')}, renewed by ordertalk"
        if expires
        else "not created yet: ordertalk creates it right after connecting; if it stays so, "
        "give the RingCentral app the WebhookSubscriptions permission"
    )
    return [
        {
            "where": f"RingCentral: nothing to paste; the inbound SMS subscription is {state}",
            "value": urls.ringcentral(account.id),
        }
    ]


def _exotel_sms(account: ProviderAccount, url: str) -> list[dict[str, str]]:
    """Where customers' SMS replies are passed on to us: each number of the account that
    takes SMS (a reply to a DLT sender id goes nowhere), or the account's numbers at large."""
    numbers = [n["number"] for n in account.details.get("numbers", []) if n.get("sms")]
    where = (
        "Exotel Dashboard, Settings > SMS Settings > Inbound SMS: the inbound webhook URL "
        "(HTTP POST) for {}; with an SMS app instead, its 'Send a Reply' applet's URL "
        "(customers' SMS replies)"
    )
    return [
        {"where": where.format(f"the number {number}"), "value": url}
        for number in numbers or ["the account's SMS numbers"]
    ]
