"""The merchant's reports in the chat, through the real bot, app and webhook route against the
fake Bot API: filters from buttons and typed, pages, the totals card, an over-7-day range refused
with the admin API's rule, the CSV document and the chart photo, and another shop's chats
getting nothing of this shop."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import matplotlib.image
from sqlalchemy import update

from bot.handlers import fallback, reports
from bot.keyboards import OrderTap, ReportAction
from flows.orders.reports import ReportDesk
from storage.models import Call, MissedCall, Order, Shop
from tests.bot.conftest import new_shop

OWNER, AGENT, OTHER_OWNER, STRANGER = 3001, 3002, 3003, 3004
CUSTOMER, OTHER_CUSTOMER = "+919876543210", "+919812345678"


async def add(res, *rows) -> None:
    async with res.db.transaction() as session:
        session.add_all(rows)


async def shop_in(res, name: str, zone: str = "Asia/Kolkata"):
    shop = await new_shop(res, name)
    async with res.db.transaction() as session:
        await session.execute(
            update(Shop).where(Shop.id == shop.shop_id).values(country="IN", timezone=zone)
        )
    return shop


def order(shop_id: int, number: int, placed_at, status="pending", phone=CUSTOMER, **extra):
    return Order(
        shop_id=shop_id,
        shopify_order_id=f"gid-{shop_id}-{number}",
        name=f"#{number}",
        number=number,
        phone=phone,
        total_amount="499.00",
        currency="INR",
        payment_method="cod",
        verification_status=status,
        placed_at=placed_at,
        created_at=placed_at,
        updated_at=placed_at,
        **extra,
    )


def press_label(telegram, chat_id: int, label: str):
    """Tap the button whose text starts with, or has the word, `label` under the bot's last
    report; returns the press's coroutine."""
    shown = report_message(telegram, chat_id)
    (data,) = [
        data
        for row in shown.buttons
        for text, data in row
        if text.startswith(label) or label in text.split()
    ]
    return telegram.press(chat_id, shown.message_id, data)


def report_message(telegram, chat_id: int):
    return next(m for m in reversed(telegram.chat(chat_id).from_bot) if m.buttons)


def order_lines(text: str) -> list[str]:
    return re.findall(r"^#\d+", text, flags=re.MULTILINE)


