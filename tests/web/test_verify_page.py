"""The customer's verification page /v/{token} over HTTP: the order and only the offered
buttons, POST-only decisions answered 303 (post/redirect/get), forged and expired links,
bad input as 400 pages that change nothing, English and Hindi, and the OTP code box.

Verifications start through the real flow (the order job, then a DND-refused call for the
link fallback) and the tokens and codes come from what the flow queued to send."""

from __future__ import annotations

import re
import string
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import pytest
from sqlalchemy import func, select

from flows.channels.messaging import SEND_JOB
from flows.orders.actions import TAGS_JOB
from flows.verification.customer_keys import CustomerKeys, TokenError
from flows.verification.flow import CallRefused
from flows.verification.runtime import VERIFY_ORDER_JOB, Verifier
from providers.base import DND
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob
from storage.models import Customer, Job, Message, Order, Shop, Verification
from web.verify_text import CATALOGS

SHOP = "chai-house.myshopify.com"
PHONE = "+919876543210"
LINK = re.compile(r"/v/([A-Za-z0-9_-]+)")
# IVR first, then the SMS link: a DND number skips the call and gets the link at once.
SHOP_PHONE = "+918040001234"
LINK_SETTINGS: dict[str, Any] = {"fallback": {"mode": "sms_link"}, "contact_phone": SHOP_PHONE}
OTP_SETTINGS: dict[str, Any] = {
    "contact_phone": SHOP_PHONE,
    "verification": {"type": "otp"},
    "otp": {"template": "%otp% is your code for %ordername%: %link%"},
}
ITEMS = [
    {"title": "Masala chai", "quantity": 2, "price": "500.00"},
    {"title": "Tea & <Biscuits>", "quantity": 1, "price": "250.00"},
]


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


@pytest.fixture
def keys(settings) -> CustomerKeys:
    return CustomerKeys(settings.secret_key())


@pytest.fixture
def verifier(db, clock, queue, settings, keys) -> Verifier:
    box = SecretBox(settings.secret_key())
    return Verifier(db, clock, queue, box, keys, settings.server.public_url)


async def place_order(
    db: Database,
    verifier: Verifier,
    document: dict[str, Any],
    *,
    language: str = "en",
    number: int = 1001,
) -> Order:
    """An installed shop with `document` as its settings, a COD order, and the order's
    verification started by the real order job."""
    now = verifier.clock.now()
    async with db.transaction() as session:
        shop = await session.scalar(select(Shop).where(Shop.domain == SHOP))
        if shop is None:
            shop = Shop(
                domain=SHOP,
                name="Chai House",
                currency="INR",
                country="IN",
                timezone="Asia/Kolkata",
                language=language,
                status="installed",
                settings=document,
                created_at=now,
                updated_at=now,
            )
            session.add(shop)
            await session.flush()
        customer = await session.scalar(select(Customer).where(Customer.shop_id == shop.id))
        if customer is None:
            # The buyer the checkout's session tokens name (sub gid://shopify/Customer/1).
            customer = Customer(
                shop_id=shop.id, phone=PHONE, shopify_customer_id="1", created_at=now
            )
            session.add(customer)
            await session.flush()
        order = Order(
            shop_id=shop.id,
            customer_id=customer.id,
            shopify_order_id=str(5512345670000 + number),
            name=f"#{number}",
            number=number,
            phone=PHONE,
            total_amount="1250.00",
            currency="INR",
            payment_method="cod",
            gateways=["Cash on Delivery (COD)"],
            financial_status="pending",
            city="Pune",
            items=ITEMS,
            placed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(order)
    payload = {"shop_id": order.shop_id, "shopify_order_id": order.shopify_order_id}
    await verifier.handle_order(
        ClaimedJob(0, VERIFY_ORDER_JOB, payload, 1, 1, None, None, now, now)
    )
    return order


async def link_order(db: Database, verifier: Verifier, document: dict[str, Any], **kw: Any):
    """An order whose IVR call was refused (DND), so the SMS with the link went at once; and
    the link's token."""
    order = await place_order(db, verifier, document, **kw)
    async with db.transaction() as session:
        vid = await session.scalar(
            select(Verification.id).where(Verification.order_id == order.id)
        )
        ctx = await verifier.load(session, vid)
        await verifier.apply(session, ctx, CallRefused(ctx.state.open_call, DND))
    return order, await token_of(db, order)


async def otp_order(db: Database, verifier: Verifier, **kw: Any):
    order = await place_order(db, verifier, OTP_SETTINGS, **kw)
    return order, await token_of(db, order)


async def token_of(db: Database, order: Order) -> str:
    async with db.sessions() as session:
        bodies = list(
            await session.scalars(
                select(Message.body).where(Message.order_id == order.id).order_by(Message.id)
            )
        )
    found = LINK.search(bodies[-1])
    assert found, bodies
    return found.group(1)


async def otp_code(db: Database, keys: CustomerKeys, order: Order) -> str:
    """The code of the order's latest OTP SMS, from its send job's nonce (no code is stored)."""
    async with db.sessions() as session:
        ids = set(await session.scalars(select(Message.id).where(Message.order_id == order.id)))
        jobs = list(
            await session.scalars(select(Job).where(Job.kind == SEND_JOB).order_by(Job.id))
        )
    otps = [
        job.payload["details"]["otp"]
        for job in jobs
        if job.payload["message_id"] in ids and "otp" in job.payload["details"]
    ]
    return keys.otp_code(otps[-1]["nonce"], otps[-1]["length"])


def other_code(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


async def status_of(db: Database, order: Order) -> str:
    async with db.sessions() as session:
        return await session.scalar(select(Order.verification_status).where(Order.id == order.id))


async def tag_jobs(db: Database) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count(Job.id)).where(Job.kind == TAGS_JOB))


