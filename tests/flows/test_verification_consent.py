"""The verification flow with a customer opted out of a channel: a method that would message
that channel is skipped for the next one, on the timeline, instead of being sent (a table of
(settings, opted-out channels, events) -> effects; pure, fixed instants)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.verification.flow import (
    CONFIRMED,
    IVR_LIMIT,
    PENDING,
    UNVERIFIED,
    AddTags,
    Answer,
    OtpResend,
    PlaceCall,
    Record,
    SendMessage,
    StartTimer,
    Timer,
    VState,
    step,
)
from tests.flows.test_verification import (
    OTP_START,
    START,
    T0,
    UNVERIFIED_RECORD,
    minutes,
    no_answers,
    otp_shop,
    run,
    seconds,
    shop,
)

SMS_OUT = frozenset({"sms"})


def skipped(method: str, channel: str = "sms") -> Record:
    return Record("method_skipped", method, {"reason": f"the customer opted out of {channel}"})


@pytest.mark.parametrize("fallback", ["sms_link", "missed_call"])
def test_the_sms_fallback_is_skipped_when_the_ivr_gets_no_answer(fallback: str) -> None:
    settings = shop(ivr={"retries": 0}, fallback={"mode": fallback})
    state, effects = run(settings, [START, *no_answers(1)], VState(opted_out=SMS_OUT))
    assert effects[-3:] == [AddTags((IVR_LIMIT,), "system"), skipped(fallback), UNVERIFIED_RECORD]
    assert state.status == UNVERIFIED
    assert not [effect for effect in effects if isinstance(effect, SendMessage)]


def test_the_same_cascade_sends_the_link_when_the_customer_did_not_opt_out() -> None:
    settings = shop(ivr={"retries": 0}, fallback={"mode": "sms_link"})
    state, effects = run(settings, [START, *no_answers(1)])
    assert SendMessage("sms_link", "1:1") in effects and state.status == PENDING


def test_an_sms_opt_out_does_not_stop_the_call_nor_whatsapp() -> None:
    settings = shop(verification={"type": "whatsapp", "then": ["ivr"]})
    _, effects = step(VState(opted_out=SMS_OUT), START, settings, T0)
    assert SendMessage("whatsapp", "0:1") in effects
    _, effects = step(VState(opted_out=frozenset({"whatsapp"})), START, settings, T0)
    assert effects[:3] == [
        Record("verification_started", "", {"methods": ["whatsapp", "ivr"]}),
        skipped("whatsapp", "whatsapp"),
        PlaceCall("1:1"),
    ]


def test_an_opt_out_between_two_link_messages_skips_the_resend() -> None:
    settings = shop(ivr={"retries": 0}, fallback={"mode": "sms_link"})
    linked, effects = run(settings, [START, *no_answers(1)])
    assert SendMessage("sms_link", "1:1") in effects
    timer = linked.timer_at
    assert timer is not None
    state, effects = step(replace(linked, opted_out=SMS_OUT), _fire(linked), settings, timer)
    assert effects == [skipped("sms_link"), UNVERIFIED_RECORD]
    assert state.status == UNVERIFIED


def test_an_otp_verification_of_an_opted_out_phone_sends_no_code() -> None:
    state, effects = step(VState(opted_out=SMS_OUT), OTP_START, otp_shop(), T0)
    assert effects == [
        Record("verification_started", "", {"methods": ["otp"]}),
        skipped("otp"),
        UNVERIFIED_RECORD,
    ]
    assert state.status == UNVERIFIED and state.otp_hash == ""


def test_an_otp_resend_after_an_opt_out_sends_no_code() -> None:
    sent, _ = step(VState(), OTP_START, otp_shop(), T0)
    state, effects = step(
        replace(sent, opted_out=SMS_OUT), OtpResend(OTP_START.otp), otp_shop(), seconds(60)
    )
    assert effects == [skipped("otp"), UNVERIFIED_RECORD]
    assert state.status == UNVERIFIED


def test_a_missed_call_confirms_without_the_thanks_sms_when_opted_out() -> None:
    settings = shop(ivr={"retries": 0}, fallback={"mode": "missed_call"})
    waiting, _ = run(settings, [START, *no_answers(1)])
    state, effects = step(
        replace(waiting, opted_out=SMS_OUT), Answer("confirm", "missed_call"), settings, T0
    )
    assert state.status == CONFIRMED
    assert effects[-1] == Record(
        "confirmation_skipped", "missed_call", {"reason": "the customer opted out of sms"}
    )
    assert not [effect for effect in effects if isinstance(effect, SendMessage)]


def test_the_consent_read_for_a_step_is_never_stored() -> None:
    state, _ = step(VState(opted_out=SMS_OUT), START, shop(), T0)
    assert "opted_out" not in state.to_json()
    assert VState.from_json(state.to_json()).opted_out == frozenset()


def test_a_delayed_first_message_is_skipped_when_its_timer_fires() -> None:
    settings = shop(
        verification={"type": "whatsapp", "window_first_message": True},
        fallback={"mode": "sms_link"},
    )
    night = T0 + minutes(630)  # 22:00 in Kolkata: the first message waits for the morning
    waiting, effects = step(VState(), START, settings, night)
    assert isinstance(effects[-1], StartTimer)
    state, effects = step(
        replace(waiting, opted_out=frozenset({"sms", "whatsapp"})),
        _fire(waiting),
        settings,
        effects[-1].at,
    )
    assert effects == [
        skipped("whatsapp", "whatsapp"),
        skipped("sms_link"),
        UNVERIFIED_RECORD,
    ]
    assert state.status == UNVERIFIED


def _fire(state: VState) -> Timer:
    return Timer(state.timer)
