"""Order notifications in a real browser: the merchant turns SMS notifications on in the shop
pane (through the admin API), the customer subscribes to SMS in Shopify, the order is marked
shipped with its tracking details, and the SMS with the tracking URL arrives on the simulated
phone; the order's row tells which notifications went out and which were skipped, and why.

Headless Debian Chromium against a fresh `main.py sandbox` per test (tests/e2e/conftest.py).
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

CUSTOMER = "+919876500001"  # the phone the page shows first
TRACKING_URL = "https://bluedart.example/track/BD5566778899"


def test_an_order_marked_shipped_texts_its_tracking_url(page: Page) -> None:
    page.get_by_test_id("notify-sms").check()
    expect(page.get_by_test_id("notify-form")).to_have_attribute("data-sms", "on")
    expect(page.get_by_test_id("notify-summary")).to_contain_text("SMS active")

    page.get_by_test_id("order-payment-prepaid").check()
    page.get_by_test_id("order-create").click()
    row = page.get_by_test_id("order-row").first
    # The customer had not consented yet: the order's notification was skipped, saying why.
    skipped = row.locator('[data-testid="order-row-notification"][data-kind="skipped"]')
    expect(skipped).to_contain_text("Order created: SMS not sent: the customer has not consented")
    not_sent = page.get_by_test_id("suppressed-bubble")
    expect(not_sent).to_contain_text("SMS not sent: the customer has not consented to SMS")

    customer = page.locator(f'[data-testid="customer-row"][data-phone="{CUSTOMER}"]')
    customer.get_by_test_id("customer-sms-consent-toggle").click()
    expect(page.get_by_test_id("phone-consent")).to_have_text("Opted in to SMS")

    row.locator("summary").click()
    expect(row.get_by_test_id("order-row-carrier")).to_have_value("Delhivery")
    row.get_by_test_id("order-row-carrier").fill("Blue Dart")
    row.get_by_test_id("order-row-tracking-number").fill("BD5566778899")
    row.get_by_test_id("order-row-tracking-url").fill(TRACKING_URL)
    row.get_by_test_id("order-row-fulfil").click()

    received = page.locator('[data-testid="sms-bubble"][data-direction="out"]')
    expect(received).to_have_count(1)
    expect(received).to_contain_text(f"fulfilled by Blue Dart. Track it at {TRACKING_URL}")
    marking = row.get_by_test_id("order-row-marking")
    expect(marking).to_contain_text("Shipped · reported by Shopify's webhook")
    sent = row.locator('[data-testid="order-row-notification"][data-kind="message"]')
    expect(sent).to_contain_text("Shipped: SMS")
    expect(row.get_by_test_id("order-row-fulfil")).to_be_disabled()
    expect(page.get_by_test_id("shop-error")).to_be_empty()


def test_a_whatsapp_template_arrives_with_its_buttons(page: Page) -> None:
    page.get_by_test_id("notify-whatsapp").check()
    expect(page.get_by_test_id("notify-form")).to_have_attribute("data-whatsapp", "on")
    expect(page.get_by_test_id("notify-summary")).to_contain_text("WhatsApp on for")

    page.get_by_test_id("order-payment-prepaid").check()
    page.get_by_test_id("order-create").click()
    customer = page.locator(f'[data-testid="customer-row"][data-phone="{CUSTOMER}"]')
    customer.get_by_test_id("customer-whatsapp-consent-toggle").click()
    expect(page.get_by_test_id("phone-consent")).to_have_text("Opted in to WhatsApp")

    row = page.get_by_test_id("order-row").first
    row.get_by_test_id("order-row-fulfil").click()
    received = page.locator('[data-testid="whatsapp-bubble"][data-direction="out"]')
    expect(received).to_have_count(1)
    expect(received).to_contain_text("has shipped with Delhivery (AWB DL")
    expect(received.get_by_test_id("whatsapp-button")).to_have_text(["Talk to us"])
    link = received.get_by_test_id("whatsapp-link")
    expect(link).to_have_text("Visit the store")
    expect(link).to_have_attribute("href", "https://demo-store.myshopify.com/")
    sent = row.locator('[data-testid="order-row-notification"][data-kind="message"]')
    expect(sent).to_contain_text("Shipped: WhatsApp")
    expect(page.get_by_test_id("shop-error")).to_be_empty()
