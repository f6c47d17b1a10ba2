"""The verification flow as transition tables: (settings, state, event) -> (state, effects).

Pure: fixed UTC instants, no I/O, no sleeps. Shop times in the comments are Asia/Kolkata
(UTC+05:30, the shop's own zone here) unless a row says otherwise.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from flows.shops.settings import ShopSettings
from flows.verification.flow import (
    CALLBACK,
    CANCELLED,
    CONFIRMED,
    FALLBACK_LIMIT,
    IVR_LIMIT,
    OTP_ANSWER_WAIT,
    OTP_RESEND_LIMIT,
    OTP_WRONG_LIMIT,
    PENDING,
    SKIPPED,
    UNVERIFIED,
    WHATSAPP_LIMIT,
    AddTags,
    Answer,
    CallEnded,
    CallRefused,
    CancelOrder,
    Effect,
    Event,
    Keypad,
    MessageFailed,
    NotifyMerchant,
    OrderChanged,
    OrderFacts,
    OtpEntered,
    OtpIssue,
    OtpResend,
    PlaceCall,
    Record,
    SendMessage,
    Start,
    StartTimer,
    Timer,
    VState,
    WindowClosed,
    held_until,
    screen,
    step,
)
from providers.shopify.orders import NO_VALID_PHONE

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # Monday 11:30 in Kolkata, inside the 9-21 window
NIGHT = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)  # 22:00 in Kolkata, after the window
NEXT_MORNING = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)  # 09:00 in Kolkata, the day after
PHONE = "+919876543210"
CALL_TIMEOUT = timedelta(minutes=15)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def shop(**sections: Any) -> ShopSettings:
    """Settings as the runtime hands them to the flow (`shop_config.load`): an empty
    `ivr.timezone` resolved to the shop's own zone, here Asia/Kolkata."""
    ivr = {"timezone": "Asia/Kolkata", **sections.pop("ivr", {})}
    return ShopSettings.model_validate({**sections, "ivr": ivr})


def order(**changes: Any) -> OrderFacts:
    facts = OrderFacts(
        amount=Decimal("499.00"),
        gateways=("Cash on Delivery (COD)",),
        tags=(),
        phone=PHONE,
        phone_problem="",
        cancelled=False,
        financial_status="pending",
        placed_at=T0,
        previous_orders=0,
    )
    return replace(facts, **changes)


START = Start(order())
STARTED_IVR = Record("verification_started", "", {"methods": ["ivr"]})
UNVERIFIED_RECORD = Record("verification_unverified", "", {})


class _Fire:
    def __repr__(self) -> str:
        return "FIRE"


FIRE = _Fire()  # the live timer fires at its due time
Item = Event | _Fire | tuple[datetime, Event]


def trace(
    settings: ShopSettings, items: list[Item], state: VState | None = None, now: datetime = T0
) -> tuple[VState, list[tuple[datetime, Effect]]]:
    """Fold `step` over `items`: `(moment, event)`, FIRE (the live timer, at its due time), or a
    bare event (at the moment of the previous one). Returns the state and (moment, effect)s."""
    state = state or VState()
    timeline: list[tuple[datetime, Effect]] = []
    for item in items:
        if isinstance(item, _Fire):
            assert state.timer_at is not None, f"no live timer to fire in {state}"
            now, event = state.timer_at, Timer(state.timer)
        elif isinstance(item, tuple):
            now, event = item
        else:
            event = item
        state, effects = step(state, event, settings, now)
        timeline += [(now, effect) for effect in effects]
    return state, timeline


def run(
    settings: ShopSettings, items: list[Item], state: VState | None = None, now: datetime = T0
) -> tuple[VState, list[Effect]]:
    state, timeline = trace(settings, items, state, now)
    return state, [effect for _, effect in timeline]


def only(kind: type, effects: list[Effect]) -> list[Any]:
    return [effect for effect in effects if isinstance(effect, kind)]


def tags_added(effects: list[Effect]) -> list[str]:
    return [tag for effect in only(AddTags, effects) for tag in effect.tags]


def unchanged(settings: ShopSettings, state: VState, event: Event, now: datetime) -> bool:
    return step(state, event, settings, now) == (state, [])


# Eligibility --------------------------------------------------------------------------

VERIFY = ("verify", "")
NOT_COD = ("skip", "not a cash-on-delivery order")
BLOCK = {"eligibility": {"blocked_phones": [PHONE]}}

ELIGIBILITY = [
    pytest.param({}, {}, VERIFY, id="cod-default-gateway"),
    pytest.param({}, {"gateways": ("COD",)}, VERIFY, id="gateway-case-insensitive"),
    pytest.param({}, {"gateways": (" Cash On Delivery ",)}, VERIFY, id="gateway-spaces"),
    pytest.param({}, {"gateways": ("gift_card", "cod")}, VERIFY, id="any-gateway-is-cod"),
    pytest.param(
        {}, {"gateways": ("shopify_payments",), "financial_status": "paid"}, NOT_COD, id="prepaid"
    ),
    pytest.param(
        {"eligibility": {"cod_gateways": ["Pay on Delivery"]}},
        {"gateways": ("PAY ON DELIVERY",)},
        VERIFY,
        id="custom-cod-gateway",
    ),
    pytest.param(
        {"eligibility": {"cod_gateways": ["Pay on Delivery"]}},
        {},
        NOT_COD,
        id="custom-gateways-replace-defaults",
    ),
    pytest.param(
        {"verification": {"for_orders": "all"}},
        {"gateways": ("shopify_payments",), "financial_status": "paid"},
        VERIFY,
        id="for-all-orders-verifies-prepaid",
    ),
    pytest.param(
        {}, {"financial_status": "paid"}, ("skip", "order is already paid"), id="paid-cod"
    ),
    pytest.param(
        {},
        {"financial_status": "partially_paid"},
        ("skip", "order is already paid"),
        id="partially-paid-cod",
    ),
    pytest.param(
        {"eligibility": {"min_amount": "500"}},
        {"amount": Decimal("499.99")},
        ("skip", "amount below the minimum of 500"),
        id="below-min",
    ),
    pytest.param(
        {"eligibility": {"min_amount": "500"}}, {"amount": Decimal("500")}, VERIFY, id="at-min"
    ),
    pytest.param(
        {"eligibility": {"max_amount": "5000"}},
        {"amount": Decimal("5000.01")},
        ("skip", "amount above the maximum of 5000"),
        id="above-max",
    ),
    pytest.param(
        {"eligibility": {"max_amount": "5000"}}, {"amount": Decimal("5000")}, VERIFY, id="at-max"
    ),
    pytest.param(
        {"eligibility": {"skip_tags": ["vip"]}},
        {"tags": ("wholesale", "VIP")},
        ("skip", "order is tagged vip"),
        id="skip-tag-case-insensitive",
    ),
    pytest.param(
        {"eligibility": {"skip_tags": ["vip"]}}, {"tags": ("wholesale",)}, VERIFY, id="other-tag"
    ),
    pytest.param(
        {"eligibility": {"first_time_customers_only": True}},
        {"previous_orders": 1},
        ("skip", "not the customer's first order"),
        id="first-time-only-returning-customer",
    ),
    pytest.param(
        {"eligibility": {"first_time_customers_only": True}},
        {"previous_orders": 0},
        VERIFY,
        id="first-time-only-new-customer",
    ),
    pytest.param({}, {"previous_orders": 7}, VERIFY, id="returning-customer-by-default"),
    pytest.param({}, {"cancelled": True}, ("skip", "order is cancelled"), id="cancelled"),
    pytest.param(
        {},
        {"phone": "", "phone_problem": NO_VALID_PHONE},
        ("skip", NO_VALID_PHONE),
        id="no-usable-phone",
    ),
    pytest.param({}, {"phone": ""}, ("skip", "no usable phone number"), id="no-phone-no-reason"),
    pytest.param(
        {},
        {"placed_at": T0 - timedelta(days=2, seconds=1)},
        ("skip", "order was placed too long ago to verify"),
        id="too-old",
    ),
    pytest.param({}, {"placed_at": T0 - timedelta(days=2)}, VERIFY, id="two-days-old"),
    pytest.param(
        BLOCK, {}, ("blocked", "the phone number is on the shop's block list"), id="blocked"
    ),
    pytest.param(
        {"eligibility": {"blocked_phones": ["+919999999999"]}}, {}, VERIFY, id="other-blocked"
    ),
]