async def test_orders_report_filters_pages_and_totals_and_an_over_7_day_range_is_refused(
    res, webhook, telegram, clock
):
    shop = await shop_in(res, "demo")
    other = await shop_in(res, "other")
    now = clock.now()
    statuses = ["confirmed"] * 5 + ["cancelled"] * 3 + ["pending"] * 3 + ["callback_requested"]
    await add(
        res,
        *(
            order(shop.shop_id, 1001 + i, now - timedelta(hours=i + 1), status)
            for i, status in enumerate(statuses)
        ),
        order(shop.shop_id, 1100, now - timedelta(hours=2), "confirmed", phone=OTHER_CUSTOMER),
        order(shop.shop_id, 900, now - timedelta(days=9), "confirmed"),
        order(other.shop_id, 5001, now - timedelta(hours=1), "confirmed"),
    )
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OTHER_OWNER, f"/start {other.code}")

    await telegram.type(OWNER, "/orders")
    text = telegram.chat(OWNER).texts[-1]
    assert text.startswith("Orders of demo, 2025-12-29 14:30 – 2026-01-05 14:30 (Asia/Kolkata)")
    assert "Total 13 · confirmed 6 · cancelled 3 · callback requested 1 · pending 3" in text
    first_page = order_lines(text)
    assert len(first_page) == reports.PAGE_SIZE and "#900" not in text and "#5001" not in text

    await press_label(telegram, OWNER, "Next")
    shown = report_message(telegram, OWNER)
    second_page = order_lines(shown.text)
    assert len(second_page) == 3 and not set(second_page) & set(first_page)
    assert "Page 2" in shown.text and shown.edits == 1
    await press_label(telegram, OWNER, "Prev")
    assert order_lines(report_message(telegram, OWNER).text) == first_page

    await press_label(telegram, OWNER, "confirmed")
    shown = report_message(telegram, OWNER)
    assert "Total 6 · confirmed 6 · cancelled 0" in shown.text
    confirmed = ["#1001", "#1002", "#1003", "#1004", "#1005", "#1100"]
    assert sorted(order_lines(shown.text)) == confirmed
    assert any("✓ confirmed" in text for row in shown.buttons for text, _ in row)

    await press_label(telegram, OWNER, "Customer or order")
    assert telegram.chat(OWNER).texts[-1] == reports.ASK_SEARCH
    await telegram.type(OWNER, "98123 45678")
    assert order_lines(telegram.chat(OWNER).texts[-1]) == ["#1100"]
    await press_label(telegram, OWNER, "Customer or order")
    await telegram.type(OWNER, "+1 23")
    assert "customer: is not a phone number" in telegram.chat(OWNER).texts[-1]
    await telegram.type(OWNER, "#1003")
    assert order_lines(telegram.chat(OWNER).texts[-1]) == ["#1003"]

    await press_label(telegram, OWNER, "Clear")
    await press_label(telegram, OWNER, "Dates")
    assert telegram.chat(OWNER).texts[-1] == reports.ASK_DATES
    # The admin API's rule: at most 7 days; explained, and asked again.
    await telegram.type(OWNER, "2025-12-20 2026-01-05")
    refused = telegram.chat(OWNER).texts[-1]
    assert "to: must be at most 7 days after `from`" in refused
    assert reports.TRY_AGAIN in refused
    await telegram.type(OWNER, "2025-12-25 to 2025-12-31")
    text = telegram.chat(OWNER).texts[-1]
    assert order_lines(text) == ["#900"] and "Total 1 ·" in text

    # Another shop's owner sees its own orders, and this shop's buttons give it nothing.
    await telegram.type(OTHER_OWNER, "/orders")
    text = telegram.chat(OTHER_OWNER).texts[-1]
    assert order_lines(text) == ["#5001"] and "demo" not in text
    forged = OrderTap(number=1001).pack()
    await telegram.press(OTHER_OWNER, report_message(telegram, OTHER_OWNER).message_id, forged)
    assert "#1001" not in " ".join(telegram.chat(OTHER_OWNER).texts)


async def test_a_chat_no_shop_linked_gets_no_report(res, webhook, telegram, clock):
    shop = await shop_in(res, "demo")
    await add(res, order(shop.shop_id, 1001, clock.now() - timedelta(hours=1), "confirmed"))
    for command in ("/orders", "/calls", "/messages", "/missedcalls"):
        await telegram.type(STRANGER, command)
    await telegram.type(STRANGER, "x")
    message_id = telegram.chat(STRANGER).from_bot[-1].message_id
    await telegram.press(STRANGER, message_id, ReportAction(action="csv").pack())
    assert telegram.chat(STRANGER).texts == [fallback.NOT_LINKED] * 5
    assert telegram.chat(STRANGER).callback_answers == [fallback.NOT_LINKED]
    assert not telegram.called("sendDocument")