async def post(client, token: str, **form: str):
    return await client.post(f"/v/{token}", data=form, allow_redirects=False)


async def follow(client, token: str, response) -> str:
    """The page a 303 answer leads back to."""
    assert response.status == 303, await response.text()
    target = urljoin(f"/v/{token}", response.headers["Location"])
    assert target.startswith(f"/v/{token}")
    page = await client.get(target)
    assert page.status == 200
    return await page.text()


def buttons(html: str) -> list[str]:
    return re.findall(r'<button type="submit" name="action" value="(\w+)"', html)


def heading(html: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", html).group(1)


# The link page -------------------------------------------------------------------------


async def test_page_shows_the_order_and_the_offered_buttons(client, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    response = await client.get(f"/v/{token}")
    assert response.status == 200
    assert response.content_type == "text/html" and response.charset == "utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    html = await response.text()
    assert '<html lang="en">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    for shown in ("Chai House", "Order #1001", "Masala chai × 2", "₹1,250.00", "Pune"):
        assert shown in html
    assert "Tea &amp; &lt;Biscuits&gt; × 1" in html  # escaped, never markup
    assert buttons(html) == ["confirm", "cancel", "callback"]
    for label in ("Confirm order", "Cancel order", "Request a call back"):
        assert label in html
    assert html.count('<form method="post">') == 3  # one form per action
    assert "<script" not in html and "http" not in html.split("<body>")[1]
    assert await status_of(db, order) == "pending"


async def test_an_empty_callback_tag_hides_the_callback_button(client, db, verifier):
    document = {"fallback": {"mode": "sms_link", "sms_link": {"callback_tag": ""}}}
    _, token = await link_order(db, verifier, document)
    html = await (await client.get(f"/v/{token}")).text()
    assert buttons(html) == ["confirm", "cancel"]
    assert "Request a call back" not in html
    response = await post(client, token, action="callback")  # not offered: nothing happens
    assert "Confirm order" in await follow(client, token, response)


async def test_confirm_is_a_post_answered_with_a_redirect_to_the_page(client, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    response = await post(client, token, action="confirm")
    assert response.status == 303 and response.headers["Location"] == token
    assert await status_of(db, order) == "confirmed"
    assert await tag_jobs(db) == 1
    html = await follow(client, token, response)
    assert "Your order is confirmed. Thank you!" in html
    assert buttons(html) == []


async def test_a_second_action_changes_nothing_and_the_page_shows_the_decision(
    client, db, verifier
):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    await post(client, token, action="confirm")
    again = await post(client, token, action="cancel")
    html = await follow(client, token, again)
    assert "Your order is confirmed" in html and buttons(html) == []
    assert await status_of(db, order) == "confirmed"
    assert await tag_jobs(db) == 1


@pytest.mark.parametrize(
    ("action", "status", "line"),
    [
        ("cancel", "cancelled", "Your order is cancelled."),
        ("callback", "callback_requested", "We will call you back."),
    ],
)
async def test_cancel_and_callback_show_their_status(client, db, verifier, action, status, line):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    html = await follow(client, token, await post(client, token, action=action, sure="yes"))
    assert line in html
    assert await status_of(db, order) == status


async def test_opening_the_page_never_decides(client, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    for _ in range(3):
        assert (await client.get(f"/v/{token}")).status == 200
    assert (await client.head(f"/v/{token}")).status == 200
    assert (await client.get(f"/v/{token}?action=confirm")).status == 200
    assert await status_of(db, order) == "pending"
    assert await tag_jobs(db) == 0


async def test_a_skipped_order_is_no_longer_awaiting_confirmation(client, db, verifier, keys):
    order = await place_order(db, verifier, {"eligibility": {"max_amount": 100}, **LINK_SETTINGS})
    assert await status_of(db, order) == "skipped"
    async with db.sessions() as session:
        vid = await session.scalar(
            select(Verification.id).where(Verification.order_id == order.id)
        )
    token = keys.link_token(vid, verifier.clock.now() + timedelta(hours=1))
    html = await (await client.get(f"/v/{token}")).text()
    assert "This order is no longer awaiting confirmation." in html and buttons(html) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_forged_or_damaged_link_is_404_and_changes_nothing(client, db, verifier, method):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    forged = ("A" if token[0] != "A" else "B") + token[1:]
    for bad in (forged, token[:-3], "not-a-token", "%25%25"):
        response = await client.request(method, f"/v/{bad}", data={"action": "confirm"})
        assert response.status == 404
        html = await response.text()
        assert "This link is not valid." in html and '<html lang="en">' in html
    assert await status_of(db, order) == "pending"
    assert await tag_jobs(db) == 0


def lenient_twins(token: str) -> list[str]:
    """Other spellings of the token's bytes that a lenient base64 decoder reads the same:
    padding, trailing garbage, a non-zero unused bit in the last character, `+` for `-`."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    twins = [token + "=", token + "==", token + "~~~", token + "=garbage", token + "!="]
    twins.append(token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1])
    if "-" in token:
        twins.append(token.replace("-", "+", 1))
    return twins


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_link_is_read_strictly(client, db, verifier, keys, method):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    for twin in lenient_twins(token):
        response = await client.request(method, f"/v/{twin}", data={"action": "confirm"})
        assert response.status == 404, twin
        assert "This link is not valid." in await response.text()
    assert await status_of(db, order) == "pending"
    assert await tag_jobs(db) == 0
    # Whatever the id and expiry, no other spelling of a token is read.
    now = verifier.clock.now()
    for vid in (1, 2**20 + 7, 2**63 - 1):
        made = keys.link_token(vid, now + timedelta(hours=vid % 47 + 1))
        assert keys.read_link(made, now).verification_id == vid
        for twin in lenient_twins(made):
            with pytest.raises(TokenError):
                keys.read_link(twin, now)


async def test_an_expired_link_is_410_and_changes_nothing(client, db, verifier, clock):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    clock.advance(timedelta(hours=48))  # link_expiry_hours
    page = await client.get(f"/v/{token}")
    assert page.status == 410
    assert "This link has expired." in await page.text()
    pressed = await post(client, token, action="confirm")
    assert pressed.status == 410
    assert await status_of(db, order) == "pending"
    assert await tag_jobs(db) == 0


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "delete"}, "That choice is not available."),
        ({"action": ""}, "That choice is not available."),
        ({}, "The form was empty or incomplete."),
        ({"resend": "0"}, "The form was empty or incomplete."),
    ],
)
async def test_bad_input_is_a_400_page_that_explains(client, db, verifier, form, message):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    response = await post(client, token, **form)
    assert response.status == 400
    html = await response.text()
    assert message in html and 'role="alert"' in html
    assert buttons(html) == ["confirm", "cancel", "callback"]  # the page, to try again
    assert await status_of(db, order) == "pending"


async def test_a_malformed_body_is_a_400_not_a_500(client, db, verifier):
    _, token = await link_order(db, verifier, LINK_SETTINGS)
    for content_type in ("multipart/form-data", "application/x-www-form-urlencoded; charset=x"):
        response = await client.post(
            f"/v/{token}", data=b"garbage", headers={"Content-Type": content_type}
        )
        assert response.status == 400


# Cancelling asks once more; a decided page says what was decided ---------------------


async def test_cancel_asks_once_more_and_only_the_second_step_cancels(client, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    first = await post(client, token, action="cancel")
    assert first.status == 303 and first.headers["Location"] == f"{token}?ask=cancel"
    assert await status_of(db, order) == "pending"
    assert await tag_jobs(db) == 0
    html = await follow(client, token, first)
    assert heading(html) == "Cancel this order?"
    assert "Cancelling cannot be undone. Do you want to cancel order #1001?" in html
    # The second step is a plain form: it works without JavaScript.
    form = re.search(r'<form method="post">(.*?)</form>', html, re.S).group(1)
    assert '<input type="hidden" name="sure" value="yes">' in form
    assert '<button type="submit" name="action" value="cancel"' in form
    assert "Yes, cancel my order" in form
    keep = f'<form method="get" action="{token}">\n<button type="submit" class="secondary">'
    assert keep + "No, keep my order</button>" in html
    assert buttons(html) == ["cancel"]  # only the answer to the question
    assert "<script" not in html
    # Opening the question again, or keeping the order, changes nothing.
    assert (await client.get(f"/v/{token}?ask=cancel")).status == 200
    kept = await (await client.get(f"/v/{token}")).text()
    assert heading(kept) == "Confirm your order"
    assert buttons(kept) == ["confirm", "cancel", "callback"]
    assert await status_of(db, order) == "pending"
    sure = await post(client, token, action="cancel", sure="yes")
    assert sure.status == 303 and sure.headers["Location"] == token
    assert await status_of(db, order) == "cancelled"
    assert await tag_jobs(db) == 1
    html = await follow(client, token, sure)
    assert heading(html) == "Order cancelled"
    assert "Your order is cancelled." in html and buttons(html) == []


async def test_anything_but_yes_asks_again(client, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS)
    for sure in ("", "no", "YES", "1"):
        response = await post(client, token, action="cancel", sure=sure)
        assert response.headers["Location"] == f"{token}?ask=cancel"
    assert await status_of(db, order) == "pending"


async def test_the_question_is_only_asked_of_an_order_that_can_be_cancelled(client, db, verifier):
    document = {**LINK_SETTINGS, "fallback": {"mode": "sms_link", "sms_link": {"cancel_tag": ""}}}
    _, token = await link_order(db, verifier, document)
    html = await (await client.get(f"/v/{token}?ask=cancel")).text()
    assert heading(html) == "Confirm your order" and buttons(html) == ["confirm", "callback"]
    response = await post(client, token, action="cancel")  # not offered: nothing to ask
    assert response.headers["Location"] == token
    order, token = await link_order(db, verifier, LINK_SETTINGS, number=1002)
    await post(client, token, action="confirm")
    html = await (await client.get(f"/v/{token}?ask=cancel")).text()
    assert heading(html) == "Order confirmed" and "Cancel this order?" not in html
    again = await post(client, token, action="cancel", sure="yes")
    assert "Order confirmed" in await follow(client, token, again)
    assert await status_of(db, order) == "confirmed"


@pytest.mark.parametrize(
    ("action", "title", "line"),
    [
        ("confirm", "Order confirmed", "Your order is confirmed. Thank you!"),
        ("cancel", "Order cancelled", "Your order is cancelled."),
        ("callback", "Call back requested", "We will call you back."),
    ],
)
async def test_a_decided_page_says_what_was_decided_and_how_to_reach_the_shop(
    client, db, verifier, action, title, line
):
    _, token = await link_order(db, verifier, LINK_SETTINGS)
    pending = await (await client.get(f"/v/{token}")).text()
    assert SHOP_PHONE not in pending  # the contact line comes with a decision
    html = await follow(client, token, await post(client, token, action=action, sure="yes"))
    assert heading(html) == title
    assert f"<title>{title} · Chai House</title>" in html
    assert line in html
    assert "Questions? Call Chai House on" in html
    assert f'<a href="tel:{SHOP_PHONE}">+91 80 4000 1234</a>' in html


async def test_without_a_contact_phone_no_contact_line(client, db, verifier):
    _, token = await link_order(db, verifier, {"fallback": {"mode": "sms_link"}})
    html = await follow(client, token, await post(client, token, action="confirm"))
    assert heading(html) == "Order confirmed" and "Questions?" not in html


async def test_a_verified_otp_page_says_so(client, db, verifier, keys):
    order, token = await otp_order(db, verifier)
    right = await post(client, token, code=await otp_code(db, keys, order))
    html = await follow(client, token, right)
    assert heading(html) == "Order confirmed"
    assert f'<a href="tel:{SHOP_PHONE}">' in html


async def test_the_second_step_and_the_outcome_in_hindi(client, db, verifier):
    order, token = await link_order(db, verifier, LINK_SETTINGS, language="hi")
    html = await follow(client, token, await post(client, token, action="cancel"))
    assert heading(html) == "यह ऑर्डर रद्द करें?"
    assert "हाँ, मेरा ऑर्डर रद्द करें" in html and "नहीं, मेरा ऑर्डर रखें" in html
    html = await follow(client, token, await post(client, token, action="cancel", sure="yes"))
    assert heading(html) == "ऑर्डर रद्द कर दिया गया"
    assert "कोई सवाल हो तो Chai House को" in html and "+91 80 4000 1234" in html
    assert await status_of(db, order) == "cancelled"


# Languages -----------------------------------------------------------------------------


async def test_the_page_speaks_the_shops_language(client, db, verifier):
    _, token = await link_order(db, verifier, LINK_SETTINGS, language="hi")
    html = await (await client.get(f"/v/{token}")).text()
    assert '<html lang="hi">' in html
    for shown in ("अपने ऑर्डर की पुष्टि करें", "ऑर्डर #1001", "ऑर्डर रद्द करें", "डिलीवरी का शहर"):
        assert shown in html
    assert "Confirm order" not in html and "Delivery city" not in html
    response = await post(client, token, action="confirm")
    assert "आपके ऑर्डर की पुष्टि हो गई है।" in await follow(client, token, response)


async def test_another_language_falls_back_to_english(client, db, verifier):
    _, token = await link_order(db, verifier, LINK_SETTINGS, language="ta")
    html = await (await client.get(f"/v/{token}")).text()
    assert '<html lang="en">' in html and "Confirm order" in html


async def test_a_link_problem_speaks_the_browsers_language(client):
    response = await client.get(
        "/v/nothing", headers={"Accept-Language": "hi-IN,hi;q=0.9,en;q=0.8"}
    )
    assert response.status == 404
    html = await response.text()
    assert '<html lang="hi">' in html and "यह लिंक मान्य नहीं है।" in html


def test_every_catalog_has_every_string_with_the_same_placeholders():
    placeholders = re.compile(r"\{(\w+)\}")
    english = CATALOGS["en"]
    for language, catalog in CATALOGS.items():
        assert catalog.keys() == english.keys(), language
        for key, text in catalog.items():
            assert set(placeholders.findall(text)) == set(placeholders.findall(english[key]))
    devanagari = re.compile("[\u0900-\u097f]")
    assert all(devanagari.search(text) for key, text in CATALOGS["hi"].items() if key != "item")


# The OTP page --------------------------------------------------------------------------


async def test_the_otp_page_has_an_accessible_code_box(client, db, verifier, clock):
    _, token = await otp_order(db, verifier)
    html = await (await client.get(f"/v/{token}")).text()
    assert '<label for="code">Verification code</label>' in html
    code_box = re.search(r"<input [^>]*>", html).group(0)
    for attribute in (
        'id="code"',
        'name="code"',
        'inputmode="numeric"',
        'autocomplete="one-time-code"',
        'pattern="[0-9]{6}"',
        'maxlength="6"',
    ):
        assert attribute in code_box
    assert '<button type="submit">Verify</button>' in html
    assert "Send a new code (in 30 s)" in html and " disabled>" in html  # just sent
    clock.advance(timedelta(seconds=30))
    html = await (await client.get(f"/v/{token}")).text()
    assert '<button type="submit" name="resend" value="1" class="secondary">' in html
    assert " disabled>" not in html


async def test_a_wrong_code_then_the_right_one(client, db, verifier, keys):
    order, token = await otp_order(db, verifier)
    code = await otp_code(db, keys, order)
    wrong = await post(client, token, code=other_code(code))
    assert wrong.headers["Location"] == f"{token}?otp=wrong&left=3"
    html = await follow(client, token, wrong)
    assert "That code is not correct. 3 attempts left." in html and 'name="code"' in html
    right = await post(client, token, code=code)
    assert right.headers["Location"] == f"{token}?otp=verified"
    html = await follow(client, token, right)
    assert "Thank you, the code is correct." in html
    assert "Your order is confirmed." in html and 'name="code"' not in html
    assert await status_of(db, order) == "confirmed"
    assert await tag_jobs(db) == 1


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 456", "", "١٢٣٤٥٦"])
async def test_a_malformed_code_is_a_400_and_is_not_counted(client, db, verifier, keys, code):
    order, token = await otp_order(db, verifier)
    response = await post(client, token, code=code)
    assert response.status == 400
    assert "The code must be exactly 6 digits. Nothing was counted" in await response.text()
    right = await otp_code(db, keys, order)
    wrong = await post(client, token, code=other_code(right))
    assert wrong.headers["Location"].endswith("otp=wrong&left=3")  # the first wrong one


async def test_too_many_wrong_codes_lock_the_order(client, db, verifier, keys):
    order, token = await otp_order(db, verifier)
    wrong = other_code(await otp_code(db, keys, order))
    for left in (3, 2, 1):
        response = await post(client, token, code=wrong)
        assert response.headers["Location"].endswith(f"left={left}")
    assert "1 attempt left." in await follow(client, token, response)
    locked = await post(client, token, code=wrong)
    html = await follow(client, token, locked)
    assert "Too many wrong codes." in html and 'name="code"' not in html
    assert "This order is no longer awaiting confirmation." in html
    assert await status_of(db, order) == "unverified"


async def test_a_new_code_on_the_page(client, db, verifier, keys, clock):
    order, token = await otp_order(db, verifier)
    first = await otp_code(db, keys, order)
    early = await post(client, token, resend="1")
    assert early.headers["Location"] == f"{token}?otp=too_early&wait=30"
    assert "Please wait 30 seconds before asking for a new code." in await follow(
        client, token, early
    )
    clock.advance(timedelta(seconds=30))
    resent = await post(client, token, resend="1")
    assert resent.headers["Location"] == f"{token}?otp=resent&wait=30"
    assert "We have sent you a new code by SMS." in await follow(client, token, resent)
    stale = await post(client, token, code=first)
    assert stale.headers["Location"].endswith("otp=wrong&left=3")  # the new code replaced it
    verified = await post(client, token, code=await otp_code(db, keys, order))
    assert verified.headers["Location"].endswith("otp=verified")


async def test_the_otp_page_in_hindi(client, db, verifier, keys):
    order, token = await otp_order(db, verifier, language="hi")
    html = await (await client.get(f"/v/{token}")).text()
    assert '<html lang="hi">' in html and "सत्यापन कोड" in html and "सत्यापित करें" in html
    wrong = await post(client, token, code=other_code(await otp_code(db, keys, order)))
    assert "यह कोड सही नहीं है। 3 प्रयास बाकी हैं।" in await follow(client, token, wrong)


async def test_a_forged_outcome_in_the_query_is_ignored(client, db, verifier):
    _, token = await otp_order(db, verifier)
    for query in ("otp=hacked", "otp=wrong&left=<b>", "otp=wrong", "otp=too_early&wait=99999"):
        html = await (await client.get(f"/v/{token}?{query}")).text()
        assert 'class="notice' not in html