@pytest.mark.parametrize(("document", "changes", "verdict"), ELIGIBILITY)
def test_screen(document: dict[str, Any], changes: dict[str, Any], verdict: tuple) -> None:
    assert screen(order(**changes), shop(**document), T0) == verdict


DUPLICATE_TAGS = [
    pytest.param("cod_confirmed", {}, id="ivr-confirm"),
    pytest.param("COD_Cancelled", {}, id="cancel-any-case"),
    pytest.param("cod_callback", {}, id="callback"),
    pytest.param("otp_verified", {}, id="otp"),
    pytest.param("cod_unconfirmed", {}, id="final-tag"),
    pytest.param(IVR_LIMIT, {}, id="ivr-limit"),
    pytest.param(FALLBACK_LIMIT, {}, id="fallback-limit"),
    pytest.param(WHATSAPP_LIMIT, {}, id="whatsapp-limit"),
    pytest.param(OTP_WRONG_LIMIT, {}, id="otp-wrong-limit"),
    pytest.param("wa_yes", {"whatsapp": {"confirm_tag": "wa_yes"}}, id="whatsapp-custom"),
    pytest.param(
        "link_no", {"fallback": {"sms_link": {"cancel_tag": "link_no"}}}, id="sms-link-custom"
    ),
    pytest.param(
        "missed_ok",
        {"fallback": {"missed_call": {"confirm_tag": "missed_ok"}}},
        id="missed-call-custom",
    ),
]


@pytest.mark.parametrize(("tag", "document"), DUPLICATE_TAGS)
def test_an_order_tagged_by_a_verification_is_not_verified_again(
    tag: str, document: dict[str, Any]
) -> None:
    verdict = screen(order(tags=("gift", tag)), shop(**document), T0)
    assert verdict == ("skip", f"already verified (tagged {tag.lower()})")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"cancelled": True}, "order is cancelled", id="cancelled"),
        pytest.param({"phone": "", "phone_problem": NO_VALID_PHONE}, NO_VALID_PHONE, id="phone"),
        pytest.param({"gateways": ("shopify_payments",)}, NOT_COD[1], id="prepaid"),
        pytest.param({"tags": ("cod_confirmed",)}, "already verified (tagged cod_confirmed)"),
    ],
)
def test_start_of_an_ineligible_order_records_why(changes: dict[str, Any], reason: str) -> None:
    state, effects = step(VState(), Start(order(**changes)), shop(), T0)
    assert state == VState(status=SKIPPED, reason=reason)
    assert effects == [Record("verification_skipped", "", {"reason": reason})]


BLOCKED = "the phone number is on the shop's block list"


@pytest.mark.parametrize(
    ("eligibility", "status", "actions"),
    [
        pytest.param({}, SKIPPED, [AddTags(("blocked_phone",), "system")], id="tag"),
        pytest.param(
            {"blocked_action": "cancel", "blocked_tag": "fraud_risk"},
            CANCELLED,
            [AddTags(("fraud_risk",), "system"), CancelOrder("system")],
            id="cancel",
        ),
    ],
)
def test_start_of_a_blocked_phone(
    eligibility: dict[str, Any], status: str, actions: list[Effect]
) -> None:
    settings = shop(eligibility={"blocked_phones": [PHONE], **eligibility})
    state, effects = step(VState(), START, settings, T0)
    decided_by = "system" if status == CANCELLED else ""
    assert state == VState(status=status, decided_by=decided_by, reason=BLOCKED)
    assert effects == [Record("verification_skipped", "", {"reason": BLOCKED}), *actions]


# IVR: the first call ------------------------------------------------------------------

AFTER_30 = {"first_call": "after", "first_call_after_minutes": 30}
NO_FIRST_WINDOW = {"window_first_call": False}
EVENING = datetime(2026, 3, 2, 15, 15, tzinfo=UTC)  # 20:45 in Kolkata


@pytest.mark.parametrize(
    ("document", "now", "first"),
    [
        pytest.param({}, T0, [PlaceCall("0:1"), StartTimer(1, T0 + CALL_TIMEOUT)], id="immediate"),
        pytest.param(
            {}, NIGHT, [StartTimer(1, NEXT_MORNING)], id="immediate-outside-window-waits"
        ),
        pytest.param(
            {"verification": NO_FIRST_WINDOW},
            NIGHT,
            [PlaceCall("0:1"), StartTimer(1, NIGHT + CALL_TIMEOUT)],
            id="immediate-window-off-calls-at-night",
        ),
        pytest.param(
            {"ivr": AFTER_30}, T0, [StartTimer(1, T0 + minutes(30))], id="after-30-minutes"
        ),
        pytest.param(
            {"ivr": AFTER_30}, EVENING, [StartTimer(1, NEXT_MORNING)], id="after-past-window"
        ),
        pytest.param(
            {"ivr": AFTER_30, "verification": NO_FIRST_WINDOW},
            EVENING,
            [StartTimer(1, EVENING + minutes(30))],
            id="after-window-off",
        ),
    ],
)
def test_first_call(document: dict[str, Any], now: datetime, first: list[Effect]) -> None:
    state, effects = step(VState(), Start(order(placed_at=now)), shop(**document), now)
    assert effects == [STARTED_IVR, *first]
    assert state.methods == ("ivr",)
    assert state.status == PENDING


@pytest.mark.parametrize(
    ("document", "now", "due"),
    [
        pytest.param({}, NIGHT, NEXT_MORNING, id="window"),
        pytest.param({"ivr": AFTER_30}, T0, T0 + minutes(30), id="after"),
    ],
)
def test_a_delayed_first_call_is_placed_when_its_timer_fires(
    document: dict[str, Any], now: datetime, due: datetime
) -> None:
    settings = shop(**document)
    state, timeline = trace(settings, [(now, Start(order(placed_at=now))), FIRE])
    assert timeline[-2:] == [(due, PlaceCall("0:1")), (due, StartTimer(2, due + CALL_TIMEOUT))]
    assert (state.open_call, state.attempt, state.waiting) == ("0:1", 1, "call")


def test_first_call_after_counts_from_the_order_placement() -> None:
    late = T0 + minutes(10)
    _, effects = step(VState(), Start(order(placed_at=T0)), shop(ivr=AFTER_30), late)
    assert effects == [STARTED_IVR, StartTimer(1, T0 + minutes(30))]


# IVR: keypad answers ------------------------------------------------------------------

CONFIRMED_IVR = [Record("verification_confirmed", "ivr", {}), AddTags(("cod_confirmed",), "ivr")]
CANCELLED_IVR = [Record("verification_cancelled", "ivr", {}), AddTags(("cod_cancelled",), "ivr")]


@pytest.mark.parametrize(
    ("ivr", "digits", "status", "effects"),
    [
        pytest.param({}, "1", CONFIRMED, CONFIRMED_IVR, id="1-confirms"),
        pytest.param({}, "2", CANCELLED, CANCELLED_IVR, id="2-cancels"),
        pytest.param(
            {"cancel_in_shopify": True},
            "2",
            CANCELLED,
            [*CANCELLED_IVR, CancelOrder("ivr")],
            id="2-cancels-in-shopify",
        ),
        pytest.param(
            {},
            "3",
            CALLBACK,
            [
                Record("verification_callback_requested", "ivr", {}),
                AddTags(("cod_callback",), "ivr"),
                NotifyMerchant("callback_requested", {"mode": "ivr"}),
            ],
            id="3-callback",
        ),
        pytest.param(
            {"confirm_tag": "ivr_yes"},
            "1",
            CONFIRMED,
            [Record("verification_confirmed", "ivr", {}), AddTags(("ivr_yes",), "ivr")],
            id="custom-tag",
        ),
        pytest.param(
            {"confirm_key": "9", "cancel_key": "8", "callback_key": "7"},
            "9",
            CONFIRMED,
            CONFIRMED_IVR,
            id="custom-confirm-key",
        ),
        pytest.param(
            {"confirm_key": "9", "cancel_key": "8", "callback_key": "7"},
            "8",
            CANCELLED,
            CANCELLED_IVR,
            id="custom-cancel-key",
        ),
    ],
)
def test_keypad_decides(
    ivr: dict[str, Any], digits: str, status: str, effects: list[Effect]
) -> None:
    settings = shop(ivr=ivr)
    calling, _ = run(settings, [START])
    state, out = step(calling, Keypad("0:1", digits), settings, T0 + minutes(1))
    assert out == effects
    assert (state.status, state.decided_by, state.open_call, state.waiting) == (
        status,
        "ivr",
        "",
        "",
    )
    # the call's timeout timer is stale now
    assert unchanged(settings, state, Timer(calling.timer), calling.timer_at)


