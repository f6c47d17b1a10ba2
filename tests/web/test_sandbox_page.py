"""The /sandbox page over HTTP, on a bare app (the sandbox's JSON back end is not needed):
every region and data-testid the browser tests use, labelled controls and sound ARIA
references, the Setup panel's verification methods, its script and style sheet served from
/sandbox/static with no outside asset."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web

from flows.shops.settings import SHOP_SETTINGS_DEFAULTS, ShopSettings
from web import sandbox_page, templates

STATIC = Path(sandbox_page.__file__).resolve().parent / "static"
REGIONS = [
    "region-setup",
    "region-shop",
    "region-phone",
    "region-merchant",
    "region-time",
    "region-requests",
]
# The elements present in the page as served; rows and bubbles are added by the script.
TESTIDS = [
    "sandbox",
    "shop-name",
    "connection-status",
    *REGIONS,
    # setup
    "setup-form",
    "setup-method",
    "setup-method-custom",
    "setup-error-method",
    "setup-voice",
    "setup-error-voice",
    "setup-sms",
    "setup-error-sms",
    "setup-save",
    "setup-error",
    "setup-status-message",
    "setup-list",
    "setup-status",
    *(f"setup-channel-{channel}" for channel in ["voice", "sms", "whatsapp"]),
    "setup-missing",
    "setup-missing-empty",
    "setup-paste",
    # shop
    "order-form",
    "order-phone-preset",
    "order-phone",
    "order-amount",
    "order-payment-cod",
    "order-payment-prepaid",
    "order-customer",
    "order-create",
    "order-error-phone",
    "order-error-amount",
    "order-error-payment",
    "order-error-customer",
    "order-form-error",
    "order-form-status",
    "order-list",
    "order-list-empty",
    "shop-error",
    # phone
    "phone-picker",
    "ringing-elsewhere",
    "phone-frame",
    "phone-number",
    "call-panel",
    "call-status",
    "keypad",
    *(f"keypad-{key}" for key in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "0"]),
    "keypad-hash",
    "ring-out",
    "missed-call",
    "call-history",
    "link-panel",
    "link-frame",
    "link-new-tab",
    "link-close",
    "link-blocked",
    "sms-panel",
    "sms-thread",
    "sms-empty",
    "whatsapp-panel",
    "whatsapp-thread",
    "whatsapp-empty",
    "reply-form",
    "reply-channel",
    "reply-text",
    "reply-error-text",
    "reply-send",
    "phone-error",
    # merchant
    "merchant-filters",
    *(f"filter-{name}" for name in ["customer", "order", "status", "from", "to"]),
    *(f"filter-error-{name}" for name in ["customer", "order", "status", "from", "to"]),
    "filter-apply",
    "filter-clear",
    "merchant-error",
    "merchant-threads",
    "threads-error",
    "threads-empty",
    "thread-list",
    "merchant-totals",
    *(f"totals-{key}" for key in ["total", "confirmed", "cancelled", "callback_requested"]),
    "totals-pending",
    "merchant-tabs",
    *(f"{kind}-{tab}" for kind in ["tab", "panel"] for tab in ["orders", "calls", "messages"]),
    "tab-missed",
    "panel-missed",
    *(
        f"merchant-{table}{suffix}"
        for table in ["orders", "calls", "messages", "missed"]
        for suffix in ["", "-empty", "-more"]
    ),
    # time
    "sandbox-time",
    "sandbox-offset",
    "next-job-at",
    "advance-10",
    "advance-next-job",
    "time-error",
    # requests
    "request-log",
    "request-log-empty",
]
LABELLED = {"input", "select", "textarea"}
UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset", "image"}


class Page(HTMLParser):
    """The parts of the page the checks read: elements with their attributes, and which
    controls sit inside a <label>."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.wrapped: set[int] = set()  # indexes into `elements`
        self._labels = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "label":
            self._labels += 1
        if self._labels:
            self.wrapped.add(len(self.elements))
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._labels -= 1

    def by_testid(self) -> dict[str, tuple[str, dict[str, str]]]:
        return {a["data-testid"]: (t, a) for t, a in self.elements if "data-testid" in a}

    def first(self, tag: str, **wanted: str) -> dict[str, str]:
        for element, attrs in self.elements:
            if element == tag and all(attrs.get(k) == v for k, v in wanted.items()):
                return attrs
        raise AssertionError(f"no <{tag}> with {wanted}")


