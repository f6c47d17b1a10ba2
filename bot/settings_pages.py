"""The pages of the bot's `/settings` conversation, in seed 000's order (contact, verification,
provider accounts and the channel each carries, IVR call, fallback, OTP), then the customers'
notifications (issue 16): which values of the settings document each page asks for, how each
is asked (buttons for a finite choice, typed text otherwise), and the fields of each
provider's account. Reading a typed answer here only turns text into the document's JSON
types; whether a value is acceptable is the settings model's rule alone."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows.notifications.events import EVENTS
from flows.notifications.templates import TOKENS, spelt

YES_NO = (("Yes", True), ("No", False))
ON_OFF = (("On", True), ("Off", False))
ENCODINGS = (("Plain (GSM-7)", "plain"), ("Unicode", "unicode"))
EMPTY = "-"  # typed for "no value" where a field may stay empty
_INTEGER = re.compile(r"[+-]?\d{1,9}")


@dataclass(frozen=True)
class Ask:
    """One value asked for: `path` in the document (or the account's field name)."""

    path: str
    label: str
    choices: tuple[tuple[str, Any], ...] = ()
    kind: type = str
    hint: str = ""
    secret: bool = False
    preview: bool = False  # an SMS template: its preview follows an accepted answer

    def read(self, text: str) -> Any:
        """The typed answer as the document holds it; what is not an integer is left as
        text for the model to refuse ("must be an integer")."""
        text = text.strip()
        if self.kind is int:
            return int(text) if _INTEGER.fullmatch(text) else text
        if self.kind is list:
            return [part.strip() for part in text.split(",") if part.strip()]
        return "" if text == EMPTY else text

    def shown(self, value: Any) -> str:
        """The value as the page shows it."""
        for label, choice in self.choices:
            if choice == value:
                return label
        if isinstance(value, list):
            return ", ".join(str(item) for item in value) or "(none)"
        return "(empty)" if value in ("", None) else str(value)


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    asks: Callable[[dict[str, Any]], tuple[Ask, ...]]
    # The provider accounts page: accounts are connected, not typed into the document.
    accounts: bool = False
    # The channels page: which connected account carries each channel, and removing one.
    channels: bool = False
    # The WhatsApp notifications page: each event enabled with its template, checked live.
    whatsapp: bool = False


def get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def put(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the document with `path` set to `value`."""
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return changed


def _tags(section: str, *, callback: bool = True, cancel: bool = True) -> tuple[Ask, ...]:
    optional = f"or {EMPTY} for none"
    asks = [Ask(f"{section}.confirm_tag", "Tag on confirmation")]
    if cancel:
        asks.append(Ask(f"{section}.cancel_tag", "Tag on cancellation", hint=optional))
    if callback:
        asks.append(Ask(f"{section}.callback_tag", "Tag on callback request", hint=optional))
    return tuple(asks)


def _retries(section: str, longest: int) -> tuple[Ask, ...]:
    return (
        Ask(f"{section}.retries", "Number of retries", kind=int, hint="0 to 5"),
        Ask(
            f"{section}.retry_interval_minutes",
            "Minutes between retries",
            kind=int,
            hint=f"10 to {longest}; 0 when there are no retries",
        ),
    )


def _sms(section: str) -> tuple[Ask, ...]:
    return (
        Ask(f"{section}.sender_id", "SMS sender id", hint="letters and digits (DLT header)"),
        Ask(f"{section}.dlt_entity_id", "DLT entity id", hint=f"digits, or {EMPTY} for none"),
        Ask(f"{section}.encoding", "SMS encoding", choices=ENCODINGS),
    )


def _contact(document: dict[str, Any]) -> tuple[Ask, ...]:
    return (Ask("contact_phone", "Contact phone", hint="with country code, e.g. +919876543210"),)


def _verification(document: dict[str, Any]) -> tuple[Ask, ...]:
    return (
        Ask(
            "verification.for_orders",
            "Verification for",
            choices=(("COD orders", "cod"), ("All orders", "all")),
        ),
        Ask(
            "verification.type",
            "Verification type",
            choices=(("IVR call", "ivr"), ("OTP via SMS", "otp"), ("WhatsApp", "whatsapp")),
        ),
        Ask(
            "verification.then",
            "Then (the cascade)",
            choices=(
                ("Nothing more", []),
                ("Then an IVR call", ["ivr"]),
                ("Then WhatsApp", ["whatsapp"]),
                ("Then IVR, then WhatsApp", ["ivr", "whatsapp"]),
                ("Then WhatsApp, then IVR", ["whatsapp", "ivr"]),
            ),
        ),
    )


def _accounts(document: dict[str, Any]) -> tuple[Ask, ...]:
    return ()


def _ivr(document: dict[str, Any]) -> tuple[Ask, ...]:
    return (
        Ask(
            "ivr.first_call",
            "First call",
            choices=(("Immediately", "immediate"), ("After some minutes", "after")),
        ),
        Ask(
            "ivr.first_call_after_minutes",
            "First call after (minutes)",
            kind=int,
            hint="1 to 1440",
        ),
        Ask("ivr.caller_id", "Caller id", hint=f"the virtual number, or {EMPTY} for the first"),
        Ask("ivr.flow_id", "Flow id", hint="digits: the Exotel call flow (app) id"),
        *_retries("ivr", 120),
        Ask(
            "ivr.timezone",
            "Time zone",
            hint=f"an IANA name such as Asia/Kolkata, or {EMPTY} for the shop's own",
        ),
        Ask("ivr.window_start_hour", "Retry calls from (hour)", kind=int, hint="0 to 23"),
        Ask("ivr.window_end_hour", "Retry calls until (hour)", kind=int, hint="0 to 23"),
        *_tags("ivr"),
        Ask("ivr.cancel_in_shopify", "Cancel in Shopify when cancelled on the call", YES_NO),
    )


def _fallback(document: dict[str, Any]) -> tuple[Ask, ...]:
    mode = Ask(
        "fallback.mode",
        "Fallback",
        choices=(
            ("None", "none"),
            ("SMS with a link", "sms_link"),
            ("SMS with a missed-call number", "missed_call"),
        ),
    )
    if get(document, "fallback.mode") == "sms_link":
        link = "fallback.sms_link"
        return (
            mode,
            *_sms(link),
            Ask(f"{link}.dlt_template_id", "DLT template id", hint=f"digits, or {EMPTY}"),
            Ask(f"{link}.template", "SMS template", hint="with %link%"),
            Ask(f"{link}.link_expiry_hours", "Link expiry (hours)", kind=int, hint="1 to 72"),
            *_tags(link),
            *_retries(link, 60),
            Ask(
                f"{link}.cancel_in_shopify", "Cancel in Shopify when cancelled on the page", YES_NO
            ),
        )
    if get(document, "fallback.mode") == "missed_call":
        missed = "fallback.missed_call"
        return (
            mode,
            Ask(
                f"{missed}.confirm_mode",
                "A missed call confirms",
                choices=(
                    ("The latest pending order", "latest"),
                    ("The latest 3 pending orders in 30 days", "latest_3_in_30_days"),
                ),
            ),
            *_sms(missed),
            Ask(f"{missed}.dlt_template_id", "DLT template id", hint=f"digits, or {EMPTY}"),
            Ask(f"{missed}.template", "SMS template", hint="with %exophone%"),
            Ask(
                f"{missed}.confirmation_dlt_template_id",
                "Confirmation DLT template id",
                hint=f"digits, or {EMPTY}",
            ),
            Ask(f"{missed}.confirmation_template", "Confirmation SMS template"),
            Ask(f"{missed}.exophone", "ExoPhone for missed calls"),
            *_tags(missed, callback=False, cancel=False),
            *_retries(missed, 60),
        )
    return (mode,)


def _otp(document: dict[str, Any]) -> tuple[Ask, ...]:
    return (
        *_sms("otp"),
        Ask("otp.dlt_template_id", "DLT template id", hint=f"digits, or {EMPTY}"),
        Ask("otp.template", "SMS template", hint="with %otp%"),
        Ask("otp.resend_limit", "Times the OTP can be resent", kind=int, hint="0 to 5"),
        Ask(
            "otp.resend_after_seconds", "Resend button after (seconds)", kind=int, hint="10 to 600"
        ),
        Ask("otp.verified_tag", "Tag on OTP verification"),
        Ask("otp.wrong_attempts_limit", "Wrong OTPs allowed", kind=int, hint="0 to 5"),
    )


def event_name(event: str) -> str:
    return event.replace("_", " ").capitalize()


def _notifications(document: dict[str, Any]) -> tuple[Ask, ...]:
    quiet = "notifications.quiet_hours"
    return (
        Ask(
            "notifications.sms_active",
            "SMS notifications",
            choices=(("Active", True), ("Not active", False)),
        ),
        Ask(
            "notifications.sms_sender_id",
            "Notifications' SMS sender id",
            hint=f"letters and digits (DLT header), or {EMPTY} for the account's own",
        ),
        Ask(
            "notifications.dlt_entity_id",
            "Notifications' DLT entity id",
            hint=f"digits, or {EMPTY} for none",
        ),
        Ask(f"{quiet}.active", "Quiet hours", choices=ON_OFF),
        Ask(f"{quiet}.start_hour", "Quiet from (hour)", kind=int, hint="0 to 23, shop's time"),
        Ask(f"{quiet}.end_hour", "Quiet until (hour)", kind=int, hint="0 to 23, shop's time"),
        Ask(
            "notifications.merchant.phone",
            "Your number for SMS alerts",
            hint=f"e.g. +919876543210, or {EMPTY} for none",
        ),
        *_sms_asks("notifications.merchant.new_order", "New order (to you)"),
        *_sms_asks("notifications.merchant.callback_requested", "Callback request (to you)"),
    )


def _sms_asks(path: str, name: str) -> tuple[Ask, ...]:
    """An SMS text's switch, text (with its preview) and DLT template id."""
    return (
        Ask(f"{path}.active", f"{name} SMS", choices=ON_OFF),
        Ask(f"{path}.text", f"{name} text", hint=TOKEN_HINT, preview=True),
        Ask(f"{path}.dlt_template_id", f"{name} DLT template id", hint=f"digits, or {EMPTY}"),
    )


TOKEN_HINT = (
    "tokens: " + ", ".join(spelt(name) for name in TOKENS) + "; a { part } shows only when "
    "its tokens have values"
)


def _sms_notices(document: dict[str, Any]) -> tuple[Ask, ...]:
    return tuple(
        ask
        for event in EVENTS
        for ask in _sms_asks(f"notifications.events.{event}.sms", event_name(event))
    )


def _whatsapp_notices(document: dict[str, Any]) -> tuple[Ask, ...]:
    return tuple(
        Ask(
            f"notifications.events.{event}.whatsapp.fallback_to_sms",
            f"{event_name(event)}: SMS fallback",
            choices=YES_NO,
        )
        for event in EVENTS
    )


def whatsapp_line(document: dict[str, Any], event: str) -> str:
    """An event's WhatsApp notification as the page shows it."""
    notice = get(document, f"notifications.events.{event}.whatsapp") or {}
    if not notice.get("active"):
        return f"{event_name(event)} on WhatsApp: off"
    mapped = ", ".join(
        f"{{{{{number}}}}} {token}" for number, token in enumerate(notice["params"], start=1)
    )
    return f"{event_name(event)} on WhatsApp: on, template {notice['template_id']}" + (
        f" ({mapped})" if mapped else ""
    )


PAGES = (
    Page("contact", "Contact details", _contact),
    Page("verification", "Order verification", _verification),
    Page("accounts", "Provider accounts", _accounts, accounts=True),
    Page("channels", "Channels", _accounts, channels=True),
    Page("ivr", "IVR call", _ivr),
    Page("fallback", "IVR fallback", _fallback),
    Page("otp", "OTP SMS", _otp),
    Page("notifications", "Notifications", _notifications),
    Page("sms_notices", "SMS notifications", _sms_notices),
    Page("whatsapp_notices", "WhatsApp notifications", _whatsapp_notices, whatsapp=True),
)

# What each provider's account needs, in the order asked: secrets last, so the live check
# follows the last one at once.
ACCOUNT_ASKS: dict[str, tuple[Ask, ...]] = {
    "twilio": (
        Ask("account_sid", "Account SID", hint="AC and 32 hex digits, from the Twilio console"),
        Ask("numbers", "Phone numbers", kind=list, hint="comma-separated, e.g. +15005550006"),
        Ask("whatsapp_number", "WhatsApp sender", hint=f"e.g. +15005550006, or {EMPTY} for none"),
        Ask("auth_token", "Auth token", secret=True),
    ),
    "exotel": (
        Ask(
            "subdomain",
            "Account subdomain (cluster)",
            choices=(
                ("Singapore: api.exotel.com", "api.exotel.com"),
                ("Mumbai: api.in.exotel.com", "api.in.exotel.com"),
            ),
        ),
        Ask("account_sid", "Account SID", hint="Settings > API in Exotel"),
        Ask("api_key", "API key (username)", hint="Settings > API in Exotel"),
        Ask("numbers", "ExoPhones", kind=list, hint="comma-separated, e.g. 08047112345"),
        Ask("api_token", "API token (password)", hint="Settings > API in Exotel", secret=True),
    ),
    "gupshup": (
        Ask("app_name", "App name"),
        Ask("whatsapp_number", "WhatsApp number", hint="e.g. +919876543210"),
        Ask("api_key", "API key", secret=True),
    ),
    "ringcentral": (
        Ask("client_id", "App client id"),
        Ask("sms_number", "SMS number", hint="e.g. +16505550100"),
        Ask("client_secret", "App client secret", secret=True),
        Ask("jwt", "JWT credential", secret=True),
    ),
}
PROVIDER_NAMES = {
    "twilio": "Twilio",
    "exotel": "Exotel",
    "gupshup": "Gupshup",
    "ringcentral": "RingCentral",
}

CHANNEL_NAMES = {"voice": "Calls", "sms": "SMS", "whatsapp": "WhatsApp"}


def account_name(account: dict[str, Any]) -> str:
    """A connected account as the merchant knows it: its owner, provider and number."""
    details = account["details"]
    numbers = [n["number"] for n in details.get("numbers", []) if n.get("number")]
    known = details.get("whatsapp_number") or details.get("sms_number") or next(iter(numbers), "")
    name = f"{account['owner']} {PROVIDER_NAMES[account['provider']]} account"
    return f"{name} ({known})" if known else name


def channel_lines(listing: dict[str, Any]) -> list[str]:
    """Per channel, the account carrying it and the others offering it."""
    lines = []
    for channel, chosen in listing["channels"].items():
        carrier = next(
            (a for a in listing["accounts"] if chosen and a["id"] == chosen["account_id"]), None
        )
        lines.append(
            f"{CHANNEL_NAMES[channel]}: {account_name(carrier) if carrier else 'no account'}"
        )
        others = [
            account_name(a)
            for a in listing["accounts"]
            if channel in a["channels"] and a is not carrier
        ]
        if others:
            lines.append(f"  also offered by: {'; '.join(others)}")
    return lines


def channel_choices(listing: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(button text, channel's index, account id) for each account that could carry a
    channel it does not carry now."""
    found = []
    for item, (channel, chosen) in enumerate(listing["channels"].items()):
        for account in listing["accounts"]:
            if channel in account["channels"] and not (
                chosen and chosen["account_id"] == account["id"]
            ):
                text = f"{CHANNEL_NAMES[channel]} by the {account_name(account)}"
                found.append((text, item, account["id"]))
    return found


def removal_consequences(heirs: dict[str, dict[str, Any] | None]) -> list[str]:
    """What happens to the channels an account carries once it is removed."""
    said = [
        f"{CHANNEL_NAMES[channel]} will be carried by the {account_name(heir)}."
        if heir
        else f"{CHANNEL_NAMES[channel]} will have no account."
        for channel, heir in heirs.items()
    ]
    return said or ["It carries no channel now."]
