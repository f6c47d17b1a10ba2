"""The sandbox's one screen, `GET /sandbox`: the demo shop's setup, the shop, the customer's
phone, the merchant's view, the sandbox clock and the log of requests the simulated parties
received.

The page is a shell rendered once; `/sandbox/static/sandbox.js` fills it from the sandbox's JSON
API (`/sandbox/api/...`, registered by the sandbox back end) and the real admin API, and keeps
it live by polling (and the back end's event stream, when it has one). Nothing here touches
the database: the page works on any app.

Only the sandbox adds these routes, and with them one exception to the customer's page: its
`/v/{token}` answers may be framed by same-origin pages, so that the link opens inside the
simulated phone. Everywhere else the page keeps `frame-ancestors 'none'`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from flows.orders.reports import TOTALS, VERIFICATION_STATUSES
from web.templates import templates_key

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_ROUTE = "sandbox_static"
# The preset for "a customer who answers": the DND and never-answering numbers come from the
# sandbox's state, since the simulated parties own them.
NORMAL_CUSTOMER = "+919876500001"

CUSTOMER_PAGE_PREFIX = "/v/"
_NO_FRAMING = "frame-ancestors 'none'"
_SAME_ORIGIN_FRAMING = "frame-ancestors 'self'"

# Same-origin only: the script, the style sheet, the JSON APIs and the customer's page in the
# phone's frame. Nothing from outside, no inline script.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
}
_STATUS_LABELS = {
    "none": "Not verified",
    "pending": "Pending",
    "confirmed": "Confirmed",
    "cancelled": "Cancelled",
    "callback_requested": "Callback requested",
    "unverified": "Unverified",
    "skipped": "Skipped",
}
_TOTAL_LABELS = {"total": "Total"} | {status: _STATUS_LABELS[status] for status in TOTALS}
# The keypad of the incoming-call panel: (digit sent, label, data-testid suffix).
_KEYPAD = [(key, key, {"*": "star", "#": "hash"}.get(key, key)) for key in "123456789*0#"]
# The verification methods the Setup panel offers: (value, label, the settings sections and
# fields each sets in the shop's settings document). A missed call is seed 000's second
# fallback: the SMS that asks for one when the IVR call got no answer.
_SMS_LINK = {"fallback": {"mode": "sms_link"}}
_METHODS = [
    (
        "ivr",
        "IVR call, then an SMS with a link",
        {"verification": {"type": "ivr", "then": []}} | _SMS_LINK,
    ),
    (
        "whatsapp",
        "WhatsApp buttons, then an SMS with a link",
        {"verification": {"type": "whatsapp", "then": []}} | _SMS_LINK,
    ),
    ("otp", "OTP by SMS", {"verification": {"type": "otp", "then": []}}),
    (
        "missed_call",
        "IVR call, then an SMS asking for a missed call",
        {"verification": {"type": "ivr", "then": []}, "fallback": {"mode": "missed_call"}},
    ),
]
_MERCHANT_TABS = [
    ("orders", "Orders"),
    ("calls", "Call log"),
    ("messages", "SMS & WhatsApp log"),
    ("missed", "Missed-call log"),
]


def setup_routes(app: web.Application) -> None:
    """Add `GET /sandbox` and the page's script and style sheet under `/sandbox/static/`."""
    app.router.add_get("/sandbox", show, name="sandbox")
    app.router.add_static("/sandbox/static", STATIC_DIR, name=STATIC_ROUTE, append_version=True)
    app.on_response_prepare.append(_frame_customer_page)


async def show(request: web.Request) -> web.Response:
    static = request.app.router[STATIC_ROUTE]
    html = (
        request.app[templates_key]
        .get_template("sandbox.html")
        .render(
            script_url=static.url_for(filename="sandbox.js"),
            style_url=static.url_for(filename="sandbox.css"),
            normal_customer=NORMAL_CUSTOMER,
            statuses=[
                (status, _STATUS_LABELS[status])
                for status in sorted(VERIFICATION_STATUSES, key=list(_STATUS_LABELS).index)
            ],
            status_labels=_STATUS_LABELS,
            totals=list(_TOTAL_LABELS.items()),
            keypad=_KEYPAD,
            merchant_tabs=_MERCHANT_TABS,
            methods=_METHODS,
        )
    )
    return web.Response(text=html, content_type="text/html", headers=_HEADERS)


async def _frame_customer_page(request: web.Request, response: web.StreamResponse) -> None:
    """Let the sandbox's phone frame show the customer's page (same origin only)."""
    if not request.path.startswith(CUSTOMER_PAGE_PREFIX):
        return
    policy = response.headers.get("Content-Security-Policy")
    if policy and _NO_FRAMING in policy:
        response.headers["Content-Security-Policy"] = policy.replace(
            _NO_FRAMING, _SAME_ORIGIN_FRAMING
        )
