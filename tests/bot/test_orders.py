"""The order card and the merchant's cancel and refund in the chat, through the real bot, app
and webhook route against the fake Bot API and the sandbox's fake Shopify: seed 003's statuses
on the card, its timeline, every cancel and refund rule followed (a reason, a summary, then
confirm) and refused where it refuses, and another shop's chats getting nothing."""

from __future__ import annotations

import pytest

from bot.handlers import orders
from bot.keyboards import OrderTap
from flows.shops import onboarding
from flows.shops.onboarding import ShopifyAccess
from tests.bot.conftest import bot_settings
from tests.web.test_order_actions import (
    DOMAIN,
    OTHER_DOMAIN,
    OTHER_TOKEN,
    TOKEN,
    add_orders,
    fake_shopify,
    stored,
    timeline,
)

OWNER, AGENT, OTHER_OWNER = 4001, 4002, 4003


@pytest.fixture
async def shopify():
    fake = await fake_shopify()
    yield fake
    await fake.close()


@pytest.fixture
def settings(database_url, telegram, port, shopify):
    return bot_settings(
        database_url, telegram, port, shopify={"admin_url": shopify.admin_url_template}
    )


async def linked_shop(
    res,
    telegram,
    shopify,
    domain: str,
    token: str,
    chat_id: int,
    *,
    orders: bool = True,
) -> int:
    """A shop connected to the fake Shopify, with ORDERS there and here, linked to `chat_id`."""
    done = await onboarding.create_shop(
        res.db, res.queue, res.box, res.clock, domain, ShopifyAccess(token)
    )
    if orders:
        await add_orders(res.db, shopify, domain, done.shop_id, res.clock.now())
    await telegram.type(chat_id, f"/start {done.bot_link_code}")
    return done.shop_id


def last(telegram, chat_id: int):
    return telegram.chat(chat_id).from_bot[-1]


async def press(telegram, chat_id: int, label: str) -> None:
    """Tap the button `label` under the bot's last message that has buttons."""
    shown = next(m for m in reversed(telegram.chat(chat_id).from_bot) if m.buttons)
    await telegram.press(chat_id, shown.message_id, shown.button_data(label))


@pytest.fixture
async def shop(res, webhook, telegram, shopify):
    return await linked_shop(res, telegram, shopify, DOMAIN, TOKEN, OWNER)


async def test_the_order_card_names_seed_003s_statuses_and_the_timeline(
    res,
    telegram,
    shopify,
    shop,
):
    await telegram.type(OWNER, "/order 1003")
    card = last(telegram, OWNER).text
    assert card.startswith("Order #1003 · 499.00 INR · PREPAID")
    for line in (
        "Order status: Open",
        "Payment status: Paid",
        "Fulfilment status: Fulfilled",
        "Verification: confirmed",
        "- Kurta × 1 (499.00)",
        "Timeline:\n- nothing yet",
    ):
        assert line in card
    await telegram.type(OWNER, "/order #1002")
    card = last(telegram, OWNER).text
    assert "Payment status: Unpaid" in card and "Fulfilment status: Unfulfilled" in card
    await telegram.type(OWNER, "/order")
    assert last(telegram, OWNER).text == orders.ASK_NUMBER
    await telegram.type(OWNER, "/order 77")
    assert last(telegram, OWNER).text == orders.NO_ORDER.format(name="77", shop="demo")

    # A tap on a report's row opens the same card.
    await telegram.type(OWNER, "/orders")
    await press(telegram, OWNER, "#1002")
    assert last(telegram, OWNER).text == card


async def test_cancel_asks_a_reason_shows_the_summary_then_cancels_and_refunds_a_paid_order(
    res,
    telegram,
    shopify,
    shop,
):
    await telegram.type(OWNER, "/order 1001")
    await press(telegram, OWNER, "Cancel order")
    asked = last(telegram, OWNER)
    assert asked.text == orders.ASK_REASON.format(name="#1001")
    labels = [text for row in asked.buttons for text, _ in row]
    assert labels == ["Customer", "Declined", "Fraud", "Inventory", "Staff", "Other"]
    await press(telegram, OWNER, "Fraud")
    summary = last(telegram, OWNER).text
    assert summary.startswith("Cancel #1001 and refund 499.00 INR (reason FRAUD, items restocked")
    assert shopify.cancellations == []
    await press(telegram, OWNER, "Keep")
    assert telegram.chat(OWNER).callback_answers[-1] == orders.KEPT
    assert shopify.cancellations == []

    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.CANCELLED.format(
        name="#1001", refund=" and 499.00 INR refunded", payment="refunded"
    )
    (cancellation,) = shopify.cancellations
    assert (cancellation["reason"], cancellation["refund"]) == ("FRAUD", True)
    assert f"telegram {OWNER}" in cancellation["staff_note"]
    ((kind, mode, detail),) = await timeline(res.db, 1001, shop)
    assert (kind, mode) == ("order_cancelled", "merchant")
    assert detail["by"] == f"User {OWNER} (telegram {OWNER})"

    await telegram.type(OWNER, "/order 1001")
    card = last(telegram, OWNER).text
    assert "Order status: Cancelled" in card and "Payment status: Refunded" in card
    assert f"order cancelled (merchant) by User {OWNER}" in card
    # The same confirm pressed again: the rules refuse it, Shopify is not asked.
    await telegram.press(
        OWNER,
        last(telegram, OWNER).message_id,
        OrderTap(number=1001, action="do_cancel", value="FRAUD").pack(),
    )
    assert last(telegram, OWNER).text == orders.REFUSED.format(
        rule="the order is cancelled already"
    )
    assert len(shopify.cancellations) == 1