@pytest.fixture
async def client(aiohttp_client):
    app = web.Application()
    templates.setup(app)
    sandbox_page.setup_routes(app)
    return await aiohttp_client(app)


async def fetch_page(client) -> tuple[str, Page]:
    response = await client.get("/sandbox")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    page = Page()
    page.feed(html)
    page.close()
    return html, page


async def test_page_has_every_region_and_testid(client):
    _, page = await fetch_page(client)
    found = page.by_testid()
    assert sorted(set(TESTIDS) - set(found)) == []
    for region in REGIONS:
        tag, attrs = found[region]
        assert tag == "section"
        heading = page.first("h2", id=attrs["aria-labelledby"])
        assert heading is not None
    testids = [a["data-testid"] for _, a in page.elements if "data-testid" in a]
    assert len(testids) == len(set(testids)), "a data-testid is used twice"


async def test_page_is_english_responsive_and_self_contained(client):
    html, page = await fetch_page(client)
    assert page.first("html")["lang"] == "en"
    assert "width=device-width" in page.first("meta", name="viewport")["content"]
    assert page.first("title") is not None
    script = page.first("script")
    assert "defer" in script
    assert script["src"].startswith("/sandbox/static/sandbox.js")
    assert page.first("link", rel="stylesheet")["href"].startswith("/sandbox/static/sandbox.css")
    for tag, attrs in page.elements:
        for name in ("src", "href", "action"):
            if name in attrs:
                # The empty icon spares the browser a /favicon.ico request.
                assert attrs[name].startswith(("/", "#")) or attrs[name] in (
                    "about:blank",
                    "data:,",
                )
        # The policy allows no inline script or style.
        assert not [name for name in attrs if name.startswith("on") or name == "style"], tag
    assert "<script>" not in html and "<style" not in html


async def test_every_control_has_a_label(client):
    _, page = await fetch_page(client)
    targets = {attrs["for"] for tag, attrs in page.elements if tag == "label" and "for" in attrs}
    controls = 0
    for index, (tag, attrs) in enumerate(page.elements):
        if tag not in LABELLED or attrs.get("type") in UNLABELLED_INPUTS:
            continue
        controls += 1
        named = (
            attrs.get("id") in targets
            or index in page.wrapped
            or attrs.get("aria-label")
            or attrs.get("aria-labelledby")
        )
        assert named, f"<{tag}> {attrs.get('data-testid')} has no label"
    assert controls >= 12
    for tag, attrs in page.elements:
        if tag == "iframe":
            assert attrs.get("title")


async def test_aria_and_label_references_point_at_elements(client):
    _, page = await fetch_page(client)
    ids = [attrs["id"] for _, attrs in page.elements if "id" in attrs]
    assert len(ids) == len(set(ids)), "an id is used twice"
    for tag, attrs in page.elements:
        for name in ("for", "aria-labelledby", "aria-describedby", "aria-controls"):
            for target in attrs.get(name, "").split():
                assert target in ids, f"<{tag} {name}={target!r}> names no element"


async def test_tabs_and_keypad_are_buttons(client):
    _, page = await fetch_page(client)
    found = page.by_testid()
    for key in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "0", "hash"]:
        tag, attrs = found[f"keypad-{key}"]
        assert (tag, attrs["type"]) == ("button", "button")
        assert attrs["aria-label"]
    assert [found[f"keypad-{k}"][1]["data-digit"] for k in ["star", "0", "hash"]] == [
        "*",
        "0",
        "#",
    ]
    selected = [
        a["data-testid"] for t, a in page.elements if a.get("role") == "tab" and t == "button"
    ]
    assert selected == ["tab-orders", "tab-calls", "tab-messages", "tab-missed"]
    assert page.first("button", role="tab", **{"aria-selected": "true"})["id"] == "tab-orders"


