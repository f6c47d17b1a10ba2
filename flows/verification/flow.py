"""Order verification as a pure state machine: `step(state, event, settings, now)` returns the
next state and the effects to perform (calls, messages, tags, cancel, timers, timeline lines).

The cascade of methods comes from the settings (`shop_settings.methods`): each method makes
its attempts — calls or messages — spaced by its interval inside the calling window, then
the next method starts; when the last one is exhausted the order is unverified and the
shop's final action applies. An answer (keypad, link page, WhatsApp button, missed call,
OTP) decides the order and ends everything else: a timer or call end that arrives for an
attempt that is no longer current is ignored, so late and repeated events change nothing.

Nothing waits for an answer that cannot come: an OTP nobody enters has a deadline, and a
call or message the provider refuses for good (no route, invalid number, template refused)
moves on to the next method at once.

A method that messages the customer on a channel they opted out of (SMS for the OTP, the
link and the missed-call number; WhatsApp for its buttons) is skipped, on the timeline, for
the next one, rather than sending what the send gate would suppress. The runtime reads the
consent and hands it in with the state (`VState.opted_out`); it is never stored.

Calls and messages that wait for the calling window are checked again when their job runs
(`held_until`): a late job (backlog, retry, rate limit) finding the window closed waits for
the next window start, and the flow's timer for that attempt moves with it (WindowClosed).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from flows.shops.settings import ShopSettings, methods
from flows.verification.windows import in_window
from providers.base import DND

# Statuses of an order's verification (Order.verification_status, Verification.state).
PENDING, CONFIRMED, CANCELLED = "pending", "confirmed", "cancelled"
CALLBACK, UNVERIFIED, SKIPPED = "callback_requested", "unverified", "skipped"
DECISIONS = {"confirm": CONFIRMED, "cancel": CANCELLED, "callback": CALLBACK}
# An answer still counts while the order is pending, or unverified after the last method.
ANSWERABLE = frozenset({PENDING, UNVERIFIED})

# System tags (seed 000), added when a method's attempts are used up.
IVR_LIMIT = "ivr_retry_limit_reached"
FALLBACK_LIMIT = "fallback_retry_limit_reached"
WHATSAPP_LIMIT = "whatsapp_retry_limit_reached"
OTP_WRONG_LIMIT = "incorrect_otp_limit_reached"
OTP_RESEND_LIMIT = "resend_otp_limit_reached"
LIMIT_TAGS = {
    "ivr": IVR_LIMIT,
    "sms_link": FALLBACK_LIMIT,
    "missed_call": FALLBACK_LIMIT,
    "whatsapp": WHATSAPP_LIMIT,
}
# A call that has reported no final status by then counts as not completed.
CALL_TIMEOUT = timedelta(minutes=15)
# How long the last message waits for an answer when its section's interval is 0.
LAST_ANSWER_WAIT = timedelta(minutes=60)
# How long an OTP waits to be entered after its latest SMS (a code expires sooner: the wait
# leaves the customer time to ask for another).
OTP_ANSWER_WAIT = timedelta(minutes=30)
# Orders placed longer ago than this are not verified.
MAX_ORDER_AGE = timedelta(days=2)
# The channel each message of a verification goes on.
CHANNELS = {
    "whatsapp": "whatsapp",
    "sms_link": "sms",
    "missed_call": "sms",
    "missed_call_confirmation": "sms",
    "otp": "sms",
}


@dataclass(frozen=True)
class OrderFacts:
    """What eligibility and the first call need to know about the order."""

    amount: Decimal
    gateways: tuple[str, ...]
    tags: tuple[str, ...]
    phone: str  # E.164, "" when none was usable
    phone_problem: str
    cancelled: bool
    financial_status: str
    placed_at: datetime
    previous_orders: int  # the customer's earlier orders at this shop


@dataclass(frozen=True)
class OtpIssue:
    """A fresh OTP: the nonce the code is derived from, and the code's keyed hash."""

    nonce: str
    code_hash: str