async def test_an_unpaid_order_is_cancelled_without_refund_and_has_no_refund(
    res,
    telegram,
    shopify,
    shop,
):
    await telegram.type(OWNER, "/order 1002")
    await press(telegram, OWNER, "Refund")
    assert "only a paid order is refunded" in last(telegram, OWNER).text
    await press(telegram, OWNER, "Cancel order")
    await press(telegram, OWNER, "Customer")
    assert last(telegram, OWNER).text.startswith("Cancel #1002 without refund (reason CUSTOMER")
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.CANCELLED.format(
        name="#1002", refund="", payment="voided"
    )
    assert shopify.cancellations[-1]["refund"] is False
    assert (await stored(res.db, shop, 1002)).financial_status == "voided"


async def test_a_delivered_order_is_not_cancelled_and_refunded_after_its_return(
    res,
    telegram,
    shopify,
    shop,
):
    await telegram.type(OWNER, "/order 1003")
    await press(telegram, OWNER, "Cancel order")
    refused = last(telegram, OWNER).text
    assert refused.startswith("Not done: a delivered order is not cancelled")
    await press(telegram, OWNER, "Refund")
    assert last(telegram, OWNER).text == orders.ASK_RETURN.format(name="#1003")
    await press(telegram, OWNER, "Return arrived")
    assert last(telegram, OWNER).text.startswith("Refund 499.00 INR of #1003")
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.REFUNDED.format(
        amount="499.00", currency="INR", name="#1003", payment="refunded"
    )
    assert shopify.cancellations == []
    assert len(shopify.order(DOMAIN, 10003)["refunds"]) == 1
    ((kind, mode, detail),) = await timeline(res.db, 1003, shop)
    assert (kind, mode, detail["by"]) == (
        "order_refunded",
        "merchant",
        f"User {OWNER} (telegram {OWNER})",
    )

    # Without a return, when the merchant says so.
    await telegram.type(OWNER, "/order 1005")
    await press(telegram, OWNER, "Refund")
    await press(telegram, OWNER, "without return")
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text.startswith("499.00 INR of #1005 is refunded")
    # Delivered and unpaid: no refund, no cancel.
    await telegram.type(OWNER, "/order 1004")
    await press(telegram, OWNER, "Refund")
    assert "only a paid order is refunded" in last(telegram, OWNER).text
    await press(telegram, OWNER, "Cancel order")
    assert "a delivered order is not cancelled" in last(telegram, OWNER).text


async def test_a_paid_order_not_delivered_is_refunded_by_cancelling_it(
    res,
    telegram,
    shopify,
    shop,
):
    await telegram.type(OWNER, "/order 1001")
    await press(telegram, OWNER, "Refund")
    assert last(telegram, OWNER).text.startswith("Cancel #1001 and refund 499.00 INR")
    await press(telegram, OWNER, "Confirm")
    assert shopify.cancellations[-1]["refund"] is True
    assert "refunded" in last(telegram, OWNER).text


async def test_another_shops_chats_get_nothing_of_this_shop(
    res,
    telegram,
    shopify,
    shop,
):
    await linked_shop(res, telegram, shopify, OTHER_DOMAIN, OTHER_TOKEN, OTHER_OWNER, orders=False)
    await telegram.type(OTHER_OWNER, "/invite")
    code = last(telegram, OTHER_OWNER).text.split("\n\n")[1]
    await telegram.type(AGENT, f"/start {code}")
    await telegram.type(AGENT, "/order 1001")
    assert last(telegram, AGENT).text == orders.NO_ORDER.format(name="1001", shop="other")
    message_id = last(telegram, AGENT).message_id
    for number, action, value in (
        (1001, "show", ""),
        (1001, "cancel", ""),
        (1001, "do_cancel", "FRAUD"),
        (1003, "refund", ""),
        (1003, "do_refund", "no_return"),
        (1001, "part", ""),
        (1003, "part_how", "no_return"),
        (1001, "pick", "0"),
        (1001, "part_lines", ""),
        (1001, "do_part", ""),
    ):
        await telegram.press(
            AGENT, message_id, OrderTap(number=number, action=action, value=value).pack()
        )
    texts = telegram.chat(AGENT).texts
    assert not any("#100" in text or "demo" in text for text in texts)
    assert shopify.cancellations == [] and shopify.order(DOMAIN, 10003)["refunds"] == []
    assert await timeline(res.db, 1001, shop) == [] and await timeline(res.db, 1003, shop) == []
