"""The shop's settings document (seed 000's COD verification settings) as pydantic models, and
its validation: a document is accepted whole or refused with every problem listed by field path.
"""

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, reduce
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from flows.conversations.keywords import BUILT_IN, HELP_TEXT, START_TEXT, STOP_TEXT, normal
from flows.notifications import events as journey
from flows.notifications.templates import TOKENS, check_text
from providers.shopify.orders import DEFAULT_COD_GATEWAYS
from providers.sms import not_gsm7

ORDER_PLACEHOLDERS = ("%ordernumber%", "%ordername%", "%orderamount%")
_PLACEHOLDER = re.compile(r"%\w+%", re.ASCII)
# Shopify limits a tag to 40 characters and separates tags with commas.
_TAG_LENGTH = 40
# Entries of the host's zone directory that are not IANA zone names.
_NOT_ZONES = frozenset({"localtime", "Factory"})

Encoding = Literal["plain", "unicode"]  # Exotel's SMS EncodingType values
# The order fields a WhatsApp template's variables can carry (seed 002's variable list, as far
# as an order here knows it).
OrderField = Literal[
    "order_name",
    "order_number",
    "amount",
    "customer_name",
    "customer_phone",
    "shop_name",
    "city",
    "items",
    "item_count",
]
ORDER_FIELDS: tuple[str, ...] = OrderField.__args__
_TEMPLATE_VARIABLE = re.compile(r"\{\{\s*([0-9]+)\s*\}\}")
# Methods that can follow the first one in the cascade, before the fallback.
NextMethod = Literal["ivr", "whatsapp"]


def _matching(pattern: str, message: str) -> AfterValidator:
    regex = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if value and not regex.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _required(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _tag(value: str) -> str:
    if len(value) > _TAG_LENGTH:
        raise ValueError(f"must be at most {_TAG_LENGTH} characters")
    if "," in value:
        raise ValueError("must not contain a comma")
    return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones() - _NOT_ZONES)


def is_zone(name: str) -> bool:
    """True for an IANA time zone name this host knows."""
    return name in _zones()


def _timezone(value: str) -> str:
    if value and value not in _zones():
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as Asia/Kolkata, "
            "or leave it empty for the shop's own"
        )
    return value


def _template(mandatory: str | None, *extra: str) -> Any:
    allowed = tuple(p for p in (*ORDER_PLACEHOLDERS, mandatory, *extra) if p)

    def check(value: str) -> str:
        problems = []
        if mandatory is None and not value:
            problems.append("must not be empty")
        if mandatory is not None and mandatory not in value:
            problems.append(f"must contain the {mandatory} placeholder")
        unknown = sorted(set(_PLACEHOLDER.findall(value)) - set(allowed))
        if unknown:
            problems.append(
                f"unknown placeholder {', '.join(unknown)} (allowed: {', '.join(allowed)})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    return Annotated[
        str, AfterValidator(check), Field(description=f"placeholders: {', '.join(allowed)}")
    ]