async def test_preset_phones_offer_the_normal_customer_and_the_special_numbers(client):
    _, page = await fetch_page(client)
    presets = [
        attrs["value"]
        for tag, attrs in page.elements
        if tag == "option" and attrs.get("value") in {"normal", "dnd", "never_answers", "other"}
    ]
    assert presets == ["normal", "dnd", "never_answers", "other"]
    assert page.first("option", value="normal")["data-number"] == sandbox_page.NORMAL_CUSTOMER
    assert page.by_testid()["order-phone"][1]["value"] == sandbox_page.NORMAL_CUSTOMER


async def test_setup_offers_each_verification_method_as_a_settings_change(client):
    _, page = await fetch_page(client)
    methods = {
        attrs["value"]: json.loads(attrs["data-changes"])
        for tag, attrs in page.elements
        if tag == "option" and "data-changes" in attrs
    }
    assert list(methods) == ["ivr", "whatsapp", "otp", "missed_call"]
    assert {value: changes["verification"]["type"] for value, changes in methods.items()} == {
        "ivr": "ivr",
        "whatsapp": "whatsapp",
        "otp": "otp",
        "missed_call": "ivr",
    }
    assert methods["missed_call"]["fallback"] == {"mode": "missed_call"}
    assert methods["ivr"]["fallback"] == {"mode": "sms_link"}
    # Each change is a valid part of the real settings document.
    for changes in methods.values():
        document = SHOP_SETTINGS_DEFAULTS.document()
        for section, fields in changes.items():
            document[section] |= fields
        ShopSettings.model_validate(document)
    custom = page.by_testid()["setup-method-custom"][1]
    assert "hidden" in custom and "disabled" in custom


@pytest.mark.parametrize(
    ("name", "types"),
    [
        ("sandbox.js", {"application/javascript", "text/javascript"}),
        ("sandbox.css", {"text/css"}),
    ],
)
async def test_static_files_are_served(client, name, types):
    _, page = await fetch_page(client)
    url = (
        page.first("script")["src"]
        if name.endswith(".js")
        else page.first("link", rel="stylesheet")["href"]
    )
    for path in (url, f"/sandbox/static/{name}"):
        response = await client.get(path)
        assert response.status == 200
        assert response.content_type in types
        assert await response.read() == (STATIC / name).read_bytes()


async def test_static_files_outside_the_folder_are_not_served(client):
    for path in ["/sandbox/static/missing.js", "/sandbox/static/../sandbox_page.py"]:
        response = await client.get(path)
        assert response.status in (403, 404)


async def test_script_looks_up_only_elements_the_page_has(client):
    _, page = await fetch_page(client)
    found = page.by_testid()
    script = (STATIC / "sandbox.js").read_text()
    used = set(re.findall(r'\$\("([a-z0-9_-]+)"\)', script))
    assert len(used) >= 20
    assert sorted(used - set(found)) == []
    # Rows and bubbles the script adds never share a data-testid with the page's own elements.
    added = set(re.findall(r'testid: "([a-z0-9_-]+)"', script))
    assert len(added) >= 20
    assert sorted(added & set(found)) == []


async def test_page_is_not_cached_or_framed(client):
    response = await client.get("/sandbox")
    assert response.headers["Cache-Control"] == "no-store"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_routes_sit_beside_the_sandbox_api(aiohttp_client):
    async def state(request: web.Request) -> web.Response:
        return web.json_response({"orders": []})

    app = web.Application()
    templates.setup(app)
    app.router.add_get("/sandbox/api/state", state)
    sandbox_page.setup_routes(app)
    client = await aiohttp_client(app)
    assert (await client.get("/sandbox")).status == 200
    assert await (await client.get("/sandbox/api/state")).json() == {"orders": []}


async def test_customer_page_may_be_framed_by_the_sandbox_only(aiohttp_client):
    policy = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    async def customer_page(request: web.Request) -> web.Response:
        return web.Response(text="page", headers={"Content-Security-Policy": policy})

    app = web.Application()
    app.router.add_get("/v/{token}", customer_page)
    app.router.add_get("/elsewhere", customer_page)
    templates.setup(app)
    sandbox_page.setup_routes(app)
    client = await aiohttp_client(app)
    framed = (await client.get("/v/abc")).headers["Content-Security-Policy"]
    assert framed == policy.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
    other = (await client.get("/elsewhere")).headers["Content-Security-Policy"]
    assert other == policy
    page = (await client.get("/sandbox")).headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in page