CUSTOM_KEYS = {"confirm_key": "9", "cancel_key": "8", "callback_key": "7"}


@pytest.mark.parametrize(
    ("ivr", "digits", "wrong"),
    [
        pytest.param({}, "5", "5", id="unknown-key"),
        pytest.param({}, "", "none", id="no-input"),
        pytest.param({}, "12", "12", id="two-keys"),
        pytest.param(CUSTOM_KEYS, "1", "1", id="default-key-with-custom-keys"),
        pytest.param({"cancel_tag": ""}, "2", "2", id="cancel-without-tag"),
        pytest.param({"callback_tag": ""}, "3", "3", id="callback-without-tag"),
    ],
)
def test_wrong_keypad_input_is_recorded_and_the_call_is_retried(
    ivr: dict[str, Any], digits: str, wrong: str
) -> None:
    settings = shop(ivr=ivr)
    calling, _ = run(settings, [START])
    state, effects = step(calling, Keypad("0:1", digits), settings, T0 + minutes(1))
    assert effects == [Record("ivr_wrong_input", "ivr", {"attempt": 1, "input": digits})]
    assert state == replace(calling, wrong_input=wrong)

    ended = T0 + minutes(2)
    state, effects = step(state, CallEnded("0:1", "completed"), settings, ended)
    detail = {"attempt": 1, "status": "completed", "input": wrong}
    assert effects == [
        Record("call_not_answered", "ivr", detail),
        StartTimer(2, ended + minutes(30)),
    ]
    assert state.status == PENDING


# IVR: calls not completed, retries, limits --------------------------------------------


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled", "completed"])
def test_a_call_not_completed_is_retried_after_the_interval(status: str) -> None:
    settings = shop(ivr={"retries": 2, "retry_interval_minutes": 40})
    ended = T0 + minutes(1)
    state, timeline = trace(settings, [START, (ended, CallEnded("0:1", status)), FIRE])
    retry = ended + minutes(40)
    assert timeline[3:] == [
        (ended, Record("call_not_answered", "ivr", {"attempt": 1, "status": status})),
        (ended, StartTimer(2, retry)),
        (retry, PlaceCall("0:2")),
        (retry, StartTimer(3, retry + CALL_TIMEOUT)),
    ]
    assert (state.open_call, state.attempt) == ("0:2", 2)


def test_a_call_that_never_reports_counts_as_not_completed() -> None:
    state, timeline = trace(shop(), [START, FIRE])
    timeout = T0 + CALL_TIMEOUT
    assert timeline[3:] == [
        (timeout, Record("call_not_answered", "ivr", {"attempt": 1, "status": "unknown"})),
        (timeout, StartTimer(2, timeout + minutes(30))),
    ]
    assert (state.open_call, state.waiting) == ("", "due")


def no_answers(calls: int, stage: int = 0) -> list[Item]:
    """Every call of the stage ends unanswered; the retries' timers fire in between."""
    items: list[Item] = []
    for attempt in range(1, calls + 1):
        items += [CallEnded(f"{stage}:{attempt}", "no-answer"), FIRE]
    return items[:-1]


@pytest.mark.parametrize("retries", range(6))
def test_the_ivr_makes_one_call_plus_its_retries(retries: int) -> None:
    settings = shop(ivr={"retries": retries, "retry_interval_minutes": 10 if retries else 0})
    state, effects = run(settings, [START, *no_answers(retries + 1)])
    assert only(PlaceCall, effects) == [PlaceCall(f"0:{n}") for n in range(1, retries + 2)]
    assert effects[-2:] == [AddTags((IVR_LIMIT,), "system"), UNVERIFIED_RECORD]
    assert state.status == UNVERIFIED


def test_no_retries_means_no_retry() -> None:
    settings = shop(ivr={"retries": 0, "retry_interval_minutes": 0})
    calling, _ = run(settings, [START])
    state, effects = step(calling, CallEnded("0:1", "busy"), settings, T0 + minutes(1))
    assert effects == [
        Record("call_not_answered", "ivr", {"attempt": 1, "status": "busy"}),
        AddTags((IVR_LIMIT,), "system"),
        UNVERIFIED_RECORD,
    ]
    assert (state.status, state.waiting, state.timer_at) == (UNVERIFIED, "", None)


@pytest.mark.parametrize(
    ("fallback", "status", "after"),
    [
        pytest.param({}, UNVERIFIED, [UNVERIFIED_RECORD], id="no-fallback"),
        pytest.param(
            {"mode": "sms_link"},
            PENDING,
            [SendMessage("sms_link", "1:1"), StartTimer(6, T0 + minutes(121))],
            id="sms-link",
        ),
        pytest.param(
            {"mode": "missed_call"},
            PENDING,
            [SendMessage("missed_call", "1:1"), StartTimer(6, T0 + minutes(121))],
            id="missed-call",
        ),
    ],
)
def test_when_the_retries_are_used_up_the_fallback_starts(
    fallback: dict[str, Any], status: str, after: list[Effect]
) -> None:
    settings = shop(fallback=fallback)  # ivr: 2 retries, 30 min apart
    items = [START, *no_answers(3)]
    items[-1] = (T0 + minutes(91), items[-1])  # the third call ends at 13:01
    state, effects = run(settings, items)
    assert effects[-len(after) - 2 :] == [
        Record("call_not_answered", "ivr", {"attempt": 3, "status": "no-answer"}),
        AddTags((IVR_LIMIT,), "system"),
        *after,
    ]
    assert state.status == status


@pytest.mark.parametrize(
    ("code", "kind"), [("DND", "dnd_number"), ("INVALID_NUMBER", "call_refused")]
)
@pytest.mark.parametrize(
    ("fallback", "status", "after"),
    [
        pytest.param({}, UNVERIFIED, [UNVERIFIED_RECORD], id="no-fallback"),
        pytest.param(
            {"mode": "sms_link"},
            PENDING,
            [SendMessage("sms_link", "1:1"), StartTimer(2, T0 + minutes(31))],
            id="sms-link",
        ),
    ],
)
def test_a_refused_call_moves_to_the_fallback_at_once_without_the_limit_tag(
    code: str, kind: str, fallback: dict[str, Any], status: str, after: list[Effect]
) -> None:
    settings = shop(fallback=fallback)
    calling, _ = run(settings, [START])
    state, effects = step(calling, CallRefused("0:1", code), settings, T0 + minutes(1))
    assert effects == [Record(kind, "ivr", {"attempt": 1, "code": code}), *after]
    assert state.status == status
    assert IVR_LIMIT not in tags_added(effects)
    # no more calls: the old call's end and its timeout timer change nothing
    assert unchanged(settings, state, CallEnded("0:1", "no-answer"), T0 + minutes(2))
    assert unchanged(settings, state, Timer(calling.timer), T0 + CALL_TIMEOUT)


RETRYING = [START, CallEnded("0:1", "busy")]  # 0:1 ended; the retry waits on timer 2
SECOND_CALL = [*RETRYING, FIRE]  # 0:2 is in flight, timer 3 is its timeout


