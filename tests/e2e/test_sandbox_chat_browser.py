"""The merchant's chat pane in a real browser, the newcomer's walk: link the demo shop with the
code the pane shows, change a settings page (one wrong answer explained), read /orders and its
chart, cancel an order from its card, and answer a customer's message relayed into the chat,
all with the real bot behind a simulated Telegram Bot API.

Headless Debian Chromium against a fresh `main.py sandbox` per test (tests/e2e/conftest.py).
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from providers.sandbox.shop import SHOP_NAME, TWILIO_NUMBER
from tests.e2e.test_sandbox_browser import create_order

CUSTOMER = "+919876500001"  # the phone the page shows first
# The alerts' scan runs every 10 seconds: a relayed message may take that long to arrive.
ALERT_MS = 25_000


def send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-text").fill(text)
    page.get_by_test_id("chat-send").click()
    mine = page.locator('[data-testid="chat-message"][data-from="merchant"]').last
    expect(mine.get_by_test_id("chat-message-text")).to_have_text(text)


def last_bot_message(page: Page) -> Locator:
    """The text of the bot's latest message."""
    bot = page.locator('[data-testid="chat-message"][data-from="bot"]').last
    return bot.get_by_test_id("chat-message-text")


def page_title(number: int, title: str) -> re.Pattern[str]:
    """A settings page's heading, whatever the number of pages."""
    return re.compile(rf"Settings {number}/\d+: {title}")


def press(page: Page, label: str) -> None:
    """Tap the button `label` of the bot's latest message that has it."""
    page.get_by_test_id("chat-button").filter(has_text=label).last.click()


def test_the_newcomers_walk_through_the_merchants_chat(page: Page) -> None:
    # Link: the pane shows the demo shop's one-time code.
    status = page.get_by_test_id("chat-link-status")
    expect(status).to_contain_text("Not linked yet")
    expect(page.get_by_test_id("chat-link-code")).to_have_text(re.compile(r"^[A-Z0-9]{10}$"))
    code = page.get_by_test_id("chat-link-code").inner_text()
    page.get_by_test_id("chat-use-code").click()
    expect(page.get_by_test_id("chat-text")).to_have_value(f"/start {code}")
    page.get_by_test_id("chat-send").click()
    expect(status).to_have_text(f"This chat is linked to {SHOP_NAME} as owner.")
    expect(last_bot_message(page)).to_contain_text(f"linked to {SHOP_NAME} as owner")
    expect(page.get_by_test_id("chat-code-line")).to_be_hidden()
    # The bot set its command menu; the pane offers it.
    expect(page.get_by_test_id("chat-command").filter(has_text="/orders")).to_have_count(1)

    # Settings, one page: a wrong contact phone is explained and asked again, then saved.
    send(page, "/settings")
    expect(last_bot_message(page)).to_contain_text(page_title(1, "Contact details"))
    press(page, "Contact phone")
    expect(last_bot_message(page)).to_contain_text("Send the Contact phone")
    send(page, "98765")
    expect(last_bot_message(page)).to_contain_text("Send the Contact phone")
    expect(page.get_by_test_id("chat-messages")).to_contain_text("must be + and 8 to 15 digits")
    send(page, "+919876500099")
    expect(last_bot_message(page)).to_contain_text("Contact phone: +919876500099")
    press(page, "Save and proceed")
    expect(last_bot_message(page)).to_contain_text(page_title(2, "Order verification"))
    send(page, "/cancel")

    # Reports: an order, /orders with it, and the chart as a picture in the chat.
    row = create_order(page, CUSTOMER, customer="Asha Rao")
    name = row.get_attribute("data-order-name")
    assert name is not None
    send(page, "/orders")
    expect(last_bot_message(page)).to_contain_text(name)
    press(page, "Chart")
    photo = page.get_by_test_id("chat-photo").last
    expect(photo).to_be_visible()
    expect(photo).to_have_attribute("alt", f"Orders of {SHOP_NAME}, last 7 days (Asia/Kolkata)")
    loaded = "img => img.complete && img.naturalWidth > 300"
    page.wait_for_function(loaded, arg=photo.element_handle())

    # The order's card, then cancel it: a reason, the summary, confirm.
    send(page, f"/order {name.lstrip('#')}")
    expect(last_bot_message(page)).to_contain_text(f"Order {name}")
    press(page, "Cancel order")
    expect(last_bot_message(page)).to_contain_text(f"Why is {name} cancelled?")
    press(page, "Customer")
    expect(last_bot_message(page)).to_contain_text("Confirm?")
    press(page, "Confirm")
    expect(last_bot_message(page)).to_contain_text(f"{name} is cancelled")
    expect(row).to_have_attribute("data-cancelled", "true")  # cancelled in Shopify

    # A customer's message reaches the chat; a Telegram reply to it answers them by SMS.
    sms = page.get_by_test_id("setup-sms")
    twilio = sms.locator("option", has_text="Twilio")
    sms.select_option(twilio.get_attribute("value"))
    page.get_by_test_id("setup-save").click()
    expect(page.get_by_test_id("setup-status-message")).to_have_text("Saved the account.")
    page.get_by_test_id("reply-channel").select_option("sms")
    page.get_by_test_id("reply-text").fill("Can it come on Sunday?")
    page.get_by_test_id("reply-send").click()
    forwarded = page.get_by_test_id("chat-message").filter(has_text="Can it come on Sunday?")
    expect(forwarded).to_contain_text(f"Message from {CUSTOMER} on SMS", timeout=ALERT_MS)
    forwarded.get_by_test_id("chat-reply").click()
    expect(page.get_by_test_id("chat-replying")).to_contain_text("Message from")
    send(page, "Yes, Sunday works.")
    expect(last_bot_message(page)).to_have_text(f"Sent to {CUSTOMER}.")
    expect(page.get_by_test_id("chat-quote").last).to_contain_text("Message from")
    received = page.locator('[data-testid="sms-bubble"][data-direction="out"]').filter(
        has_text="Yes, Sunday works."
    )
    expect(received).to_contain_text(f"from {TWILIO_NUMBER}")
    expect(page.get_by_test_id("chat-error")).to_be_empty()