async def test_the_csv_and_the_chart_are_sent_and_readable(res, webhook, telegram, clock):
    shop = await shop_in(res, "demo", zone="Asia/Kolkata")
    now = clock.now()  # 2026-01-05 09:00 UTC, 14:30 in Kolkata
    await add(
        res,
        order(shop.shop_id, 1001, now - timedelta(hours=1), "confirmed"),
        order(shop.shop_id, 1002, now - timedelta(hours=2), "cancelled"),
        # 2026-01-04 19:00 UTC is already the 5th in Kolkata.
        order(shop.shop_id, 1003, now - timedelta(hours=14), "unverified"),
        order(shop.shop_id, 1004, now - timedelta(days=2), "confirmed", phone=OTHER_CUSTOMER),
        order(shop.shop_id, 1005, now - timedelta(days=3), "pending"),
    )
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OWNER, "/orders")
    await press_label(telegram, OWNER, "CSV")
    sent = telegram.chat(OWNER).from_bot[-1]
    assert sent.file_name.endswith(".csv") and sent.caption.endswith("5 rows")
    rows = list(csv.DictReader(io.StringIO(sent.document.decode())))
    assert [row["name"] for row in rows] == ["#1001", "#1002", "#1003", "#1004", "#1005"]
    assert rows[3]["phone"] == OTHER_CUSTOMER and rows[1]["verification_status"] == "cancelled"
    assert rows[0]["placed_at"] == (now - timedelta(hours=1)).isoformat()

    await press_label(telegram, OWNER, "Chart")
    photo = telegram.chat(OWNER).from_bot[-1]
    assert photo.photo[:8] == b"\x89PNG\r\n\x1a\n"
    assert photo.caption == reports.CHART_CAPTION.format(shop="demo", zone="Asia/Kolkata")
    image = matplotlib.image.imread(io.BytesIO(photo.photo), format="png")
    assert image.shape[:2] == (400, 800)
    zone, days = await ReportDesk(res.db, res.clock).daily(shop.shop_id)
    assert zone == "Asia/Kolkata"
    assert [(d.day.isoformat(), d.confirmed, d.cancelled, d.unverified) for d in days][-3:] == [
        ("2026-01-03", 1, 0, 0),
        ("2026-01-04", 0, 0, 0),
        ("2026-01-05", 1, 1, 1),
    ]
    assert len(days) == 7 and days[0].day.isoformat() == "2025-12-30"


async def test_calls_and_missed_calls_reports_filter_by_button(res, webhook, telegram, clock):
    shop = await shop_in(res, "demo")
    now = clock.now()
    placed = order(shop.shop_id, 1001, now - timedelta(hours=3), "confirmed")
    await add(res, placed)
    await add(
        res,
        Call(
            shop_id=shop.shop_id,
            provider="exotel",
            to_phone=CUSTOMER,
            order_id=placed.id,
            status="completed",
            input_digits="1",
            created_at=now - timedelta(hours=2),
        ),
        Call(
            shop_id=shop.shop_id,
            provider="exotel",
            to_phone=OTHER_CUSTOMER,
            status="no-answer",
            created_at=now - timedelta(hours=1),
        ),
        MissedCall(
            shop_id=shop.shop_id,
            provider="exotel",
            provider_call_id="missed-1",
            from_phone=CUSTOMER,
            to_phone="+911234567890",
            matched_order_ids=[placed.id],
            received_at=now - timedelta(minutes=30),
        ),
    )
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OWNER, "/calls")
    text = telegram.chat(OWNER).texts[-1]
    assert CUSTOMER in text and OTHER_CUSTOMER in text and "pressed 1" in text
    await press_label(telegram, OWNER, "1")
    shown = report_message(telegram, OWNER)
    assert CUSTOMER in shown.text and OTHER_CUSTOMER not in shown.text
    assert shown.button_data("#1001") == OrderTap(number=1001).pack()
    await press_label(telegram, OWNER, "inbound")
    assert reports.NOTHING in report_message(telegram, OWNER).text

    await telegram.type(OWNER, "/missedcalls")
    text = telegram.chat(OWNER).texts[-1]
    assert text.startswith("Missed calls of demo") and f"{CUSTOMER} · #1001" in text
    await press_label(telegram, OWNER, "CSV")
    rows = list(csv.DictReader(io.StringIO(telegram.chat(OWNER).from_bot[-1].document.decode())))
    assert rows == [
        {
            "received_at": (now - timedelta(minutes=30)).isoformat(),
            "from_phone": CUSTOMER,
            "to_phone": "+911234567890",
            "orders": "#1001",
        }
    ]