# Events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    order: OrderFacts
    otp: OtpIssue | None = None


@dataclass(frozen=True)
class Timer:
    seq: int


@dataclass(frozen=True)
class CallEnded:
    call: str  # the call's reference, "stage:attempt"
    status: str  # completed | busy | no-answer | failed | canceled | unknown


@dataclass(frozen=True)
class CallRefused:
    call: str
    code: str  # DND, INVALID_NUMBER, NO_ROUTE, ...


@dataclass(frozen=True)
class MessageFailed:
    """A message of this verification was not sent: refused for good (`permanent`), or
    failing until its send job gave up."""

    purpose: str  # as in SendMessage
    key: str
    code: str
    permanent: bool


@dataclass(frozen=True)
class WindowClosed:
    """The job of a call (`purpose` "call", `key` its reference) or of a message found the
    calling window closed: the contact waits until `until`, the same attempt."""

    purpose: str
    key: str
    until: datetime


@dataclass(frozen=True)
class Keypad:
    call: str
    digits: str


@dataclass(frozen=True)
class Answer:
    action: str  # confirm | cancel | callback
    mode: str  # ivr | sms_link | missed_call | whatsapp | merchant


@dataclass(frozen=True)
class OtpEntered:
    code_hash: str


@dataclass(frozen=True)
class OtpResend:
    otp: OtpIssue


@dataclass(frozen=True)
class OrderChanged:
    reason: str  # why verifying no longer makes sense (cancelled or paid in Shopify)


Event = (
    Start
    | Timer
    | CallEnded
    | CallRefused
    | MessageFailed
    | WindowClosed
    | Keypad
    | Answer
    | OtpEntered
    | OtpResend
    | OrderChanged
)

# Effects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceCall:
    call: str


@dataclass(frozen=True)
class SendMessage:
    purpose: str  # sms_link | missed_call | whatsapp | otp | missed_call_confirmation
    key: str  # unique per message of this verification
    otp_nonce: str = ""


@dataclass(frozen=True)
class AddTags:
    tags: tuple[str, ...]
    mode: str
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class CancelOrder:
    mode: str


@dataclass(frozen=True)
class StartTimer:
    seq: int
    at: datetime


@dataclass(frozen=True)
class NotifyMerchant:
    alert: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    kind: str
    mode: str
    detail: dict[str, Any] = field(default_factory=dict)


Effect = PlaceCall | SendMessage | AddTags | CancelOrder | StartTimer | NotifyMerchant | Record