Phone = Annotated[
    str, _matching(r"\+\d{8,15}", "must be + and 8 to 15 digits, e.g. +919876543210")
]
ExoPhone = Annotated[str, _matching(r"\+?\d{6,15}", "must be a phone number, e.g. 08047112345")]
Digits = Annotated[str, _matching(r"\d{1,30}", "must be digits only")]
SenderId = Annotated[str, _matching(r"\+?[A-Za-z0-9]{1,20}", "must be letters and digits only")]
Tag = Annotated[str, AfterValidator(_tag)]
Key = Annotated[str, _matching(r"[0-9*#]", "must be one keypad key: 0-9, * or #")]
ButtonTitle = Annotated[str, Field(max_length=20)]
RequiredTag = Annotated[Tag, AfterValidator(_required)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
LinkTemplate = _template("%link%")
MissedCallTemplate = _template("%exophone%")
ConfirmationTemplate = _template(None, "%exophone%")
OtpTemplate = _template("%otp%", "%link%")
WhatsAppText = _template(None)


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, validate_default=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic would read true as 1, 0 as false and "5" as 5; the document's schema
        # (and so the admin API) takes JSON's own integers and booleans only.
        annotation = cls.model_fields[info.field_name].annotation
        if annotation is int and isinstance(value, bool | str):
            raise ValueError("must be an integer")
        if annotation is bool and not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value


class Verification(_Section):
    """Which orders are verified, and how."""

    for_orders: Literal["cod", "all"] = "cod"
    type: Literal["ivr", "otp", "whatsapp"] = "ivr"
    # The cascade is `type`, then these in order, then the fallback (see `methods`).
    then: list[NextMethod] = Field(default_factory=list, max_length=2)
    # What happens when the last method got no answer.
    final_action: Literal["none", "tag", "cancel"] = "none"
    final_tag: RequiredTag = "cod_unconfirmed"
    cancel_after_hours: int = Field(24, ge=1, le=168)
    # Retries always wait for the window; whether the first attempt does too.
    window_first_call: bool = True
    window_first_message: bool = False


class Eligibility(_Section):
    """Which orders are verified at all, beyond `verification.for_orders`."""

    min_amount: Decimal | None = Field(None, ge=0)
    max_amount: Decimal | None = Field(None, ge=0)
    cod_gateways: list[str] = Field(default_factory=lambda: sorted(DEFAULT_COD_GATEWAYS))
    skip_tags: list[Tag] = Field(default_factory=list)
    first_time_customers_only: bool = False
    blocked_phones: list[Phone] = Field(default_factory=list)
    blocked_action: Literal["tag", "cancel"] = "tag"
    blocked_tag: RequiredTag = "blocked_phone"


class IvrSettings(_Section):
    """The automated verification call through the merchant's Exotel flow."""

    first_call: Literal["immediate", "after"] = "immediate"
    first_call_after_minutes: int = Field(0, ge=0, le=1440)
    caller_id: ExoPhone = ""
    flow_id: Digits = ""
    retries: int = Field(2, ge=0, le=5)
    retry_interval_minutes: int = Field(30, ge=0, le=120)
    # The calling window's zone; "" is the shop's own, from Shopify.
    timezone: TimeZone = ""
    window_start_hour: int = Field(9, ge=0, le=23)
    window_end_hour: int = Field(21, ge=0, le=23)
    confirm_tag: RequiredTag = "cod_confirmed"
    cancel_tag: Tag = "cod_cancelled"
    callback_tag: Tag = "cod_callback"
    cancel_in_shopify: bool = False
    # The keys of our own IVR (Twilio); an Exotel flow maps its own keys to these.
    confirm_key: Key = "1"
    cancel_key: Key = "2"
    callback_key: Key = "3"


class WhatsAppSettings(_Section):
    """Verification by a WhatsApp message with Confirm / Cancel / Call me buttons."""

    # An approved template with three quick-reply buttons; "" sends a session message.
    template_id: str = Field("", max_length=128)
    # The order field of each of the template's variables: {{1}}, {{2}}, ... in this order.
    template_params: list[OrderField] = Field(
        default_factory=lambda: ["order_name", "amount"], max_length=20
    )
    text: WhatsAppText = "Please confirm your order %ordername% of %orderamount%."
    confirm_button: ButtonTitle = "Confirm"
    cancel_button: ButtonTitle = "Cancel"
    callback_button: ButtonTitle = "Call me"
    retries: int = Field(1, ge=0, le=5)
    # Between messages, and how long the last one waits for an answer.
    retry_interval_minutes: int = Field(30, ge=10, le=120)
    confirm_tag: RequiredTag = "cod_confirmed"
    cancel_tag: Tag = "cod_cancelled"
    callback_tag: Tag = "cod_callback"
    cancel_in_shopify: bool = False


class SmsLinkFallback(_Section):
    """Fallback SMS with a link to a page where the customer confirms or cancels."""

    sender_id: SenderId = ""
    dlt_entity_id: Digits = ""
    dlt_template_id: Digits = ""
    template: LinkTemplate = "Please confirm your order %ordername% of %orderamount%: %link%"
    link_expiry_hours: int = Field(48, ge=1, le=72)
    encoding: Encoding = "plain"
    confirm_tag: RequiredTag = "cod_confirmed"
    cancel_tag: Tag = "cod_cancelled"
    callback_tag: Tag = "cod_callback"
    retries: int = Field(1, ge=0, le=5)
    retry_interval_minutes: int = Field(30, ge=0, le=60)
    cancel_in_shopify: bool = False


class MissedCallFallback(_Section):
    """Fallback SMS asking the customer to confirm with a missed call on an ExoPhone."""

    confirm_mode: Literal["latest", "latest_3_in_30_days"] = "latest"
    sender_id: SenderId = ""
    dlt_entity_id: Digits = ""
    encoding: Encoding = "plain"
    dlt_template_id: Digits = ""
    template: MissedCallTemplate = (
        "To confirm your pending order, give a missed call on %exophone%"
    )
    confirmation_dlt_template_id: Digits = ""
    confirmation_template: ConfirmationTemplate = "Thank you, your order %ordername% is confirmed."
    exophone: ExoPhone = ""
    confirm_tag: RequiredTag = "cod_confirmed"
    retries: int = Field(1, ge=0, le=5)
    retry_interval_minutes: int = Field(30, ge=0, le=60)


class Fallback(_Section):
    """What follows an IVR verification that got no answer or reached a DND number."""

    mode: Literal["none", "sms_link", "missed_call"] = "none"
    sms_link: SmsLinkFallback = Field(default_factory=SmsLinkFallback)
    missed_call: MissedCallFallback = Field(default_factory=MissedCallFallback)


class OtpSettings(_Section):
    """Verification by an OTP sent by SMS and entered on the post-purchase page."""

    sender_id: SenderId = ""
    dlt_entity_id: Digits = ""
    dlt_template_id: Digits = ""
    encoding: Encoding = "plain"
    template: OtpTemplate = "%otp% is the code to verify your order %ordername% of %orderamount%."
    resend_limit: int = Field(2, ge=0, le=5)
    resend_after_seconds: int = Field(30, ge=10, le=600)
    verified_tag: RequiredTag = "otp_verified"
    wrong_attempts_limit: int = Field(3, ge=0, le=5)
    # OWASP ASVS V2.7 (out-of-band verifiers): 6+ digits, valid for 10 minutes at most.
    code_length: int = Field(6, ge=6, le=8)
    expiry_minutes: int = Field(10, ge=1, le=10)


def _answer_text(*allowed: str) -> Any:
    def check(value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        unknown = sorted(set(_PLACEHOLDER.findall(value)) - set(allowed))
        if unknown:
            listed = ", ".join(allowed) or "none"
            raise ValueError(f"unknown placeholder {', '.join(unknown)} (allowed: {listed})")
        return value

    described = f"placeholders: {', '.join(allowed)}" if allowed else "plain text"
    return Annotated[str, AfterValidator(check), Field(max_length=640, description=described)]


def _word(value: str) -> str:
    word = normal(value)
    if not word:
        raise ValueError("must have a letter or digit")
    if word.isdigit():
        raise ValueError("must not be a number: customers answer questions with digits")
    if word in BUILT_IN or word == "yes":
        raise ValueError(f"{value!r} is a built-in keyword already")
    return value


def _phrase(value: str) -> str:
    if not normal(value):
        raise ValueError("must have a letter or digit")
    return value


KeywordWord = Annotated[str, Field(max_length=40), AfterValidator(_word)]
FlagPhrase = Annotated[str, Field(max_length=80), AfterValidator(_phrase)]
PlainAnswer = _answer_text()
HelpAnswer = _answer_text("%phone%")
NotUnderstoodAnswer = _answer_text("%options%")
NOT_UNDERSTOOD_TEXT = "Sorry, we did not understand your reply. Please answer %options%."


class ConversationSettings(_Section):
    """How customers' messages are answered: the compliance keywords' answers (seed 001), the
    shop's own keywords per family (in its customers' language), phrases flagged to the
    merchant, and the "reply not understood" message (seed 002)."""

    stop_text: PlainAnswer = STOP_TEXT
    start_text: PlainAnswer = START_TEXT
    help_text: HelpAnswer = HELP_TEXT
    stop_words: list[KeywordWord] = Field(default_factory=list, max_length=20)
    start_words: list[KeywordWord] = Field(default_factory=list, max_length=20)
    help_words: list[KeywordWord] = Field(default_factory=list, max_length=20)
    # Found anywhere in a message: the merchant's thread is flagged.
    flag_phrases: list[FlagPhrase] = Field(
        default_factory=lambda: ["wrong number", "don't text me", "do not text me"],
        max_length=20,
    )
    # A flagged phrase also opts the number out of the channel (as STOP does).
    opt_out_on_flag: bool = False
    # Seed 002: "Send a notification to the customer when an incorrect reply is sent".
    not_understood: bool = False
    not_understood_text: NotUnderstoodAnswer = NOT_UNDERSTOOD_TEXT


class AlertSettings(_Section):
    """What the shop's linked chats are told unasked (each chat can turn its own alerts off):
    callbacks requested, jobs that failed for good and refused credentials always; new orders
    when asked; a daily summary at an hour of the shop's time zone."""

    new_orders: bool = False
    daily_summary: bool = True
    summary_hour: int = Field(20, ge=0, le=23)


NoticeText = Annotated[
    str,
    Field(max_length=640, description="tokens: see GET /api/v1/notifications/preview"),
    AfterValidator(check_text),
]
TemplateVariable = Literal[TOKENS]  # type: ignore[valid-type]
_STOP = " Reply STOP to opt-out."
# Seed 001: where the customer sees the order, left out when Shopify gave no status page.
_STATUS_PAGE = "{ You can view your order details at %orderstatusurl%.}"
_DEFAULT_TEXTS = {
    journey.ORDER_CREATED: "Hi [[fullname]], your %shop% order %ordername% has been received."
    + _STATUS_PAGE
    + _STOP,
    journey.ORDER_CONFIRMED: "Hi [[fullname]], your %shop% order %ordername% has been confirmed."
    + _STATUS_PAGE
    + _STOP,
    journey.PACKED: "Hi [[firstname]], your %shop% order %ordername% is packed." + _STOP,
    journey.SHIPPED: "Hi [[fullname]], your %shop% order %ordername% has been fulfilled"
    "{ by %carrier%}.{ Track it at %trackingurl%.}" + _STOP,
    journey.OUT_FOR_DELIVERY: "Hi [[firstname]], your %shop% order %ordername% is out for "
    "delivery today." + _STOP,
    journey.FAILED_DELIVERY: "Hi [[firstname]], we could not deliver your %shop% order "
    "%ordername%{ (%reason%)}. We will try again." + _STOP,
    journey.DELIVERED: "Hi [[firstname]], your %shop% order %ordername% has been delivered."
    + _STOP,
    journey.RETURN_CREATED: "Hi [[firstname]], the return of your %shop% order %ordername% "
    "has been created." + _STOP,
    journey.RESTOCKED: "Hi [[firstname]], the return of your %shop% order %ordername% has "
    "reached us." + _STOP,
    journey.REFUND_ISSUED: "Hi [[firstname]], a refund{ of %refundamount%} for your %shop% "
    "order %ordername% has been issued." + _STOP,
}


class SmsNotice(_Section):
    """One SMS template (seed 004: filled in and active, each can be deactivated)."""

    active: bool = True
    text: NoticeText
    # Exotel in India: the text's template id registered on the DLT portal.
    dlt_template_id: Digits = ""


class WhatsAppNotice(_Section):
    """One event's WhatsApp template (seed 002: off until the merchant enables it)."""

    active: bool = False
    template_id: str = Field("", max_length=128)
    # The token of each of the template's variables: {{1}}, {{2}}, ... in this order.
    params: list[TemplateVariable] = Field(default_factory=list, max_length=20)
    # When the template cannot be used (paused, rejected, charge not accepted): the event's
    # SMS instead, if SMS is active and the customer consented to it.
    fallback_to_sms: bool = True


class EventNotice(_Section):
    sms: SmsNotice
    whatsapp: WhatsAppNotice = Field(default_factory=WhatsAppNotice)
    # Sent in quiet hours too.
    urgent: bool = False


def _default_notice(event: str) -> dict[str, Any]:
    return {"sms": {"text": _DEFAULT_TEXTS[event]}, "urgent": event == journey.OUT_FOR_DELIVERY}


class EventNotices(_Section):
    """Per journey event; a part left out of the document keeps the event's default."""

    order_created: EventNotice
    order_confirmed: EventNotice
    packed: EventNotice
    shipped: EventNotice
    out_for_delivery: EventNotice
    failed_delivery: EventNotice
    delivered: EventNotice
    return_created: EventNotice
    restocked: EventNotice
    refund_issued: EventNotice

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        filled = dict(value)
        for event in journey.EVENTS:
            given = filled.get(event, {})
            if not isinstance(given, dict):
                continue
            default = _default_notice(event)
            sms = given.get("sms", {})
            if isinstance(sms, dict):
                sms = {**default["sms"], **sms}
            filled[event] = {**default, **given, "sms": sms}
        return filled


_MERCHANT_TEXTS = {
    "new_order": "%shop%: new order %ordername% of %orderamount% (%paymentmethod%) from "
    "[[fullname]] %phone%{, %city%}.",
    "callback_requested": "%shop%: [[fullname]] asked for a call back about order "
    "%ordername%. Call %phone%.",
}


class MerchantMessages(_Section):
    """SMS to the merchant's own number (seed 004's "Merchant: New order"): none unless the
    number is given. Neither the customers' consent nor quiet hours apply to them."""

    phone: Phone = ""
    new_order: SmsNotice
    callback_requested: SmsNotice

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        filled = dict(value)
        for name, text in _MERCHANT_TEXTS.items():
            given = filled.get(name, {})
            if isinstance(given, dict):
                filled[name] = {"text": text, **given}
        return filled

    def notice(self, alert: str) -> SmsNotice | None:
        """The SMS of `alert`, None for an alert the merchant is not texted about."""
        return getattr(self, alert) if alert in _MERCHANT_TEXTS else None


class QuietHours(_Section):
    """Hours (the shop's local time) when only urgent notifications go; the others wait."""

    active: bool = False
    start_hour: int = Field(21, ge=0, le=23)
    end_hour: int = Field(9, ge=0, le=23)


class Notifications(_Section):
    """Order-journey notifications to customers (issue 16)."""

    # Seed 004: nothing goes by SMS until the merchant ticks SMS active.
    sms_active: bool = False
    sms_sender_id: SenderId = ""
    # Exotel in India: the business's DLT entity id (each template has its own id).
    dlt_entity_id: Digits = ""
    # Seed 002: the platform's WhatsApp account charges per message, accepted once.
    whatsapp_charge_accepted: bool = False
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    events: EventNotices = Field(default_factory=lambda: EventNotices.model_validate({}))
    merchant: MerchantMessages = Field(default_factory=lambda: MerchantMessages.model_validate({}))

    def notice(self, event: str) -> EventNotice:
        notice: EventNotice = getattr(self.events, event)
        return notice

    def wanted(self, event: str) -> bool:
        """Whether any channel would carry `event`."""
        notice = self.notice(event)
        return (self.sms_active and notice.sms.active) or notice.whatsapp.active

    def merchant_sms(self, alert: str) -> SmsNotice | None:
        """The SMS the merchant gets for `alert` ("new_order", "callback_requested"), if any."""
        notice = self.merchant.notice(alert)
        if notice is None or not (self.sms_active and notice.active and self.merchant.phone):
            return None
        return notice


class ShopSettings(_Section):
    """The whole settings document of one shop."""

    verification: Verification = Field(default_factory=Verification)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    whatsapp: WhatsAppSettings = Field(default_factory=WhatsAppSettings)
    fallback: Fallback = Field(default_factory=Fallback)
    otp: OtpSettings = Field(default_factory=OtpSettings)
    conversations: ConversationSettings = Field(default_factory=ConversationSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    notifications: Notifications = Field(default_factory=Notifications)
    contact_phone: Phone = ""
    # The language of calls, messages and pages; "" is the shop's own, from Shopify.
    language: Literal["", "en", "hi"] = ""

    def document(self) -> dict[str, Any]:
        """The document as JSON (it holds no secret: credentials live with the accounts)."""
        return self.model_dump(mode="json")


SHOP_SETTINGS_DEFAULTS = ShopSettings()


@dataclass(frozen=True)
class FieldProblem:
    """One problem of a settings document: the dotted field path and what is wrong."""

    field: str
    message: str


class SettingsError(ValueError):
    """A settings document was refused; `problems` lists every problem found."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def methods(settings: ShopSettings) -> tuple[str, ...]:
    """The verification cascade: OTP alone, or the first method, the ones that follow it,
    then the fallback (seed 000's "IVR, then SMS with link" is ("ivr", "sms_link"))."""
    first = settings.verification.type
    if first == "otp":
        return ("otp",)
    then = tuple(m for m in settings.verification.then if m != first)
    fallback = settings.fallback.mode
    return (first, *dict.fromkeys(then), *(() if fallback == "none" else (fallback,)))


def sections_in_use(settings: ShopSettings) -> frozenset[str]:
    """The sections that the selected cascade puts to work."""
    used: set[str] = set()
    for method in methods(settings):
        if method in ("ivr", "otp"):
            used.add(method)
        elif method in ("sms_link", "missed_call"):
            used.add(f"fallback.{method}")
    return frozenset(used)


# The SMS templates, by section; each is sent in its section's encoding.
SMS_TEMPLATES = (
    ("otp", "template"),
    ("fallback.sms_link", "template"),
    ("fallback.missed_call", "template"),
    ("fallback.missed_call", "confirmation_template"),
)

# Required for shops in India (DLT registration), for the sections in use.
_DLT_IDS = {
    "otp": ("dlt_entity_id", "dlt_template_id"),
    "fallback.sms_link": ("dlt_entity_id", "dlt_template_id"),
    "fallback.missed_call": ("dlt_entity_id", "dlt_template_id", "confirmation_dlt_template_id"),
}


@dataclass(frozen=True)
class _Rule:
    field: str  # where the problem is reported
    reads: tuple[str, ...]  # the other fields it depends on
    problem: Callable[[ShopSettings, str], str | None]  # (settings, country) -> message


def _first_call_delay(settings: ShopSettings, _country: str) -> str | None:
    if settings.ivr.first_call == "after" and settings.ivr.first_call_after_minutes < 1:
        return "must be at least 1 when the first call is 'after'"
    return None


def _window_end(settings: ShopSettings, _country: str) -> str | None:
    if settings.ivr.window_end_hour <= settings.ivr.window_start_hour:
        return "must be later than window_start_hour"
    return None


def _then(settings: ShopSettings, _country: str) -> str | None:
    then = settings.verification.then
    if then and settings.verification.type == "otp":
        return "must be empty when the verification type is otp"
    if settings.verification.type in then:
        return f"must not repeat the verification type {settings.verification.type!r}"
    if len(set(then)) != len(then):
        return "must not name a method twice"
    return None


def _amount_range(settings: ShopSettings, _country: str) -> str | None:
    low, high = settings.eligibility.min_amount, settings.eligibility.max_amount
    if low is not None and high is not None and high < low:
        return "must not be below min_amount"
    return None


def _distinct_keys(settings: ShopSettings, _country: str) -> str | None:
    ivr = settings.ivr
    if len({ivr.confirm_key, ivr.cancel_key, ivr.callback_key}) != 3:
        return "confirm_key, cancel_key and callback_key must be three different keys"
    return None


def _three_orders_template(settings: ShopSettings, _country: str) -> str | None:
    section = settings.fallback.missed_call
    used = [p for p in ORDER_PLACEHOLDERS if p in section.template]
    if section.confirm_mode == "latest_3_in_30_days" and used:
        return f"must not use {', '.join(used)} when confirming the latest 3 orders"
    return None


def _retry_interval_rule(section: str, longest: int) -> _Rule:
    def problem(settings: ShopSettings, _country: str) -> str | None:
        retries = _get(settings, f"{section}.retries")
        interval = _get(settings, f"{section}.retry_interval_minutes")
        if retries == 0 and interval != 0:
            return "must be 0 when retries is 0"
        if retries > 0 and not 10 <= interval <= longest:
            return f"must be between 10 and {longest} when retries is above 0"
        return None

    return _Rule(f"{section}.retry_interval_minutes", (f"{section}.retries",), problem)


def _encoding_rule(section: str, name: str) -> _Rule:
    def problem(settings: ShopSettings, _country: str) -> str | None:
        if _get(settings, f"{section}.encoding") != "plain":
            return None
        outside = not_gsm7(_get(settings, f"{section}.{name}"))
        if outside:
            return (
                f"contains {''.join(outside)}, which a plain (GSM-7) SMS cannot carry: "
                "remove them or choose the unicode encoding"
            )
        return None

    return _Rule(f"{section}.{name}", (f"{section}.encoding",), problem)


def _dlt_rule(section: str, name: str) -> _Rule:
    def problem(settings: ShopSettings, country: str) -> str | None:
        if (
            country == "IN"
            and section in sections_in_use(settings)
            and not _get(settings, f"{section}.{name}")
        ):
            return "required for shops in India (DLT)"
        return None

    modes = ("fallback.mode",) if section.startswith("fallback.") else ()
    return _Rule(f"{section}.{name}", ("verification.type", "verification.then", *modes), problem)


def _family_rule(name: str, *earlier: str) -> _Rule:
    """A word of the `name` family must not be in an `earlier` family too."""

    def problem(settings: ShopSettings, _country: str) -> str | None:
        section = settings.conversations
        taken = {normal(word) for family in earlier for word in getattr(section, family)}
        twice = sorted({normal(word) for word in getattr(section, name)} & taken)
        return f"{twice[0]!r} is in another keyword family" if twice else None

    reads = tuple(f"conversations.{family}" for family in earlier)
    return _Rule(f"conversations.{name}", reads, problem)


def _whatsapp_template_rule(event: str) -> _Rule:
    section = f"notifications.events.{event}.whatsapp"

    def problem(settings: ShopSettings, _country: str) -> str | None:
        notice = settings.notifications.notice(event).whatsapp
        if notice.active and not notice.template_id:
            return "required to enable the WhatsApp notification"
        return None

    return _Rule(f"{section}.template_id", (f"{section}.active",), problem)


_RULES = (
    *(_whatsapp_template_rule(event) for event in journey.EVENTS),
    _family_rule("start_words", "stop_words"),
    _family_rule("help_words", "stop_words", "start_words"),
    _Rule("ivr.first_call_after_minutes", ("ivr.first_call",), _first_call_delay),
    _Rule("ivr.window_end_hour", ("ivr.window_start_hour",), _window_end),
    _Rule("verification.then", ("verification.type",), _then),
    _Rule("eligibility.max_amount", ("eligibility.min_amount",), _amount_range),
    _Rule("ivr.callback_key", ("ivr.confirm_key", "ivr.cancel_key"), _distinct_keys),
    _Rule(
        "fallback.missed_call.template",
        ("fallback.missed_call.confirm_mode",),
        _three_orders_template,
    ),
    _retry_interval_rule("ivr", 120),
    _retry_interval_rule("fallback.sms_link", 60),
    _retry_interval_rule("fallback.missed_call", 60),
    *(_dlt_rule(section, name) for section, names in _DLT_IDS.items() for name in names),
    *(_encoding_rule(section, name) for section, name in SMS_TEMPLATES),
)


def template_variables(text: str) -> int:
    """How many variables ({{1}}, {{2}}, ...) a WhatsApp template's text has."""
    return len(set(_TEMPLATE_VARIABLE.findall(text)))


def _template_fit(settings: ShopSettings, variables: int | None) -> str | None:
    mapped = len(settings.whatsapp.template_params)
    if not settings.whatsapp.template_id or variables is None or variables == mapped:
        return None
    has = f"{variables} variable{'' if variables == 1 else 's'}"
    given = "1 is mapped to an order field" if mapped == 1 else f"{mapped} are mapped"
    return (
        f"the template {settings.whatsapp.template_id} has {has} and {given}: "
        "map each of its variables, in order, to an order field"
    )


def validate_settings(
    document: dict[str, Any], *, country: str, template_variables: int | None = None
) -> ShopSettings:
    """Parse a settings document for a shop in `country` (ISO code) or raise SettingsError.
    `template_variables`: how many variables the WhatsApp template has, when it is known."""
    if not isinstance(document, dict):
        raise SettingsError([FieldProblem("", "the settings document must be a JSON object")])
    problems: list[FieldProblem] = []
    try:
        settings = ShopSettings.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [FieldProblem(_path(e["loc"]), _message(e)) for e in errors]
        # Without its invalid values (defaults instead) the document parses, so the rules that
        # span fields still run on every value that is valid.
        settings = ShopSettings.model_validate(_without(document, [e["loc"] for e in errors]))
    failed = {problem.field for problem in problems}
    for rule in _RULES:
        if not _touches((rule.field, *rule.reads), failed):
            message = rule.problem(settings, country.upper())
            if message:
                problems.append(FieldProblem(rule.field, message))
    fields = ("whatsapp.template_id", "whatsapp.template_params")
    if not _touches(fields, failed) and (message := _template_fit(settings, template_variables)):
        problems.append(FieldProblem("whatsapp.template_params", message))
    if problems:
        raise SettingsError(problems)
    return settings


def _get(settings: ShopSettings, path: str) -> Any:
    return reduce(getattr, path.split("."), settings)


def _parent(document: dict[str, Any], keys: Sequence[Any]) -> tuple[dict[str, Any] | None, Any]:
    *parents, last = keys
    node: Any = document
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), last


def _without(document: dict[str, Any], locs: list[tuple[Any, ...]]) -> dict[str, Any]:
    pruned = copy.deepcopy(document)
    for loc in locs:
        # A bad list item takes its whole list out (the field reverts to its default).
        items = next((i for i, key in enumerate(loc) if not isinstance(key, str)), len(loc))
        parent, name = _parent(pruned, loc[: max(items, 1)])
        if parent is not None:
            parent.pop(name, None)
    return pruned


def _touches(paths: Sequence[str], failed: set[str]) -> bool:
    return any(path == f or path.startswith(f"{f}.") for path in paths for f in failed)


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _message(error: ErrorDetails) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]