@pytest.mark.parametrize(
    ("document", "before", "event"),
    [
        pytest.param({}, RETRYING, Timer(1), id="old-call-timeout"),
        pytest.param({}, RETRYING, Timer(7), id="unknown-timer"),
        pytest.param({}, RETRYING, CallEnded("0:1", "no-answer"), id="call-ended-twice"),
        pytest.param({}, SECOND_CALL, CallEnded("0:1", "completed"), id="old-call-ended"),
        pytest.param({}, SECOND_CALL, CallRefused("0:1", "DND"), id="old-call-refused"),
        pytest.param({}, SECOND_CALL, Keypad("0:1", "7"), id="old-call-wrong-input"),
        pytest.param({}, SECOND_CALL, Timer(2), id="old-retry-timer"),
        pytest.param({}, [START, Keypad("0:1", "1")], Answer("cancel", "ivr"), id="after-confirm"),
        pytest.param(
            {}, [START, Keypad("0:1", "2")], Keypad("0:1", "1"), id="keypad-after-cancel"
        ),
        pytest.param({}, [START, Keypad("0:1", "3")], Keypad("0:1", "1"), id="after-callback"),
        pytest.param({}, [START, Keypad("0:1", "1")], Timer(1), id="timer-after-decision"),
        pytest.param(
            {}, [START, Keypad("0:1", "1")], CallEnded("0:1", "completed"), id="end-after-decision"
        ),
        pytest.param(
            {"fallback": {"mode": "sms_link"}},
            [START, Keypad("0:1", "1")],
            Answer("cancel", "sms_link"),
            id="link-after-ivr-confirm",
        ),
        pytest.param(
            {}, [START, Keypad("0:1", "1")], Answer("cancel", "merchant"), id="merchant-after"
        ),
        pytest.param(
            {}, [START, Keypad("0:1", "1")], OrderChanged("order cancelled"), id="changed-after"
        ),
    ],
)
def test_late_and_repeated_events_change_nothing(
    document: dict[str, Any], before: list[Item], event: Event
) -> None:
    settings = shop(**document)
    state, _ = run(settings, before)
    assert unchanged(settings, state, event, T0 + minutes(50))


def test_a_valid_key_on_a_later_call_decides() -> None:
    settings = shop()
    state, _ = run(settings, SECOND_CALL)
    state, effects = step(state, Keypad("0:2", "1"), settings, T0 + minutes(32))
    assert effects == CONFIRMED_IVR
    assert state.status == CONFIRMED


# IVR: retries inside the calling window (exact instants) ------------------------------


@pytest.mark.parametrize(
    ("zone", "ended", "due"),
    [
        # Kolkata: 20:50 + 20 min = 21:10, past the window -> the next day 09:00
        pytest.param(
            "Asia/Kolkata",
            datetime(2026, 3, 2, 15, 20, tzinfo=UTC),
            datetime(2026, 3, 3, 3, 30, tzinfo=UTC),
            id="kolkata-20:50-next-day-09:00",
        ),
        # 20:40 + 20 min = 21:00: the end hour is outside the window
        pytest.param(
            "Asia/Kolkata",
            datetime(2026, 3, 2, 15, 10, tzinfo=UTC),
            datetime(2026, 3, 3, 3, 30, tzinfo=UTC),
            id="kolkata-lands-on-end-hour",
        ),
        # 20:30 + 20 min = 20:50, inside
        pytest.param(
            "Asia/Kolkata",
            datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
            datetime(2026, 3, 2, 15, 20, tzinfo=UTC),
            id="kolkata-inside",
        ),
        # 07:00 + 20 min = 07:20, before the start -> the same day 09:00
        pytest.param(
            "Asia/Kolkata",
            datetime(2026, 3, 2, 1, 30, tzinfo=UTC),
            datetime(2026, 3, 2, 3, 30, tzinfo=UTC),
            id="kolkata-before-start-same-day",
        ),
        # New York, spring: Sat 2026-03-07 20:50 EST (UTC-5) -> Sun 09:00 EDT (UTC-4)
        pytest.param(
            "America/New_York",
            datetime(2026, 3, 8, 1, 50, tzinfo=UTC),
            datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
            id="new-york-spring-forward",
        ),
        # on the change day itself, 01:30 EST + 20 min -> 09:00 EDT the same day
        pytest.param(
            "America/New_York",
            datetime(2026, 3, 8, 6, 30, tzinfo=UTC),
            datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
            id="new-york-spring-forward-early-morning",
        ),
        # New York, autumn: Sat 2026-10-31 20:50 EDT (UTC-4) -> Sun 09:00 EST (UTC-5)
        pytest.param(
            "America/New_York",
            datetime(2026, 11, 1, 0, 50, tzinfo=UTC),
            datetime(2026, 11, 1, 14, 0, tzinfo=UTC),
            id="new-york-fall-back",
        ),
    ],
)
def test_a_retry_waits_for_the_calling_window(zone: str, ended: datetime, due: datetime) -> None:
    settings = shop(
        ivr={"timezone": zone, "retry_interval_minutes": 20},
        verification={"window_first_call": False},
    )
    start = Start(order(placed_at=ended))
    state, effects = run(settings, [(ended, start), CallEnded("0:1", "no-answer")])
    assert effects[-1] == StartTimer(2, due)
    assert (state.waiting, state.timer_at) == ("due", due)


def test_no_retry_at_20_50_when_retries_are_0() -> None:
    ended = datetime(2026, 3, 2, 15, 20, tzinfo=UTC)  # 20:50 in Kolkata
    settings = shop(
        ivr={"retries": 0, "retry_interval_minutes": 0},
        verification={"window_first_call": False},
    )
    state, effects = run(settings, [(ended, START), CallEnded("0:1", "no-answer")])
    assert only(StartTimer, effects) == [StartTimer(1, ended + CALL_TIMEOUT)]
    assert only(PlaceCall, effects) == [PlaceCall("0:1")]
    assert state.status == UNVERIFIED


# SMS link and missed call fallbacks ---------------------------------------------------


def fallback(
    mode: str,
    section: dict[str, Any] | None = None,
    ivr: dict[str, Any] | None = None,
    **more: Any,
) -> ShopSettings:
    """IVR without retries, then `mode`: the fallback starts when call 0:1 ends."""
    return shop(
        ivr={"retries": 0, "retry_interval_minutes": 0, **(ivr or {})},
        fallback={"mode": mode, mode: section or {}},
        **more,
    )


def in_fallback(settings: ShopSettings, now: datetime = T0) -> VState:
    state, _ = run(settings, [(now, Start(order(placed_at=now))), CallEnded("0:1", "busy")])
    assert state.method == settings.fallback.mode, state
    return state


@pytest.mark.parametrize(
    ("mode", "section", "start", "sends", "limit"),
    [
        pytest.param(
            "sms_link",
            {"retries": 2, "retry_interval_minutes": 30},
            T0,
            [T0, T0 + minutes(30), T0 + minutes(60)],
            T0 + minutes(90),
            id="sms-link-2-retries",
        ),
        pytest.param(
            "sms_link",
            {"retries": 1, "retry_interval_minutes": 30},
            EVENING,
            [EVENING, NEXT_MORNING],
            NEXT_MORNING + minutes(30),
            id="sms-link-resend-waits-for-window",
        ),
        pytest.param(
            "sms_link",
            {"retries": 0, "retry_interval_minutes": 0},
            T0,
            [T0],
            T0 + minutes(60),
            id="sms-link-no-retry-waits-an-hour",
        ),
        pytest.param(
            "missed_call",
            {"retries": 1, "retry_interval_minutes": 10},
            T0,
            [T0, T0 + minutes(10)],
            T0 + minutes(20),
            id="missed-call-1-retry",
        ),
        pytest.param(
            "missed_call",
            {"retries": 3, "retry_interval_minutes": 60},
            datetime(2026, 3, 2, 13, 30, tzinfo=UTC),  # 19:00
            [
                datetime(2026, 3, 2, 13, 30, tzinfo=UTC),  # 19:00
                datetime(2026, 3, 2, 14, 30, tzinfo=UTC),  # 20:00
                NEXT_MORNING,  # 21:00 is outside: 09:00
                NEXT_MORNING + minutes(60),  # 10:00
            ],
            NEXT_MORNING + minutes(120),
            id="missed-call-across-the-night",
        ),
    ],
)
def test_fallback_messages_are_resent_then_the_limit_tag(
    mode: str, section: dict[str, Any], start: datetime, sends: list[datetime], limit: datetime
) -> None:
    settings = fallback(mode, section)
    state, timeline = trace(settings, [FIRE] * len(sends), in_fallback(settings, start))
    sent = [(now, effect) for now, effect in timeline if isinstance(effect, SendMessage)]
    assert sent == [(now, SendMessage(mode, f"1:{n}")) for n, now in enumerate(sends[1:], 2)]
    assert timeline[-2:] == [
        (limit, AddTags((FALLBACK_LIMIT,), "system")),
        (limit, UNVERIFIED_RECORD),
    ]
    assert (state.status, state.waiting, state.timer_at) == (UNVERIFIED, "", None)