# State --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VState:
    status: str = PENDING
    methods: tuple[str, ...] = ()  # the cascade, fixed when the verification starts
    stage: int = 0
    attempt: int = 0  # attempts made in the current stage
    waiting: str = ""  # due | call | answer | final | "" (what the live timer means)
    timer: int = 0  # the live timer's sequence number; other timers are stale
    timer_at: datetime | None = None
    open_call: str = ""  # the call in flight, "stage:attempt"
    wrong_input: str = ""
    otp_hash: str = ""
    otp_sent_at: datetime | None = None
    otp_expires_at: datetime | None = None
    otp_resends: int = 0
    otp_wrong: int = 0
    decided_by: str = ""
    reason: str = ""  # why it was skipped or stopped
    # The channels the customer opted out of, as read by the runtime just before this step.
    opted_out: frozenset[str] = frozenset()
    not_understood: int = 0  # "reply not understood" messages sent (flows.conversations.router)

    @property
    def method(self) -> str:
        return self.methods[self.stage] if self.stage < len(self.methods) else ""

    def to_json(self) -> dict[str, Any]:
        # The fields are flat values: a shallow copy, not asdict's deep one (every start).
        document = dict(vars(self))
        for name in ("timer_at", "otp_sent_at", "otp_expires_at"):
            moment = document[name]
            document[name] = moment.isoformat() if moment else None
        document["methods"] = list(self.methods)
        del document["opted_out"]
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> VState:
        values = dict(document)
        for name in ("timer_at", "otp_sent_at", "otp_expires_at"):
            values[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
        values["methods"] = tuple(values.get("methods", ()))
        return cls(**values)


Result = tuple[VState, list[Effect]]


def step(state: VState, event: Event, settings: ShopSettings, now: datetime) -> Result:
    """The next state of a verification and the effects that follow from `event`."""
    if isinstance(event, Start):
        return _start(state, event, settings, now)
    if isinstance(event, Answer):
        return _answer(state, event.action, event.mode, settings, now)
    if isinstance(event, Keypad):
        return _keypad(state, event, settings, now)
    if isinstance(event, Timer):
        return _timer(state, event, settings, now)
    if isinstance(event, OrderChanged):
        return _order_changed(state, event)
    if state.status != PENDING:
        return state, []
    if isinstance(event, CallEnded):
        if event.call != state.open_call:
            return state, []
        return _call_not_completed(state, event.status, settings, now)
    if isinstance(event, CallRefused):
        return _call_refused(state, event, settings, now)
    if isinstance(event, MessageFailed):
        return _message_failed(state, event, settings, now)
    if isinstance(event, WindowClosed):
        return _window_closed(state, event, settings)
    if isinstance(event, OtpEntered):
        return _otp_entered(state, event, settings, now)
    if isinstance(event, OtpResend):
        return _otp_resend(state, event, settings, now)
    raise TypeError(f"unknown event {event!r}")


def _order_changed(state: VState, event: OrderChanged) -> Result:
    """Cancelled or paid in Shopify: no more calls or messages, nor the final cancel."""
    if state.status not in ANSWERABLE:
        return state, []
    stopped = _clear(replace(state, status=SKIPPED, reason=event.reason))
    return stopped, [Record("verification_stopped", "", {"reason": event.reason})]


# Eligibility --------------------------------------------------------------------------


def screen(order: OrderFacts, settings: ShopSettings, now: datetime) -> tuple[str, str]:
    """("verify", "") for an order to verify, ("blocked", why) or ("skip", why) otherwise."""
    rules = settings.eligibility
    if order.cancelled:
        return "skip", "order is cancelled"
    if order.placed_at < now - MAX_ORDER_AGE:
        # An old order found late (an edit, a first reconciliation) is not worth a call.
        return "skip", "order was placed too long ago to verify"
    if not order.phone:
        return "skip", order.phone_problem or "no usable phone number"
    cod = {name.strip().lower() for name in rules.cod_gateways}
    is_cod = any(name.strip().lower() in cod for name in order.gateways)
    if settings.verification.for_orders == "cod" and not is_cod:
        return "skip", "not a cash-on-delivery order"
    if order.financial_status in ("paid", "partially_paid") and is_cod:
        return "skip", "order is already paid"
    if order.phone in rules.blocked_phones:
        return "blocked", "the phone number is on the shop's block list"
    if rules.min_amount is not None and order.amount < rules.min_amount:
        return "skip", f"amount below the minimum of {rules.min_amount}"
    if rules.max_amount is not None and order.amount > rules.max_amount:
        return "skip", f"amount above the maximum of {rules.max_amount}"
    tags = {tag.lower() for tag in order.tags}
    skip_tags = sorted(tags & {tag.lower() for tag in rules.skip_tags if tag})
    if skip_tags:
        return "skip", f"order is tagged {skip_tags[0]}"
    done = sorted(tags & {tag.lower() for tag in verification_tags(settings)})
    if done:
        return "skip", f"already verified (tagged {done[0]})"
    if rules.first_time_customers_only and order.previous_orders > 0:
        return "skip", "not the customer's first order"
    return "verify", ""


def verification_tags(settings: ShopSettings) -> frozenset[str]:
    """Every tag a verification adds: an order carrying one was verified already."""
    sections = (settings.ivr, settings.whatsapp, settings.fallback.sms_link)
    tags = {getattr(s, f"{a}_tag") for s in sections for a in DECISIONS}
    tags |= {settings.fallback.missed_call.confirm_tag, settings.otp.verified_tag}
    tags |= {*LIMIT_TAGS.values(), OTP_WRONG_LIMIT, settings.verification.final_tag}
    tags.add(settings.eligibility.blocked_tag)
    return frozenset(tag for tag in tags if tag)


def _start(prior: VState, event: Start, settings: ShopSettings, now: datetime) -> Result:
    verdict, reason = screen(event.order, settings, now)
    if verdict == "skip":
        state = VState(status=SKIPPED, reason=reason)
        return state, [Record("verification_skipped", "", {"reason": reason})]
    if verdict == "blocked":
        rules = settings.eligibility
        effects: list[Effect] = [
            Record("verification_skipped", "", {"reason": reason}),
            AddTags((rules.blocked_tag,), "system"),
        ]
        if rules.blocked_action == "cancel":
            effects.append(CancelOrder("system"))
            return VState(status=CANCELLED, decided_by="system", reason=reason), effects
        return VState(status=SKIPPED, reason=reason), effects
    state = VState(methods=methods(settings), opted_out=prior.opted_out)
    started = Record("verification_started", "", {"methods": list(state.methods)})
    state, effects = _begin_stage(state, 0, settings, now, event)
    return state, [started, *effects]


# The cascade --------------------------------------------------------------------------


def _begin_stage(
    state: VState, stage: int, settings: ShopSettings, now: datetime, start: Start | None = None
) -> Result:
    if stage >= len(state.methods):
        return _exhausted(state, settings, now)
    state = replace(state, stage=stage, attempt=0, open_call="", wrong_input="")
    method = state.method
    if _opted_out(state, method):
        return _skip_method(state, settings, now)
    if method == "otp":
        assert start is not None and start.otp is not None, "an OTP verification needs its code"
        return _send_otp(state, start.otp, settings, now)
    due = now
    if method == "ivr":
        if stage == 0 and settings.ivr.first_call == "after" and start is not None:
            delay = timedelta(minutes=settings.ivr.first_call_after_minutes)
            due = max(now, start.order.placed_at + delay)
        if settings.verification.window_first_call:
            due = _window(due, settings)
    elif settings.verification.window_first_message:
        due = _window(due, settings)
    return _attempt_at(state, due, settings, now)


def _attempt_at(state: VState, due: datetime, settings: ShopSettings, now: datetime) -> Result:
    if due <= now:
        return _attempt(state, settings, now)
    return _schedule(state, "due", due)


def _attempt(state: VState, settings: ShopSettings, now: datetime) -> Result:
    if _opted_out(state, state.method):
        return _skip_method(state, settings, now)
    attempt = state.attempt + 1
    state = replace(state, attempt=attempt, wrong_input="")
    if state.method == "ivr":
        call = f"{state.stage}:{attempt}"
        state, timer = _schedule(replace(state, open_call=call), "call", now + CALL_TIMEOUT)
        return state, [PlaceCall(call), *timer]
    send = SendMessage(state.method, f"{state.stage}:{attempt}")
    state, timer = _schedule(state, "answer", _answer_wake(state, settings, now))
    return state, [send, *timer]


def _opted_out(state: VState, purpose: str) -> bool:
    return CHANNELS.get(purpose, "") in state.opted_out


def _skip_method(state: VState, settings: ShopSettings, now: datetime) -> Result:
    """The current method would message a channel the customer opted out of: the next."""
    reason = f"the customer opted out of {CHANNELS[state.method]}"
    record = Record("method_skipped", state.method, {"reason": reason})
    state, effects = _begin_stage(state, state.stage + 1, settings, now)
    return state, [record, *effects]


def _answer_wake(state: VState, settings: ShopSettings, sent: datetime) -> datetime:
    """When a message sent at `sent` stops waiting: the next attempt, or the last's answer."""
    retries, interval = _spacing(state.method, settings)
    if state.attempt <= retries:
        return _window(sent + timedelta(minutes=interval), settings)
    return sent + (timedelta(minutes=interval) if interval else LAST_ANSWER_WAIT)


def _section(mode: str, settings: ShopSettings) -> Any:
    """The settings section of a method (the merchant decides with the IVR's tags)."""
    return {
        "ivr": settings.ivr,
        "merchant": settings.ivr,
        "whatsapp": settings.whatsapp,
        "sms_link": settings.fallback.sms_link,
        "missed_call": settings.fallback.missed_call,
        "otp": settings.otp,
    }[mode]


def _spacing(method: str, settings: ShopSettings) -> tuple[int, int]:
    """(retries, minutes between attempts) of a method."""
    section = _section(method, settings)
    return section.retries, section.retry_interval_minutes


def _timer(state: VState, event: Timer, settings: ShopSettings, now: datetime) -> Result:
    if event.seq != state.timer:
        return state, []
    if state.waiting == "final":
        if state.status != UNVERIFIED:
            return state, []
        decided = _clear(replace(state, status=CANCELLED, decided_by="system"))
        hours = settings.verification.cancel_after_hours
        return decided, [
            CancelOrder("system"),
            Record("verification_cancelled", "system", {"reason": f"unverified after {hours} h"}),
        ]
    if state.status != PENDING:
        return state, []
    if state.waiting == "due":
        return _attempt(state, settings, now)
    if state.waiting == "call":
        return _call_not_completed(state, "unknown", settings, now)
    if state.waiting == "answer":
        if state.method == "otp":
            record = Record("otp_not_entered", "otp", {"sent": state.otp_resends + 1})
            state, effects = _begin_stage(state, state.stage + 1, settings, now)
            return state, [record, *effects]
        retries, _ = _spacing(state.method, settings)
        if state.attempt <= retries:
            return _attempt(state, settings, now)
        return _stage_exhausted(state, settings, now)
    return state, []


def _call_not_completed(
    state: VState, status: str, settings: ShopSettings, now: datetime
) -> Result:
    detail = {"attempt": state.attempt, "status": status}
    if state.wrong_input:
        detail["input"] = state.wrong_input
    record = Record("call_not_answered", "ivr", detail)
    state = replace(state, open_call="")
    retries, interval = _spacing("ivr", settings)
    if state.attempt <= retries:
        due = _window(now + timedelta(minutes=interval), settings)
        state, effects = _schedule(state, "due", due)
        return state, [record, *effects]
    state, effects = _stage_exhausted(state, settings, now)
    return state, [record, *effects]


def _call_refused(
    state: VState, event: CallRefused, settings: ShopSettings, now: datetime
) -> Result:
    if event.call != state.open_call:
        return state, []
    kind = "dnd_number" if event.code == DND else "call_refused"
    record = Record(kind, "ivr", {"attempt": state.attempt, "code": event.code})
    # No call can reach this number: the next method starts at once, without the limit tag.
    state, effects = _begin_stage(replace(state, open_call=""), state.stage + 1, settings, now)
    return state, [record, *effects]


def _message_failed(
    state: VState, event: MessageFailed, settings: ShopSettings, now: datetime
) -> Result:
    if event.purpose == "otp":
        current = state.method == "otp" and event.key == f"otp:{state.otp_resends + 1}"
    else:
        current = event.purpose == state.method and event.key == f"{state.stage}:{state.attempt}"
    if not current:
        return state, []
    detail = {"attempt": state.attempt, "code": event.code}
    if event.permanent:
        # No message can reach this number this way: the next method starts at once.
        record = Record("message_refused", state.method, detail)
        state, effects = _begin_stage(state, state.stage + 1, settings, now)
        return state, [record, *effects]
    if state.method == "otp" or state.attempt <= _spacing(state.method, settings)[0]:
        return state, []  # a resend, or the next attempt at its time, may still get through
    record = Record("message_not_sent", state.method, detail)
    state, effects = _stage_exhausted(state, settings, now)
    return state, [record, *effects]


# The calling window at the moment of contact -------------------------------------------


def held_until(purpose: str, key: str, settings: ShopSettings, now: datetime) -> datetime | None:
    """The window start a call or message of this verification must wait for, if it may not
    go now. Retries always wait for the window; first attempts as the settings say. An OTP
    (the customer is at the checkout waiting for it) and the thanks for an answer never do."""
    if purpose == "call":
        first_waits = settings.verification.window_first_call
    elif purpose in ("sms_link", "missed_call", "whatsapp"):
        first_waits = settings.verification.window_first_message
    else:
        return None
    if key.rpartition(":")[2] == "1" and not first_waits:
        return None
    opening = _window(now, settings)
    return opening if opening > now else None


def _window_closed(state: VState, event: WindowClosed, settings: ShopSettings) -> Result:
    if event.purpose == "call":
        if state.waiting != "call" or event.key != state.open_call:
            return state, []
        kind, mode, wake = "call_deferred", "ivr", event.until + CALL_TIMEOUT
    else:
        current = event.purpose == state.method and event.key == f"{state.stage}:{state.attempt}"
        if state.waiting != "answer" or not current:
            return state, []
        kind, mode = "message_deferred", state.method
        wake = _answer_wake(state, settings, event.until)
    if wake == state.timer_at:
        return state, []
    detail = {"attempt": state.attempt, "until": event.until.isoformat()}
    state, timer = _schedule(state, state.waiting, wake)
    return state, [Record(kind, mode, detail), *timer]


def _stage_exhausted(state: VState, settings: ShopSettings, now: datetime) -> Result:
    tag = AddTags((LIMIT_TAGS[state.method],), "system")
    state, effects = _begin_stage(state, state.stage + 1, settings, now)
    return state, [tag, *effects]


def _exhausted(state: VState, settings: ShopSettings, now: datetime) -> Result:
    state = _clear(replace(state, status=UNVERIFIED, stage=len(state.methods)))
    effects: list[Effect] = [Record("verification_unverified", "", {})]
    final = settings.verification
    if final.final_action == "tag":
        effects.append(AddTags((final.final_tag,), "system"))
    elif final.final_action == "cancel":
        state, timer = _schedule(state, "final", now + timedelta(hours=final.cancel_after_hours))
        effects += timer
    return state, effects


# Answers ------------------------------------------------------------------------------


def options(mode: str, settings: ShopSettings) -> dict[str, str]:
    """The actions offered through `mode`, each with the tag it adds (empty tags are not)."""
    if mode == "missed_call":
        return {"confirm": settings.fallback.missed_call.confirm_tag}
    if mode == "otp":
        return {"confirm": settings.otp.verified_tag}
    section = _section(mode, settings)
    offered = {action: getattr(section, f"{action}_tag") for action in DECISIONS}
    return {action: tag for action, tag in offered.items() if tag}


def ivr_keys(settings: ShopSettings) -> dict[str, str]:
    """The keypad key of each action the call offers."""
    ivr = settings.ivr
    keys = {"confirm": ivr.confirm_key, "cancel": ivr.cancel_key, "callback": ivr.callback_key}
    return {action: keys[action] for action in options("ivr", settings)}


def _keypad(state: VState, event: Keypad, settings: ShopSettings, now: datetime) -> Result:
    pressed = {key: action for action, key in ivr_keys(settings).items()}
    action = pressed.get(event.digits, "")
    if action:
        return _answer(state, action, "ivr", settings, now)
    if state.status != PENDING or event.call != state.open_call:
        return state, []
    record = Record("ivr_wrong_input", "ivr", {"attempt": state.attempt, "input": event.digits})
    return replace(state, wrong_input=event.digits or "none"), [record]


def _answer(
    state: VState, action: str, mode: str, settings: ShopSettings, now: datetime
) -> Result:
    if state.status not in ANSWERABLE:
        return state, []
    if mode != "merchant" and mode not in state.methods:
        return state, []
    tag = options(mode, settings).get(action)
    if not tag:
        return state, []
    final = settings.verification
    remove = (
        (final.final_tag,) if state.status == UNVERIFIED and final.final_action == "tag" else ()
    )
    status = DECISIONS[action]
    effects: list[Effect] = [
        Record(f"verification_{status}", mode, {}),
        AddTags((tag,), mode, remove),
    ]
    if action == "cancel" and _section(mode, settings).cancel_in_shopify:
        effects.append(CancelOrder(mode))
    elif action == "callback":
        effects.append(NotifyMerchant("callback_requested", {"mode": mode}))
    elif mode == "missed_call" and _opted_out(state, "missed_call_confirmation"):
        reason = f"the customer opted out of {CHANNELS['missed_call_confirmation']}"
        effects.append(Record("confirmation_skipped", mode, {"reason": reason}))
    elif mode == "missed_call":
        effects.append(SendMessage("missed_call_confirmation", "confirmation"))
    return _clear(replace(state, status=status, decided_by=mode)), effects


# OTP ----------------------------------------------------------------------------------


def _send_otp(state: VState, otp: OtpIssue, settings: ShopSettings, now: datetime) -> Result:
    sent = state.otp_resends + 1
    state = replace(
        state,
        otp_hash=otp.code_hash,
        otp_sent_at=now,
        otp_expires_at=now + timedelta(minutes=settings.otp.expiry_minutes),
    )
    state, deadline = _schedule(state, "answer", now + OTP_ANSWER_WAIT)
    return state, [SendMessage("otp", f"otp:{sent}", otp_nonce=otp.nonce), *deadline]


def otp_expired(state: VState, now: datetime) -> bool:
    return state.otp_expires_at is None or now >= state.otp_expires_at


def otp_resend_wait(state: VState, settings: ShopSettings, now: datetime) -> float:
    """Seconds before a resend is allowed (0 when it is)."""
    if state.otp_sent_at is None:
        return 0.0
    ready = state.otp_sent_at + timedelta(seconds=settings.otp.resend_after_seconds)
    return max(0.0, (ready - now).total_seconds())


def _otp_entered(
    state: VState, event: OtpEntered, settings: ShopSettings, now: datetime
) -> Result:
    if state.method != "otp" or otp_expired(state, now):
        return state, []
    if hmac.compare_digest(event.code_hash, state.otp_hash):
        tag = settings.otp.verified_tag
        effects: list[Effect] = [
            Record("verification_confirmed", "otp", {}),
            AddTags((tag,), "otp"),
        ]
        return _clear(replace(state, status=CONFIRMED, decided_by="otp")), effects
    wrong = state.otp_wrong + 1
    state = replace(state, otp_wrong=wrong)
    record = Record("otp_wrong", "otp", {"wrong": wrong})
    if wrong <= settings.otp.wrong_attempts_limit:
        return state, [record]
    state, effects = _exhausted(replace(state, otp_hash=""), settings, now)
    return state, [record, AddTags((OTP_WRONG_LIMIT,), "system"), *effects]


def _otp_resend(state: VState, event: OtpResend, settings: ShopSettings, now: datetime) -> Result:
    if state.method != "otp" or otp_resend_wait(state, settings, now) > 0:
        return state, []
    if state.otp_resends >= settings.otp.resend_limit:
        record = Record("otp_resend_refused", "otp", {"resends": state.otp_resends})
        return state, [record, AddTags((OTP_RESEND_LIMIT,), "system")]
    if _opted_out(state, "otp"):
        return _skip_method(state, settings, now)
    state = replace(state, otp_resends=state.otp_resends + 1)
    return _send_otp(state, event.otp, settings, now)


# Helpers ------------------------------------------------------------------------------


def _schedule(state: VState, waiting: str, at: datetime) -> Result:
    seq = state.timer + 1
    return replace(state, waiting=waiting, timer=seq, timer_at=at), [StartTimer(seq, at)]


def _clear(state: VState) -> VState:
    """No live timer and no call in flight: whatever was scheduled becomes stale."""
    return replace(state, waiting="", timer=state.timer + 1, timer_at=None, open_call="")


def _window(moment: datetime, settings: ShopSettings) -> datetime:
    ivr = settings.ivr
    return in_window(moment, ivr.timezone, ivr.window_start_hour, ivr.window_end_hour)
