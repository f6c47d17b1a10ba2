"""The admin API agrees with its OpenAPI document: schemathesis, run as a user runs it (its
command line), against the real app on loopback with a shop key and the platform admin
token, every check on, a bounded number of examples per operation, and 0 failures.

The run covers whatever /api/v1/openapi.json lists, and the document lists every /api/v1
route the app serves, so a new route is tested as soon as it is documented and cannot go
undocumented.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from settings import Settings
from storage.models import Activity, Call, Message, MissedCall, Order
from tests.conftest import SECURITY
from tests.web import test_accounts
from tests.web.test_accounts import EXOPHONE, own, platform
from web.api import PREFIX, setup_routes
from web.api.openapi import build

ADMIN = "platform-admin-token-0123456789abcdef"
PHONE = "+919876543210"
# Per operation and phase; the run is seeded, so a failure reproduces.
MAX_EXAMPLES = 15
SEED = 20261207
RUN_TIMEOUT = 540

fakes = test_accounts.fakes  # every provider's fake, on loopback


@pytest.fixture
def settings(database_url, fakes):
    """The platform offers its Twilio and Gupshup; every provider is a fake on loopback, so
    accounts are checked live against them."""
    twilio, gupshup = fakes["twilio"], fakes["gupshup"]
    return Settings(
        database={"url": database_url},
        security={**SECURITY, "admin_token": ADMIN},
        providers={
            "twilio": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_url": twilio.base_url,
                "sms_from": "+14155550100",
            },
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
            "exotel": {"api_url": fakes["exotel"].base_url},
            "ringcentral": {"api_url": fakes["ringcentral"].base_url},
        },
    )


@pytest.fixture
async def server(aiohttp_server, app_factory, db, queue):
    return await aiohttp_server(app_factory(db, queue), host="127.0.0.1")


def documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in build()["paths"].items()
        for method in operations
    }


def test_the_document_lists_every_admin_api_route() -> None:
    app = web.Application()
    setup_routes(app)
    served = {
        (route.method, route.resource.canonical.removeprefix(PREFIX))
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    served.discard(("GET", "/openapi.json"))
    assert served == documented()


# Rules that no JSON Schema states answer 422 to schema-valid input, as the document says:
# a live check with the provider (accounts), the shop's connected accounts (channels), rules
# across fields (settings: a window's end after its start, DLT ids in India, a plain
# template's characters), and a report's range (7 days at most), phones and cursors.
# Everywhere else a schema-valid request must be accepted.
CONFIG = """
[auth.openapi.shopKey]
bearer = "{key}"

[auth.openapi.adminToken]
bearer = "{admin}"

[[operations]]
include-path-regex = "^/(shop/(accounts|channels|settings)|orders|calls|messages|missed-calls)$"
checks.positive_data_acceptance.expected-statuses = [
    "2XX", "3XX", "401", "403", "404", "409", "422", "429", "5XX"
]
"""


async def seed_reports(db, clock, shop_id: int) -> None:
    """An order with a call, messages both ways, a missed call and its timeline, so that the
    reports answer with rows to check against the document."""
    now = clock.now()
    async with db.transaction() as session:
        order = Order(
            shop_id=shop_id,
            shopify_order_id="5512345671001",
            name="#1001",
            number=1001,
            phone=PHONE,
            total_amount="1250.00",
            currency="INR",
            payment_method="cod",
            gateways=["Cash on Delivery (COD)"],
            financial_status="pending",
            verification_status="pending",
            city="Pune",
            items=[{"title": "Masala chai", "quantity": 2, "price": "625.00"}],
            tags=["cod_confirmed"],
            placed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(order)
        await session.flush()
        session.add_all(
            [
                Call(
                    shop_id=shop_id,
                    order_id=order.id,
                    provider="exotel",
                    to_phone=PHONE,
                    from_phone=EXOPHONE,
                    status="no-answer",
                    created_at=now,
                    ended_at=now,
                ),
                Message(
                    shop_id=shop_id,
                    order_id=order.id,
                    channel="sms",
                    direction="out",
                    provider="exotel",
                    account="shop",
                    to_phone=PHONE,
                    body="Please confirm your order #1001",
                    status="sent",
                    encoding="GSM-7",
                    segments=1,
                    created_at=now,
                    updated_at=now,
                ),
                Message(
                    shop_id=shop_id,
                    channel="whatsapp",
                    direction="in",
                    provider="gupshup",
                    to_phone=EXOPHONE,
                    from_phone=PHONE,
                    body="Hello",
                    status="received",
                    created_at=now,
                    updated_at=now,
                ),
                MissedCall(
                    shop_id=shop_id,
                    provider="exotel",
                    provider_call_id="missed-1",
                    from_phone=PHONE,
                    to_phone=EXOPHONE,
                    matched_order_ids=[order.id],
                    received_at=now,
                ),
                Activity(
                    shop_id=shop_id,
                    order_id=order.id,
                    kind="call_not_answered",
                    mode="ivr",
                    detail={"attempt": 1},
                    created_at=now,
                ),
            ]
        )


async def test_schemathesis_finds_no_failure(server, http, fakes, db, clock, tmp_path: Path):
    base = str(server.make_url(PREFIX))
    async with http.post(
        f"{base}/shops",
        json={"domain": "conformance.myshopify.com"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as created:
        assert created.status == 201, await created.text()
        body = await created.json()
    key, shop_id = body["api_key"], body["shop"]["id"]
    for account in (own(fakes, "exotel"), own(fakes, "twilio"), platform("gupshup")):
        async with http.post(
            f"{base}/shop/accounts", json=account, headers={"Authorization": f"Bearer {key}"}
        ) as connected:
            assert connected.status == 201, await connected.text()
    await seed_reports(db, clock, shop_id)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(key=key, admin=ADMIN))
    report = tmp_path / "report.ndjson"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--no-color",
        "--output-sanitize",
        "false",  # the keys are the test's own: a failure's curl must reproduce it
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    fuzzed, statuses = read_report(report)
    everything = {f"{method} {path}" for method, path in documented()}
    assert fuzzed == everything, text
    # Each operation was reached with its credentials, not only refused at the door.
    assert {label for label, seen in statuses.items() if seen - {401}} >= everything


def read_report(report: Path) -> tuple[set[str], dict[str, set[int]]]:
    """The operations the run fuzzed without a failure, and the statuses each answered."""
    fuzzed: set[str] = set()
    statuses: dict[str, set[int]] = {}
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        label = recorder.get("label", "")
        if finished["phase"] == "fuzzing" and finished["status"] == "success":
            fuzzed.add(label)
        for interaction in (recorder.get("interactions") or {}).values():
            request, response = interaction.get("request"), interaction.get("response")
            if request and response:
                path = request["uri"].split(PREFIX, 1)[-1].split("?")[0]
                key = _operation(request["method"], path)
                statuses.setdefault(key, set()).add(response["status_code"])
    return fuzzed, statuses


def _operation(method: str, path: str) -> str:
    """The documented operation a request's path belongs to."""
    for documented_method, template in documented():
        parts, given = template.split("/"), path.split("/")
        if (
            documented_method == method
            and len(parts) == len(given)
            and all(p == g or p.startswith("{") for p, g in zip(parts, given, strict=True))
        ):
            return f"{method} {template}"
    return f"{method} {path}"