@pytest.mark.parametrize(
    ("window_first_message", "first"),
    [
        pytest.param(False, [SendMessage("sms_link", "1:1")], id="at-once"),
        pytest.param(True, [StartTimer(2, NEXT_MORNING)], id="waits-for-window"),
    ],
)
def test_the_first_fallback_message_and_the_window(
    window_first_message: bool, first: list[Effect]
) -> None:
    settings = fallback(
        "sms_link",
        verification={"window_first_call": False, "window_first_message": window_first_message},
    )
    calling, _ = run(settings, [(NIGHT, Start(order(placed_at=NIGHT)))])
    _, effects = step(calling, CallEnded("0:1", "busy"), settings, NIGHT)
    assert effects[2 : 2 + len(first)] == first


LINK_TAGS = {"confirm_tag": "link_yes", "cancel_tag": "link_no", "callback_tag": "link_call"}


@pytest.mark.parametrize(
    ("section", "action", "status", "effects"),
    [
        pytest.param(
            LINK_TAGS,
            "confirm",
            CONFIRMED,
            [
                Record("verification_confirmed", "sms_link", {}),
                AddTags(("link_yes",), "sms_link"),
            ],
            id="confirm",
        ),
        pytest.param(
            LINK_TAGS,
            "cancel",
            CANCELLED,
            [Record("verification_cancelled", "sms_link", {}), AddTags(("link_no",), "sms_link")],
            id="cancel",
        ),
        pytest.param(
            {**LINK_TAGS, "cancel_in_shopify": True},
            "cancel",
            CANCELLED,
            [
                Record("verification_cancelled", "sms_link", {}),
                AddTags(("link_no",), "sms_link"),
                CancelOrder("sms_link"),
            ],
            id="cancel-in-shopify",
        ),
        pytest.param(
            LINK_TAGS,
            "callback",
            CALLBACK,
            [
                Record("verification_callback_requested", "sms_link", {}),
                AddTags(("link_call",), "sms_link"),
                NotifyMerchant("callback_requested", {"mode": "sms_link"}),
            ],
            id="callback",
        ),
    ],
)
def test_link_answers(
    section: dict[str, Any], action: str, status: str, effects: list[Effect]
) -> None:
    settings = fallback("sms_link", section, ivr={"cancel_in_shopify": True})
    waiting = in_fallback(settings)
    state, out = step(waiting, Answer(action, "sms_link"), settings, T0 + minutes(5))
    assert out == effects
    assert (state.status, state.decided_by, state.waiting) == (status, "sms_link", "")
    assert unchanged(settings, state, Timer(waiting.timer), waiting.timer_at)


def test_a_missed_call_confirms_and_thanks_the_customer() -> None:
    settings = fallback("missed_call", {"confirm_tag": "missed_ok"})
    state, effects = step(in_fallback(settings), Answer("confirm", "missed_call"), settings, T0)
    assert effects == [
        Record("verification_confirmed", "missed_call", {}),
        AddTags(("missed_ok",), "missed_call"),
        SendMessage("missed_call_confirmation", "confirmation"),
    ]
    assert (state.status, state.decided_by) == (CONFIRMED, "missed_call")


@pytest.mark.parametrize(
    ("settings", "answer"),
    [
        pytest.param(
            fallback("sms_link", {"cancel_tag": ""}), Answer("cancel", "sms_link"), id="no-cancel"
        ),
        pytest.param(
            fallback("sms_link", {"callback_tag": ""}),
            Answer("callback", "sms_link"),
            id="no-callback",
        ),
        pytest.param(fallback("sms_link"), Answer("maybe", "sms_link"), id="unknown-action"),
        pytest.param(
            fallback("missed_call"), Answer("cancel", "missed_call"), id="missed-call-cancel"
        ),
        pytest.param(
            fallback("missed_call"), Answer("callback", "missed_call"), id="missed-call-callback"
        ),
        pytest.param(
            fallback("sms_link"), Answer("confirm", "missed_call"), id="missed-call-not-in-cascade"
        ),
        pytest.param(
            fallback("missed_call"), Answer("confirm", "sms_link"), id="link-not-in-cascade"
        ),
        pytest.param(
            fallback("sms_link"), Answer("confirm", "whatsapp"), id="whatsapp-not-in-cascade"
        ),
        pytest.param(fallback("sms_link"), Answer("confirm", "otp"), id="otp-not-in-cascade"),
    ],
)
def test_refused_answers_change_nothing(settings: ShopSettings, answer: Answer) -> None:
    assert unchanged(settings, in_fallback(settings), answer, T0 + minutes(5))


def test_an_ivr_only_cascade_refuses_a_link_answer() -> None:
    settings = shop()
    state, _ = run(settings, [START])
    assert unchanged(settings, state, Answer("confirm", "sms_link"), T0)


def test_the_merchant_decides_with_the_ivr_tags() -> None:
    settings = shop(ivr={"cancel_tag": "merchant_no", "cancel_in_shopify": True})
    state, _ = run(settings, [START])
    state, effects = step(state, Answer("cancel", "merchant"), settings, T0)
    assert effects == [
        Record("verification_cancelled", "merchant", {}),
        AddTags(("merchant_no",), "merchant"),
        CancelOrder("merchant"),
    ]
    assert (state.status, state.decided_by) == (CANCELLED, "merchant")


# WhatsApp, then calls, then the SMS link ----------------------------------------------

CASCADE = {"verification": {"type": "whatsapp", "then": ["ivr"]}, "fallback": {"mode": "sms_link"}}


def test_whatsapp_then_calls_then_sms_link() -> None:
    settings = shop(**CASCADE)
    items = [START, FIRE, FIRE, *no_answers(3, stage=1), FIRE, FIRE]
    state, effects = run(settings, items)
    assert effects[0] == Record(
        "verification_started", "", {"methods": ["whatsapp", "ivr", "sms_link"]}
    )
    steps = [e for e in effects if isinstance(e, PlaceCall | SendMessage | AddTags)]
    assert steps == [
        SendMessage("whatsapp", "0:1"),
        SendMessage("whatsapp", "0:2"),
        AddTags((WHATSAPP_LIMIT,), "system"),
        PlaceCall("1:1"),
        PlaceCall("1:2"),
        PlaceCall("1:3"),
        AddTags((IVR_LIMIT,), "system"),
        SendMessage("sms_link", "2:1"),
        SendMessage("sms_link", "2:2"),
        AddTags((FALLBACK_LIMIT,), "system"),
    ]
    assert effects[-1] == UNVERIFIED_RECORD
    assert state.status == UNVERIFIED


def test_whatsapp_cascade_dnd_skips_the_calls() -> None:
    settings = shop(**CASCADE)
    state, effects = run(settings, [START, FIRE, FIRE, CallRefused("1:1", "DND")])
    assert tags_added(effects) == [WHATSAPP_LIMIT]
    assert effects[-2:] == [SendMessage("sms_link", "2:1"), StartTimer(4, T0 + minutes(90))]
    assert state.method == "sms_link"


WA_TAGS = {"confirm_tag": "wa_yes", "cancel_tag": "wa_no", "callback_tag": "wa_call"}


@pytest.mark.parametrize(
    ("whatsapp", "action", "status", "after"),
    [
        pytest.param(WA_TAGS, "confirm", CONFIRMED, [], id="confirm"),
        pytest.param(WA_TAGS, "cancel", CANCELLED, [], id="cancel"),
        pytest.param(
            {**WA_TAGS, "cancel_in_shopify": True},
            "cancel",
            CANCELLED,
            [CancelOrder("whatsapp")],
            id="cancel-in-shopify",
        ),
        pytest.param(
            WA_TAGS,
            "callback",
            CALLBACK,
            [NotifyMerchant("callback_requested", {"mode": "whatsapp"})],
            id="callback",
        ),
    ],
)
def test_whatsapp_answers(
    whatsapp: dict[str, Any], action: str, status: str, after: list[Effect]
) -> None:
    settings = shop(**CASCADE, whatsapp=whatsapp)
    state, _ = run(settings, [START])
    state, effects = step(state, Answer(action, "whatsapp"), settings, T0 + minutes(3))
    assert effects == [
        Record(f"verification_{status}", "whatsapp", {}),
        AddTags((whatsapp[f"{action}_tag"],), "whatsapp"),
        *after,
    ]
    assert (state.status, state.decided_by) == (status, "whatsapp")


