"""The customer's verification page, `GET` and `POST /v/{token}`: the order with its Confirm /
Cancel / Call back buttons (the SMS link), or a code box (the OTP SMS's link).

Only a POST acts — a link preview's GET never decides — and it answers 303 back to the page
(post/redirect/get), with an OTP outcome in the query for the page to say. Cancelling cannot be
undone, so Cancel asks once more (`?ask=cancel`, a plain form: no script) and only its "yes"
(`sure=yes`) cancels. A decided page says what was decided and how to reach the shop. A forged
token is 404, an expired one 410, and bad input a 400 page that says what to do; none changes
a thing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import phonenumbers
from aiohttp import web
from multidict import MultiDict, MultiMapping

from flows.verification.customer_keys import TokenError
from flows.verification.customer_page import OtpOutcome, PageView
from flows.verification.flow import CALLBACK, CANCELLED, CONFIRMED, DECISIONS, PENDING
from web.keys import customer_desk_key
from web.templates import templates_key
from web.verify_text import language_of, negotiate, translate

# The token in the URL is the customer's key: keep the page out of caches, referrers,
# search indexes and other sites' frames. The page has no script and no outside asset.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
_STATUS_LINES = {
    CONFIRMED: "status_confirmed",
    CANCELLED: "status_cancelled",
    CALLBACK: "status_callback",
}
_HEADINGS = {
    CONFIRMED: "heading_confirmed",
    CANCELLED: "heading_cancelled",
    CALLBACK: "heading_callback",
}
# How the page shows each OTP outcome carried in the redirect's query.
_TONES = {
    "verified": "ok",
    "resent": "ok",
    "wrong": "error",
    "locked": "error",
    "expired": "error",
    "resend_limit": "error",
    "too_early": "info",
    "already_verified": "info",
    "not_pending": "info",
}


@dataclass(frozen=True)
class Notice:
    tone: str  # ok | error | info
    text: str


@dataclass(frozen=True)
class Contact:
    """The line with the shop's phone: the text before and after the number, and the number
    as shown."""

    before: str
    shown: str
    after: str


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/v/{token}", show)
    app.router.add_post("/v/{token}", submit)


async def show(request: web.Request) -> web.Response:
    try:
        page = await request.app[customer_desk_key].view(request.match_info["token"])
    except TokenError as exc:
        return _token_problem(request, exc)
    if page is None:
        return _gone(request)
    notice = _outcome_notice(request.query, language_of(page.language))
    return _page(request, page, notice, asking=request.query.get("ask") == "cancel")


async def submit(request: web.Request) -> web.Response:
    try:
        return await _submit(request, request.match_info["token"])
    except TokenError as exc:
        return _token_problem(request, exc)


async def _submit(request: web.Request, token: str) -> web.Response:
    desk = request.app[customer_desk_key]
    page = await desk.view(token)
    if page is None:
        return _gone(request)
    language = language_of(page.language)
    form = await _form(request)
    code, action = form.get("code"), form.get("action")
    if isinstance(code, str):
        code = code.strip()
        if not re.fullmatch(f"[0-9]{{{page.otp_length}}}", code):
            notice = _error(language, "bad_code", length=page.otp_length)
            return _page(request, page, notice, status=400)
        return _after_otp(request, token, await desk.enter_on_page(token, code))
    if form.get("resend") == "1":
        return _after_otp(request, token, await desk.resend_on_page(token))
    if isinstance(action, str):
        if action not in DECISIONS:
            return _page(request, page, _error(language, "bad_action"), status=400)
        if action == "cancel" and form.get("sure") != "yes":
            # Not yet: ask once more, if the order can still be cancelled at all.
            query = {"ask": "cancel"} if "cancel" in page.actions else None
            raise web.HTTPSeeOther(_back(token, query))
        if await desk.act(token, action) is None:
            return _gone(request)
        raise web.HTTPSeeOther(_back(token))
    return _page(request, page, _error(language, "bad_form"), status=400)


async def _form(request: web.Request) -> MultiMapping[Any]:
    try:
        return await request.post()
    except (ValueError, LookupError):  # a malformed body or unknown charset: an empty form
        return MultiDict()


def _after_otp(
    request: web.Request, token: str, answered: tuple[PageView, OtpOutcome] | None
) -> web.Response:
    if answered is None:
        return _gone(request)
    _, outcome = answered
    query: dict[str, int | str] = {"otp": outcome.result}
    if outcome.result == "wrong":
        query["left"] = outcome.attempts_left
    elif outcome.result in ("too_early", "resent"):
        query["wait"] = math.ceil(outcome.retry_after)
    raise web.HTTPSeeOther(_back(token, query))


def _back(token: str, query: dict[str, int | str] | None = None) -> str:
    # Relative to /v/{token} itself, so the page keeps working behind a proxy that
    # serves it under a path prefix.
    return f"{token}?{urlencode(query)}" if query else token


def _outcome_notice(query: MultiMapping[str], language: str) -> Notice | None:
    result = query.get("otp", "")
    tone = _TONES.get(result)
    if tone is None:
        return None
    if result == "wrong":
        left = _count(query.get("left"))
        if left is None:
            return None
        key = "otp_wrong_one" if left == 1 else "otp_wrong_other"
        return Notice(tone, translate(language, key, left=left))
    if result == "too_early":
        seconds = _count(query.get("wait"))
        if seconds is None:
            return None
        return Notice(tone, translate(language, "otp_too_early", seconds=seconds))
    return Notice(tone, translate(language, f"otp_{result}"))


def _count(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 5 else None


def _error(language: str, key: str, **values: object) -> Notice:
    return Notice("error", translate(language, key, **values))


def _page(
    request: web.Request,
    page: PageView,
    notice: Notice | None,
    status: int = 200,
    *,
    asking: bool = False,
) -> web.Response:
    language = language_of(page.language)
    otp_open = page.kind == "otp" and page.status == PENDING
    status_line = (
        None if otp_open or page.actions else _STATUS_LINES.get(page.status, "status_closed")
    )
    asking = asking and "cancel" in page.actions
    if status_line:
        heading = _HEADINGS.get(page.status, "heading_closed")
    else:
        heading = "ask_cancel_title" if asking else f"title_{page.kind}"
    return _render(
        request,
        "verify.html",
        language,
        status,
        page=page,
        token=request.match_info["token"],
        heading=heading,
        notice=notice,
        otp_open=otp_open,
        asking=asking,
        status_line=status_line,
        contact=_contact(language, page) if status_line else None,
        code_pattern=f"[0-9]{{{page.otp_length}}}",
        resend_wait=math.ceil(page.otp_resend_wait),
    )


def _contact(language: str, page: PageView) -> Contact | None:
    if not page.contact_phone:
        return None
    try:
        shown = phonenumbers.format_number(
            phonenumbers.parse(page.contact_phone), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        shown = page.contact_phone
    # The number becomes a link, so the sentence is cut around it (its place differs by
    # language); NUL cannot occur in a catalog or a shop's name.
    before, _, after = translate(language, "contact", shop=page.shop_name, phone="\0").partition(
        "\0"
    )
    return Contact(before, shown, after)


def _token_problem(request: web.Request, exc: TokenError) -> web.Response:
    if exc.expired:
        return _problem(request, 410, "expired_title", "expired")
    return _problem(request, 404, "not_found_title", "not_found")


def _gone(request: web.Request) -> web.Response:
    """The verification or its shop is gone (the app was uninstalled)."""
    return _problem(request, 404, "not_found_title", "order_gone")


def _problem(request: web.Request, status: int, title: str, message: str) -> web.Response:
    # No shop is known here: the browser's languages choose the page's.
    language = negotiate(request.headers.get("Accept-Language", ""))
    return _render(request, "verify_problem.html", language, status, title=title, message=message)


def _render(
    request: web.Request, template: str, language: str, status: int, **context: Any
) -> web.Response:
    def tr(key: str, **values: object) -> str:
        return translate(language, key, **values)

    html = (
        request.app[templates_key].get_template(template).render(lang=language, tr=tr, **context)
    )
    return web.Response(text=html, content_type="text/html", status=status, headers=_HEADERS)
