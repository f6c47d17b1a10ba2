"""The merchant's threads in a real browser: the customer types a question on the simulated
phone, it shows in the merchant's view as an unanswered thread, the merchant types an answer
there, and it arrives on the phone by SMS from the shop's number the customer wrote to.

Headless Debian Chromium against a fresh `main.py sandbox` per test (tests/e2e/conftest.py).
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from providers.sandbox.shop import TWILIO_NUMBER

CUSTOMER = "+919876500001"  # the phone the page shows first


def test_a_customers_sms_is_answered_from_the_merchants_thread(page: Page) -> None:
    # SMS by the demo's Twilio: the shop answers from the number the customer texts.
    sms = page.get_by_test_id("setup-sms")
    twilio = sms.locator("option", has_text="Twilio")
    expect(twilio).to_have_count(1)
    sms.select_option(twilio.get_attribute("value"))
    page.get_by_test_id("setup-save").click()
    expect(page.get_by_test_id("setup-status-message")).to_have_text("Saved the account.")
    expect(page.get_by_test_id("threads-empty")).to_be_visible()

    expect(page.get_by_test_id("phone-number")).to_have_text(CUSTOMER)
    page.get_by_test_id("reply-channel").select_option("sms")
    page.get_by_test_id("reply-text").fill("Can I pay by card instead?")
    page.get_by_test_id("reply-send").click()

    thread = page.locator(f'[data-testid="thread-item"][data-phone="{CUSTOMER}"]')
    expect(thread).to_have_attribute("data-status", "unanswered")
    expect(thread).to_have_attribute("data-channel", "sms")
    expect(thread.get_by_test_id("thread-status")).to_have_text("Unanswered")
    question = thread.get_by_test_id("thread-message")
    expect(question).to_have_count(1)
    expect(question).to_have_attribute("data-direction", "in")
    expect(question).to_contain_text("Can I pay by card instead?")
    expect(page.get_by_test_id("threads-empty")).to_be_hidden()

    # An empty answer is refused, the reason beside the box.
    answer = thread.get_by_test_id("thread-reply-text")
    thread.get_by_test_id("thread-reply-send").click()
    expect(thread.get_by_test_id("thread-reply-error")).to_contain_text("at least 1 character")
    expect(answer).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("threads-error")).to_be_empty()

    answer.fill("Yes: the courier takes cards.")
    thread.get_by_test_id("thread-reply-send").click()

    received = page.locator('[data-testid="sms-bubble"][data-direction="out"]')
    expect(received).to_have_count(1)
    expect(received).to_contain_text("Yes: the courier takes cards.")
    expect(received).to_contain_text(f"from {TWILIO_NUMBER}")
    expect(thread).to_have_attribute("data-status", "answered")
    messages = thread.get_by_test_id("thread-message")
    expect(messages).to_have_count(2)
    expect(messages.nth(1)).to_have_attribute("data-direction", "out")
    expect(messages.nth(1)).to_contain_text("Yes: the courier takes cards.")
    expect(answer).to_have_value("")
    expect(thread.get_by_test_id("thread-reply-error")).to_be_empty()