# The final action ---------------------------------------------------------------------

QUICK_LINK = {"retries": 0, "retry_interval_minutes": 0}  # one SMS, an hour to answer
EXHAUSTED_AT = T0 + minutes(60)


def exhausted(verification: dict[str, Any]) -> tuple[ShopSettings, VState, list[Effect]]:
    settings = fallback("sms_link", QUICK_LINK, verification=verification)
    state, effects = run(settings, [FIRE], in_fallback(settings))
    return settings, state, effects


@pytest.mark.parametrize(
    ("verification", "final"),
    [
        pytest.param({"final_action": "none"}, [], id="none"),
        pytest.param(
            {"final_action": "tag", "final_tag": "needs_call"},
            [AddTags(("needs_call",), "system")],
            id="tag",
        ),
        pytest.param(
            {"final_action": "cancel", "cancel_after_hours": 6},
            [StartTimer(4, EXHAUSTED_AT + timedelta(hours=6))],
            id="cancel-timer",
        ),
    ],
)
def test_the_final_action_at_exhaustion(verification: dict[str, Any], final: list) -> None:
    _, state, effects = exhausted(verification)
    assert effects == [AddTags((FALLBACK_LIMIT,), "system"), UNVERIFIED_RECORD, *final]
    assert state.status == UNVERIFIED


@pytest.mark.parametrize(
    ("verification", "remove"),
    [
        pytest.param({"final_action": "none"}, (), id="none"),
        pytest.param(
            {"final_action": "tag", "final_tag": "needs_call"}, ("needs_call",), id="tag"
        ),
        pytest.param({"final_action": "cancel"}, (), id="cancel"),
    ],
)
def test_a_late_confirm_after_exhaustion(verification: dict[str, Any], remove: tuple) -> None:
    settings, unverified, _ = exhausted(verification)
    later = EXHAUSTED_AT + timedelta(hours=2)
    state, effects = step(unverified, Answer("confirm", "sms_link"), settings, later)
    assert effects == [
        Record("verification_confirmed", "sms_link", {}),
        AddTags(("cod_confirmed",), "sms_link", remove),
    ]
    assert state.status == CONFIRMED
    # the final cancel, if any, is stopped
    assert unchanged(settings, state, Timer(unverified.timer), unverified.timer_at)


def test_the_final_cancel_after_n_hours() -> None:
    settings, unverified, _ = exhausted({"final_action": "cancel", "cancel_after_hours": 6})
    state, timeline = trace(settings, [FIRE], unverified)
    due = EXHAUSTED_AT + timedelta(hours=6)
    assert timeline == [
        (due, CancelOrder("system")),
        (due, Record("verification_cancelled", "system", {"reason": "unverified after 6 h"})),
    ]
    assert (state.status, state.decided_by, state.timer_at) == (CANCELLED, "system", None)


def test_an_order_changed_in_shopify_stops_the_final_cancel() -> None:
    settings, unverified, _ = exhausted({"final_action": "cancel"})
    state, effects = step(unverified, OrderChanged("order paid"), settings, EXHAUSTED_AT)
    assert effects == [Record("verification_stopped", "", {"reason": "order paid"})]
    assert (state.status, state.reason) == (SKIPPED, "order paid")
    assert unchanged(settings, state, Timer(unverified.timer), unverified.timer_at)


# OTP ----------------------------------------------------------------------------------

OTP = {
    "expiry_minutes": 5,
    "wrong_attempts_limit": 3,
    "resend_limit": 2,
    "resend_after_seconds": 30,
}
OTP_START = Start(order(), OtpIssue("nonce-1", "hash-1"))


def otp_shop(**otp: Any) -> ShopSettings:
    return shop(verification={"type": "otp"}, otp={**OTP, **otp})


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def test_otp_start_sends_the_code() -> None:
    state, effects = step(VState(), OTP_START, otp_shop(), T0)
    assert effects == [
        Record("verification_started", "", {"methods": ["otp"]}),
        SendMessage("otp", "otp:1", otp_nonce="nonce-1"),
        StartTimer(1, T0 + OTP_ANSWER_WAIT),
    ]
    assert (state.method, state.otp_hash) == ("otp", "hash-1")
    assert (state.otp_sent_at, state.otp_expires_at) == (T0, T0 + minutes(5))


@pytest.mark.parametrize("tag", ["otp_verified", "otp_ok"])
def test_the_right_code_confirms(tag: str) -> None:
    settings = otp_shop(verified_tag=tag)
    state, effects = run(settings, [OTP_START, (seconds(40), OtpEntered("hash-1"))])
    assert effects[-2:] == [Record("verification_confirmed", "otp", {}), AddTags((tag,), "otp")]
    assert (state.status, state.decided_by) == (CONFIRMED, "otp")


@pytest.mark.parametrize("limit", [0, 1, 3, 5])
def test_wrong_codes_up_to_the_limit_then_the_limit_tag(limit: int) -> None:
    settings = otp_shop(wrong_attempts_limit=limit)
    allowed, effects = run(settings, [OTP_START, *[OtpEntered("bad")] * limit])
    assert allowed.status == PENDING
    assert effects[3:] == [Record("otp_wrong", "otp", {"wrong": n}) for n in range(1, limit + 1)]
    # within the limit, the right code still confirms
    assert step(allowed, OtpEntered("hash-1"), settings, T0)[0].status == CONFIRMED

    state, effects = step(allowed, OtpEntered("bad"), settings, T0)
    assert effects == [
        Record("otp_wrong", "otp", {"wrong": limit + 1}),
        AddTags((OTP_WRONG_LIMIT,), "system"),
        UNVERIFIED_RECORD,
    ]
    assert state.status == UNVERIFIED
    for code in ("hash-1", "bad"):
        assert unchanged(settings, state, OtpEntered(code), T0)


@pytest.mark.parametrize(
    ("at", "confirms"),
    [
        pytest.param(seconds(299), True, id="just-before-expiry"),
        pytest.param(seconds(300), False, id="at-expiry"),
        pytest.param(seconds(3600), False, id="long-after"),
    ],
)
def test_an_expired_code_changes_nothing(at: datetime, confirms: bool) -> None:
    settings = otp_shop()
    sent, _ = run(settings, [OTP_START])
    state, _ = step(sent, OtpEntered("hash-1"), settings, at)
    assert (state.status == CONFIRMED) is confirms
    if not confirms:
        assert unchanged(settings, sent, OtpEntered("hash-1"), at)
        assert unchanged(settings, sent, OtpEntered("bad"), at)


def resend(n: int) -> OtpResend:
    return OtpResend(OtpIssue(f"nonce-{n}", f"hash-{n}"))


def test_a_resend_before_the_wait_is_refused() -> None:
    settings = otp_shop()
    sent, _ = run(settings, [OTP_START])
    assert unchanged(settings, sent, resend(2), seconds(29))


def test_a_resend_sends_a_new_code() -> None:
    settings = otp_shop()
    state, effects = run(settings, [OTP_START, (seconds(30), resend(2))])
    assert effects[-2:] == [
        SendMessage("otp", "otp:2", otp_nonce="nonce-2"),
        StartTimer(2, seconds(30) + OTP_ANSWER_WAIT),
    ]
    assert (state.otp_hash, state.otp_resends) == ("hash-2", 1)
    assert (state.otp_sent_at, state.otp_expires_at) == (seconds(30), seconds(330))
    # the old code is wrong now, the new one confirms (and lives 5 minutes from its sending)
    assert step(state, OtpEntered("hash-1"), settings, seconds(40))[1] == [
        Record("otp_wrong", "otp", {"wrong": 1})
    ]
    assert step(state, OtpEntered("hash-2"), settings, seconds(320))[0].status == CONFIRMED
    # the wait counts from the last sending
    assert unchanged(settings, state, resend(3), seconds(59))


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_resends_beyond_the_limit_add_the_limit_tag_and_send_nothing(limit: int) -> None:
    settings = otp_shop(resend_limit=limit)
    resends = [(seconds(30 * n), resend(n + 1)) for n in range(1, limit + 1)]
    allowed, effects = run(settings, [OTP_START, *resends])
    assert len(only(SendMessage, effects)) == 1 + limit

    state, effects = step(allowed, resend(9), settings, seconds(30 * (limit + 1)))
    assert effects == [
        Record("otp_resend_refused", "otp", {"resends": limit}),
        AddTags((OTP_RESEND_LIMIT,), "system"),
    ]
    assert state == allowed  # still pending with the last code
    last_code = OtpEntered(f"hash-{limit + 1}")
    confirmed, _ = step(state, last_code, settings, seconds(30 * (limit + 1) + 10))
    assert confirmed.status == CONFIRMED


