"""The notification core, pure: template tokens and rendering, SMS segments of rendered texts
(by hypothesis), the journey's order, quiet hours, and the decision's consent rules."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.notifications.decide import Facts, decide, quiet_until
from flows.notifications.events import EVENTS, RANKS, from_shipment, from_shopify, taken
from flows.notifications.templates import TOKENS, check_text, render, spelt
from flows.shops.settings import Notifications, validate_settings
from providers.sms import GSM7_BASIC, measure

PLAIN = st.text(alphabet=sorted(GSM7_BASIC - set("%[]{}")), max_size=60)
VALUES = st.dictionaries(st.sampled_from(TOKENS), PLAIN)


PART = st.one_of(PLAIN, st.sampled_from(TOKENS).map(lambda name: ("token", name)))


@given(st.lists(PART, max_size=12), VALUES)
def test_rendering_replaces_every_token_with_its_value(parts, values):
    text = "".join(p if isinstance(p, str) else spelt(p[1]) for p in parts)
    if text.strip():
        assert check_text(text) == text
    expected = "".join(p if isinstance(p, str) else values.get(p[1], "") for p in parts)
    assert render(text, values) == re.sub(" {2,}", " ", expected).strip()


@given(PLAIN, st.sampled_from(TOKENS), PLAIN)
def test_a_braced_part_stays_only_when_its_tokens_have_values(before, token, value):
    text = f"A{{ {before}{spelt(token)}}}B"
    kept = render(text, {token: value})
    if value:
        assert kept == render(f"A {before}{spelt(token)}B", {token: value})
    else:
        assert kept == "AB"


def test_a_value_that_looks_like_a_token_is_not_expanded():
    assert render("Hi [[firstname]]", {"firstname": "%shop%", "shop": "X"}) == "Hi %shop%"


def test_unknown_tokens_are_named():
    with pytest.raises(ValueError, match=r"unknown token %name%, \[\[first\]\]"):
        check_text("Hi %name% [[first]] %ordername%")
    with pytest.raises(ValueError, match="closed"):
        check_text("Hi {[[firstname]]")


@given(st.text(alphabet=sorted(GSM7_BASIC), max_size=700))
def test_segments_of_a_plain_text_follow_the_gsm7_limits(text):
    shape = measure(text)
    assert shape.encoding == "GSM-7" and shape.units == len(text)
    assert shape.segments == (1 if len(text) <= 160 else math.ceil(len(text) / 153))


@given(st.text(alphabet="अआइईउऊ₹", min_size=1, max_size=300))
def test_segments_of_a_unicode_text_follow_the_ucs2_limits(text):
    shape = measure(text)
    assert shape.encoding == "UCS-2"
    assert shape.segments == (1 if len(text) <= 70 else math.ceil(len(text) / 67))


@given(st.lists(st.sampled_from(EVENTS), max_size=12))
def test_the_journey_only_moves_forward(kinds):
    held: set[str] = set()
    top = -1
    for kind in kinds:
        if taken(kind, held):
            rank = RANKS[kind]
            assert kind not in held
            if rank is not None:
                assert rank >= top
                top = rank
            held.add(kind)


def test_shopify_fulfilment_statuses_and_the_shipment_webhook():
    (event,) = from_shopify(
        "fulfillments/update",
        {"order_id": 9, "status": "success", "shipment_status": "out_for_delivery"},
    )
    assert (event.kind, event.order) == ("out_for_delivery", "9")
    assert from_shopify("fulfillments/update", {"order_id": 9, "status": "cancelled"}) == ()
    (refund,) = from_shopify(
        "refunds/create",
        {
            "order_id": 9,
            "transactions": [{"kind": "refund", "amount": "499.00", "currency": "INR"}],
        },
    )
    assert (refund.kind, refund.refund_amount) == ("refund_issued", "INR 499.00")
    assert from_shipment({"order": "#1001", "status": "NDR", "reason": "door locked"}).kind == (
        "failed_delivery"
    )
    with pytest.raises(ValueError, match=r"^order: "):
        from_shipment({"status": "shipped"})
    with pytest.raises(ValueError, match=r"^awb: "):
        from_shipment({"order": 1, "status": "shipped", "awb": 5})


def test_a_shopify_return_is_its_orders_return_created():
    by_id = {"id": 1, "status": "open", "order": {"id": 9, "admin_graphql_api_id": "x"}}
    by_gid = {"id": 1, "order": {"admin_graphql_api_id": "gid://shopify/Order/9"}}
    for payload in (by_id, by_gid):
        (event,) = from_shopify("returns/approve", payload)
        assert (event.kind, event.order, event.source) == ("return_created", "9", "shopify")
    for order in (None, {}, {"admin_graphql_api_id": "gid://shopify/Return/9"}, "9"):
        assert from_shopify("returns/approve", {"id": 1, "order": order}) == ()


def _refund(restock_types: list[str], amount: str | None) -> dict:
    lines = [{"quantity": 1, "restock_type": kind} for kind in restock_types]
    money = [{"kind": "refund", "amount": amount, "currency": "INR"}] if amount else []
    return {"order_id": 9, "refund_line_items": lines, "transactions": money}


@pytest.mark.parametrize(
    ("restock_types", "amount", "kinds"),
    [
        (["return"], "499.00", ["restocked", "refund_issued"]),
        (["no_restock", "return"], None, ["restocked"]),
        (["cancel"], "499.00", ["refund_issued"]),
        (["no_restock"], None, ["refund_issued"]),
    ],
)
def test_a_refund_restocks_what_a_return_took_back_and_refunds_money(restock_types, amount, kinds):
    events = from_shopify("refunds/create", _refund(restock_types, amount))
    assert [event.kind for event in events] == kinds
    assert {event.order for event in events} == {"9"}
    assert events[-1].refund_amount == ("INR 499.00" if amount else "")


def _settings(**quiet) -> Notifications:
    document = {"notifications": {"sms_active": True, "quiet_hours": {"active": True, **quiet}}}
    return validate_settings(document, country="IN").notifications


def test_quiet_hours_in_local_time_across_midnight():
    settings = _settings(start_hour=21, end_hour=9)
    late = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)  # 22:30 in Kolkata
    assert quiet_until(settings, "Asia/Kolkata", late) == datetime(2026, 1, 6, 3, 30, tzinfo=UTC)
    noon = datetime(2026, 1, 5, 6, 30, tzinfo=UTC)
    assert quiet_until(settings, "Asia/Kolkata", noon) is None


def _facts(**consents) -> Facts:
    return Facts(frozenset(), "+919876543210", consents, {"firstname": "Asha"}, "Asia/Kolkata")


def test_sms_goes_only_with_consent_and_urgent_events_ignore_quiet_hours():
    settings = _settings(start_hour=0, end_hour=23)
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert decide("shipped", _facts(sms="opted_in"), settings, now).wait_until is not None
    urgent = decide("out_for_delivery", _facts(sms="opted_in"), settings, now)
    assert [send.channel for send in urgent.sends] == ["sms"]
    out = decide("out_for_delivery", _facts(sms="opted_out"), settings, now)
    assert out.sends == () and out.skips[0].reason == "the customer opted out of SMS"
    never = decide("out_for_delivery", _facts(), settings, now)
    assert never.skips[0].reason == "the customer has not consented to SMS"
    off = validate_settings({}, country="IN").notifications
    assert decide("out_for_delivery", _facts(sms="opted_in"), off, now).sends == ()