# The calling window when the contact is made (issue 14 item 13) -----------------------

LINK_SENT = [START, CallEnded("0:1", "busy")]  # call 0:1 unanswered; SMS 1:1 sent
LINK = {"retries": 1, "retry_interval_minutes": 30}
FIRST_ANYTIME = {"window_first_call": False, "window_first_message": False}
FIRST_IN_WINDOW = {"window_first_call": True, "window_first_message": True}


@pytest.mark.parametrize(
    ("verification", "purpose", "key", "now", "until"),
    [
        pytest.param(FIRST_IN_WINDOW, "call", "0:1", T0, None, id="call-inside"),
        pytest.param(FIRST_IN_WINDOW, "call", "0:1", NIGHT, NEXT_MORNING, id="first-call-night"),
        pytest.param(FIRST_ANYTIME, "call", "0:1", NIGHT, None, id="first-call-anytime"),
        pytest.param(FIRST_ANYTIME, "call", "0:2", NIGHT, NEXT_MORNING, id="retry-call-night"),
        pytest.param(FIRST_ANYTIME, "call", "1:2", NIGHT, NEXT_MORNING, id="later-stage-retry"),
        pytest.param(
            FIRST_IN_WINDOW, "sms_link", "1:1", NIGHT, NEXT_MORNING, id="first-link-in-window"
        ),
        pytest.param(FIRST_ANYTIME, "sms_link", "1:1", NIGHT, None, id="first-link-anytime"),
        pytest.param(FIRST_ANYTIME, "sms_link", "1:2", NIGHT, NEXT_MORNING, id="link-resend"),
        pytest.param(FIRST_ANYTIME, "whatsapp", "0:2", NIGHT, NEXT_MORNING, id="wa-resend"),
        pytest.param(FIRST_ANYTIME, "missed_call", "1:3", NIGHT, NEXT_MORNING, id="mc-resend"),
        pytest.param(FIRST_ANYTIME, "missed_call", "1:3", T0, None, id="mc-resend-inside"),
        pytest.param(FIRST_IN_WINDOW, "otp", "otp:2", NIGHT, None, id="otp-never-waits"),
        pytest.param(
            FIRST_IN_WINDOW,
            "missed_call_confirmation",
            "confirmation",
            NIGHT,
            None,
            id="thanks-never-waits",
        ),
    ],
)
def test_held_until(
    verification: dict[str, Any], purpose: str, key: str, now: datetime, until: datetime | None
) -> None:
    assert held_until(purpose, key, shop(verification=verification), now) == until


def test_a_late_call_waits_for_the_window_as_the_same_attempt() -> None:
    settings = shop()
    placing, _ = run(settings, [*RETRYING, FIRE])  # call 0:2 asked for at T0 + 30 min
    assert placing.open_call == "0:2"
    late = WindowClosed("call", "0:2", NEXT_MORNING)
    state, effects = step(placing, late, settings, NIGHT)
    detail = {"attempt": 2, "until": NEXT_MORNING.isoformat()}
    assert effects == [
        Record("call_deferred", "ivr", detail),
        StartTimer(placing.timer + 1, NEXT_MORNING + CALL_TIMEOUT),
    ]
    assert (state.attempt, state.open_call, state.waiting) == (2, "0:2", "call")
    # the call timer set when the call was asked for is stale: no "not answered" overnight
    assert unchanged(settings, state, Timer(placing.timer), placing.timer_at)
    assert unchanged(settings, state, late, NIGHT)  # the same news twice
    # placed in the morning, the call ends as any call does
    _, effects = step(state, CallEnded("0:2", "no-answer"), settings, NEXT_MORNING + minutes(1))
    assert Record("call_not_answered", "ivr", {"attempt": 2, "status": "no-answer"}) in effects


@pytest.mark.parametrize(
    ("section", "until", "wake"),
    [
        pytest.param(
            {"retries": 2, "retry_interval_minutes": 30},
            NEXT_MORNING,
            NEXT_MORNING + minutes(30),
            id="next-resend-counts-from-the-morning",
        ),
        pytest.param(
            {"retries": 1, "retry_interval_minutes": 10},
            NEXT_MORNING,
            NEXT_MORNING + minutes(10),
            id="last-answer-wait-counts-from-the-morning",
        ),
    ],
)
def test_a_late_resend_waits_for_the_window_and_its_answer_time_moves(
    section: dict[str, Any], until: datetime, wake: datetime
) -> None:
    settings = fallback("sms_link", section)
    resending, _ = run(settings, [FIRE], in_fallback(settings))  # SMS 1:2 asked for
    assert resending.attempt == 2
    state, effects = step(resending, WindowClosed("sms_link", "1:2", until), settings, NIGHT)
    detail = {"attempt": 2, "until": until.isoformat()}
    assert effects == [
        Record("message_deferred", "sms_link", detail),
        StartTimer(resending.timer + 1, wake),
    ]
    assert (state.attempt, state.waiting, state.timer_at) == (2, "answer", wake)


@pytest.mark.parametrize(
    ("settings", "before", "event"),
    [
        pytest.param(
            shop(), [*RETRYING, FIRE], WindowClosed("call", "0:1", NEXT_MORNING), id="old-call"
        ),
        pytest.param(shop(), RETRYING, WindowClosed("call", "0:1", NEXT_MORNING), id="call-ended"),
        pytest.param(
            shop(),
            [START, Keypad("0:1", "1")],
            WindowClosed("call", "0:1", NEXT_MORNING),
            id="decided",
        ),
        pytest.param(
            fallback("sms_link", LINK),
            [*LINK_SENT, FIRE],
            WindowClosed("sms_link", "1:1", NEXT_MORNING),
            id="an-earlier-message",
        ),
    ],
)
def test_a_window_news_about_another_attempt_changes_nothing(
    settings: ShopSettings, before: list[Item], event: WindowClosed
) -> None:
    state, _ = run(settings, before)
    assert unchanged(settings, state, event, NIGHT)


# Nothing waits for an answer that cannot come (issue 14 item 14) ----------------------

NOT_ENTERED = Record("otp_not_entered", "otp", {"sent": 1})


@pytest.mark.parametrize(
    ("verification", "final"),
    [
        pytest.param({}, [], id="none"),
        pytest.param({"final_action": "tag"}, [AddTags(("cod_unconfirmed",), "system")], id="tag"),
        pytest.param(
            {"final_action": "cancel", "cancel_after_hours": 2},
            [StartTimer(3, T0 + OTP_ANSWER_WAIT + timedelta(hours=2))],
            id="cancel",
        ),
    ],
)
def test_an_otp_never_entered_ends_at_its_deadline(
    verification: dict[str, Any], final: list[Effect]
) -> None:
    settings = shop(verification={"type": "otp", **verification}, otp=OTP)
    waiting, _ = run(settings, [OTP_START])
    assert (waiting.waiting, waiting.timer_at) == ("answer", T0 + OTP_ANSWER_WAIT)
    state, effects = run(settings, [FIRE], waiting)
    assert effects == [NOT_ENTERED, UNVERIFIED_RECORD, *final]
    assert state.status == UNVERIFIED
    assert unchanged(settings, state, OtpEntered("hash-1"), T0 + OTP_ANSWER_WAIT)
    assert unchanged(settings, state, resend(2), T0 + OTP_ANSWER_WAIT)


def test_a_resend_moves_the_otp_deadline() -> None:
    settings = otp_shop()
    state, _ = run(settings, [OTP_START, (seconds(30), resend(2))])
    assert state.timer_at == seconds(30) + OTP_ANSWER_WAIT
    assert unchanged(settings, state, Timer(1), T0 + OTP_ANSWER_WAIT)  # the first deadline
    state, effects = run(settings, [FIRE], state)
    assert effects[0] == Record("otp_not_entered", "otp", {"sent": 2})


@pytest.mark.parametrize(
    "items",
    [
        pytest.param([OtpEntered("hash-1")], id="confirmed"),
        pytest.param([OtpEntered("bad")] * 4, id="wrong-limit"),
        pytest.param([OrderChanged("paid")], id="stopped"),
    ],
)
def test_a_decided_otp_has_no_deadline(items: list[Item]) -> None:
    settings = otp_shop()
    sent, _ = run(settings, [OTP_START])
    state, _ = run(settings, [(seconds(40), item) for item in items], sent)
    assert state.waiting == ""
    assert unchanged(settings, state, Timer(sent.timer), T0 + OTP_ANSWER_WAIT)


@pytest.mark.parametrize(
    ("settings", "before", "failed", "after"),
    [
        pytest.param(
            fallback("sms_link", LINK),
            LINK_SENT,
            MessageFailed("sms_link", "1:1", "INVALID_NUMBER", permanent=True),
            [Record("message_refused", "sms_link", {"attempt": 1, "code": "INVALID_NUMBER"})],
            id="link-refused",
        ),
        pytest.param(
            fallback("sms_link", LINK),
            LINK_SENT,
            MessageFailed("sms_link", "1:1", "NO_ROUTE", permanent=True),
            [Record("message_refused", "sms_link", {"attempt": 1, "code": "NO_ROUTE"})],
            id="link-no-route",
        ),
        pytest.param(
            fallback("sms_link", QUICK_LINK),
            LINK_SENT,
            MessageFailed("sms_link", "1:1", "HTTP_503", permanent=False),
            [
                Record("message_not_sent", "sms_link", {"attempt": 1, "code": "HTTP_503"}),
                AddTags((FALLBACK_LIMIT,), "system"),
            ],
            id="last-link-never-sent",
        ),
        pytest.param(
            otp_shop(),
            [OTP_START],
            MessageFailed("otp", "otp:1", "INVALID_NUMBER", permanent=True),
            [Record("message_refused", "otp", {"attempt": 0, "code": "INVALID_NUMBER"})],
            id="otp-refused",
        ),
    ],
)
def test_a_message_that_cannot_be_sent_ends_its_method_at_once(
    settings: ShopSettings, before: list[Item], failed: MessageFailed, after: list[Effect]
) -> None:
    sent, _ = run(settings, before)
    state, effects = step(sent, failed, settings, T0 + minutes(1))
    assert effects == [*after, UNVERIFIED_RECORD]
    assert (state.status, state.waiting) == (UNVERIFIED, "")


def test_a_refused_whatsapp_goes_on_to_the_call_at_once() -> None:
    settings = shop(**CASCADE)
    sent, _ = run(settings, [START])
    refused = MessageFailed("whatsapp", "0:1", "TEMPLATE_NOT_APPROVED", permanent=True)
    state, effects = step(sent, refused, settings, T0 + minutes(1))
    code = {"attempt": 1, "code": "TEMPLATE_NOT_APPROVED"}
    assert effects[:2] == [Record("message_refused", "whatsapp", code), PlaceCall("1:1")]
    assert (state.method, state.open_call) == ("ivr", "1:1")
    assert WHATSAPP_LIMIT not in tags_added(effects)


@pytest.mark.parametrize(
    ("settings", "before", "failed"),
    [
        pytest.param(
            fallback("sms_link", LINK),
            LINK_SENT,
            MessageFailed("sms_link", "1:1", "HTTP_503", permanent=False),
            id="a-retry-is-still-due",
        ),
        pytest.param(
            otp_shop(),
            [OTP_START],
            MessageFailed("otp", "otp:1", "HTTP_503", permanent=False),
            id="otp-can-be-resent",
        ),
        pytest.param(
            fallback("sms_link", LINK),
            [*LINK_SENT, FIRE],
            MessageFailed("sms_link", "1:1", "INVALID_NUMBER", permanent=True),
            id="an-earlier-attempt",
        ),
        pytest.param(
            otp_shop(),
            [OTP_START, (seconds(30), resend(2))],
            MessageFailed("otp", "otp:1", "INVALID_NUMBER", permanent=True),
            id="an-earlier-otp",
        ),
        pytest.param(
            fallback("missed_call", {"exophone": "08047112345"}),
            [START, CallEnded("0:1", "busy"), Answer("confirm", "missed_call")],
            MessageFailed("missed_call_confirmation", "confirmation", "DND", permanent=True),
            id="the-thanks-after-a-decision",
        ),
        pytest.param(
            fallback("sms_link", LINK),
            [*LINK_SENT, Answer("confirm", "sms_link")],
            MessageFailed("sms_link", "1:1", "INVALID_NUMBER", permanent=True),
            id="decided-meanwhile",
        ),
    ],
)
def test_a_failed_message_that_is_not_the_one_waited_for_changes_nothing(
    settings: ShopSettings, before: list[Item], failed: MessageFailed
) -> None:
    state, _ = run(settings, before)
    assert unchanged(settings, state, failed, T0 + minutes(2))


# Order changed in Shopify -------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "before", "later"),
    [
        pytest.param(
            shop(),
            [START],
            [CallEnded("0:1", "busy"), Keypad("0:1", "5"), CallRefused("0:1", "DND")],
            id="call-in-flight",
        ),
        pytest.param(shop(), [(NIGHT, START)], [], id="first-call-waiting-for-window"),
        pytest.param(
            shop(),
            RETRYING,
            [CallEnded("0:1", "busy"), Keypad("0:1", "1"), Answer("confirm", "merchant")],
            id="retry-waiting",
        ),
        pytest.param(
            fallback("sms_link"),
            [START, CallEnded("0:1", "busy")],
            [Answer("confirm", "sms_link")],
            id="sms-link",
        ),
        pytest.param(otp_shop(), [OTP_START], [OtpEntered("hash-1"), resend(2)], id="otp"),
    ],
)
def test_an_order_changed_while_pending_is_skipped(
    settings: ShopSettings, before: list[Item], later: list[Event]
) -> None:
    pending, _ = run(settings, before)
    assert pending.status == PENDING
    reason = "order cancelled in Shopify"
    state, effects = step(pending, OrderChanged(reason), settings, T0 + minutes(1))
    assert effects == [Record("verification_stopped", "", {"reason": reason})]
    assert (state.status, state.reason, state.waiting, state.open_call) == (
        SKIPPED,
        reason,
        "",
        "",
    )
    now = T0 + minutes(90)
    for event in [Timer(pending.timer), *later]:
        assert unchanged(settings, state, event, now), event


# The stored state ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "items"),
    [
        pytest.param(shop(), [], id="initial"),
        pytest.param(shop(), [START], id="call-in-flight"),
        pytest.param(shop(), [START, Keypad("0:1", "4")], id="wrong-input"),
        pytest.param(shop(**CASCADE), [START, FIRE, FIRE], id="cascade"),
        pytest.param(otp_shop(), [OTP_START, OtpEntered("bad")], id="otp"),
        pytest.param(
            fallback("sms_link", QUICK_LINK, verification={"final_action": "cancel"}),
            [START, CallEnded("0:1", "busy"), FIRE],
            id="final-cancel-pending",
        ),
        pytest.param(shop(), [START, OrderChanged("paid")], id="skipped"),
    ],
)
def test_the_state_round_trips_through_json(settings: ShopSettings, items: list[Item]) -> None:
    state, _ = run(settings, items)
    document = json.loads(json.dumps(state.to_json()))
    assert VState.from_json(document) == state


def test_the_system_tags_keep_their_names() -> None:
    assert (IVR_LIMIT, FALLBACK_LIMIT, WHATSAPP_LIMIT, OTP_WRONG_LIMIT, OTP_RESEND_LIMIT) == (
        "ivr_retry_limit_reached",
        "fallback_retry_limit_reached",
        "whatsapp_retry_limit_reached",
        "incorrect_otp_limit_reached",
        "resend_otp_limit_reached",
    )
