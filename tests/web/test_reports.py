"""The merchant's reports in the admin API: orders with totals, order cards, calls, messages and
missed calls; their filters, the 7-day range, cursor pages and shop isolation."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from settings import Settings
from storage.models import Activity, Call, Message, MissedCall, Order, Shop
from tests.conftest import SECURITY

ADMIN = "platform-admin-token-0123456789abcdef"
CUSTOMER = "+919876543210"
OTHER = "+919812345678"
AGENT = "+14155550100"
SENDER = "+14155550199"


@pytest.fixture
def settings(database_url):
    return Settings(database={"url": database_url}, security={**SECURITY, "admin_token": ADMIN})


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


@pytest.fixture
def ago(clock):
    def before_now(**delta: float):
        return clock.now() - timedelta(**delta)

    return before_now


async def new_shop(client, db, domain: str) -> tuple[int, str]:
    """A shop in India (phones without + read as Indian), and its API key."""
    response = await client.post(
        "/api/v1/shops", json={"domain": domain}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    async with db.transaction() as session:
        await session.execute(
            update(Shop).where(Shop.id == body["shop"]["id"]).values(country="IN")
        )
    return body["shop"]["id"], body["api_key"]


async def add(db, *rows: Any) -> None:
    async with db.transaction() as session:
        session.add_all(rows)


async def get(client, key: str, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get(
        f"/api/v1{path}", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    return response.status, await response.json()


async def ok(client, key: str, path: str, **params: Any) -> dict[str, Any]:
    status, body = await get(client, key, path, **params)
    assert status == 200, body
    return body


def rows_of(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return body[path.strip("/").replace("-", "_")]


async def listed(client, key: str, path: str, field: str, **params: Any) -> list[Any]:
    return [row[field] for row in rows_of(path, await ok(client, key, path, **params))]


def order(shop_id: int, number: int, placed_at, status="pending", phone=CUSTOMER, **extra):
    return Order(
        shop_id=shop_id,
        shopify_order_id=f"gid-{number}",
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


def call(shop_id: int, created_at, to_phone=CUSTOMER, **extra):
    return Call(
        shop_id=shop_id, provider="exotel", to_phone=to_phone, created_at=created_at, **extra
    )


def message(shop_id: int, created_at, body: str, direction="out", **extra):
    phones = (
        {"to_phone": CUSTOMER, "from_phone": SENDER}
        if direction == "out"
        else {"to_phone": SENDER, "from_phone": CUSTOMER}
    )
    return Message(
        shop_id=shop_id,
        channel="sms",
        direction=direction,
        provider="twilio",
        body=body,
        created_at=created_at,
        updated_at=created_at,
        **(phones | extra),
    )


def missed(shop_id: int, received_at, to_phone: str, from_phone=CUSTOMER, matched=()):
    return MissedCall(
        shop_id=shop_id,
        provider="exotel",
        provider_call_id=f"missed-{shop_id}-{to_phone}",
        from_phone=from_phone,
        to_phone=to_phone,
        matched_order_ids=list(matched),
        received_at=received_at,
    )


async def test_orders_filters_and_totals(client, db, ago):
    shop_id, key = await new_shop(client, db, "a.myshopify.com")
    await add(
        db,
        order(shop_id, 1001, ago(hours=1), tags=["cod"]),
        order(shop_id, 1002, ago(days=2), "confirmed", OTHER),
        order(shop_id, 1003, ago(days=3), "cancelled"),
        order(shop_id, 1004, ago(days=6), "callback_requested", OTHER),
        order(shop_id, 1005, ago(days=1), "skipped", OTHER, skip_reason="prepaid"),
        order(shop_id, 1006, ago(hours=1), "none"),  # never processed for verification
        order(shop_id, 1007, ago(days=8), "confirmed"),  # before the default 7 days
    )

    body = await ok(client, key, "/orders")
    assert [o["name"] for o in body["orders"]] == ["#1001", "#1005", "#1002", "#1003", "#1004"]
    assert body["totals"] == {
        "total": 5,
        "confirmed": 1,
        "cancelled": 1,
        "callback_requested": 1,
        "pending": 1,
    }
    assert body["next_cursor"] is None
    assert body["orders"][0] == {
        "name": "#1001",
        "number": 1001,
        "placed_at": ago(hours=1).isoformat(),
        "phone": CUSTOMER,
        "total_amount": "499.00",
        "currency": "INR",
        "payment_method": "cod",
        "verification_status": "pending",
        "skip_reason": "",
        "tags": ["cod"],
        "url": "/api/v1/orders/1001",
    }

    for phone in (CUSTOMER, "9876543210", "919876543210", "+91 98765 43210"):
        assert await listed(client, key, "/orders", "name", customer=phone) == ["#1001", "#1003"]
    for name in ("#1003", "1003"):
        assert await listed(client, key, "/orders", "name", order=name) == ["#1003"]
    confirmed = await ok(client, key, "/orders", status="confirmed")
    assert [o["name"] for o in confirmed["orders"]] == ["#1002"]
    assert confirmed["totals"] == {
        "total": 1,
        "confirmed": 1,
        "cancelled": 0,
        "callback_requested": 0,
        "pending": 0,
    }
    one_customer = await ok(client, key, "/orders", customer=CUSTOMER, limit=1)
    assert len(one_customer["orders"]) == 1
    assert one_customer["totals"]["total"] == 2  # the whole range, not the page

    week_before = {
        "from": ago(days=8, hours=1).isoformat(),
        "to": ago(days=1, hours=1).isoformat(),
    }
    assert await listed(client, key, "/orders", "name", **week_before) == [
        "#1002",
        "#1003",
        "#1004",
        "#1007",
    ]
    # A bare `to` date takes in that whole day (the clock is at 2026-01-05 09:00 UTC).
    days = {"from": "2025-12-29", "to": "2026-01-04"}
    assert await listed(client, key, "/orders", "name", **days) == [
        "#1005",
        "#1002",
        "#1003",
        "#1004",
    ]
    with_offset = {"from": "2026-01-05T13:00:00+05:30", "to": "2026-01-05T10:00:00"}
    assert await listed(client, key, "/orders", "name", **with_offset) == ["#1001"]


@pytest.mark.parametrize(
    ("path", "params", "fields"),
    [
        ("/orders", {"from": "2026-01-01", "to": "2026-01-08"}, {"to"}),
        ("/calls", {"from": "2026-01-01T00:00:00", "to": "2026-01-08T00:00:01"}, {"to"}),
        ("/messages", {"from": "2026-01-05", "to": "2026-01-01"}, {"from"}),
        ("/missed-calls", {"from": "last week"}, {"from"}),
        ("/orders", {"to": "2026-02-30"}, {"to"}),
        ("/orders", {"status": "lost"}, {"status"}),
        ("/orders", {"limit": "0"}, {"limit"}),
        ("/calls", {"limit": "201"}, {"limit"}),
        ("/messages", {"limit": "ten"}, {"limit"}),
        ("/orders", {"cursor": "not a cursor"}, {"cursor"}),
        (
            "/missed-calls",
            {"cursor": base64.urlsafe_b64encode(b'["2026-01-05T09:00:00", 1]').decode()},
            {"cursor"},
        ),
        ("/orders", {"customer": "12"}, {"customer"}),
        ("/calls", {"agent": "the shop"}, {"agent"}),
        ("/calls", {"direction": "sideways"}, {"direction"}),
        ("/missed-calls", {"status": "answered"}, {"status"}),
        ("/messages", {"limit": "0", "customer": "x", "to": "soon"}, {"limit", "customer", "to"}),
    ],
)
async def test_bad_filters_are_refused_naming_the_field(client, db, path, params, fields):
    _shop_id, key = await new_shop(client, db, "a.myshopify.com")
    status, body = await get(client, key, path, **params)
    assert status == 422
    assert body["error"]["code"] == "invalid"
    assert {f["field"] for f in body["error"]["fields"]} == fields


async def test_a_seven_day_range_is_accepted(client, db):
    _shop_id, key = await new_shop(client, db, "a.myshopify.com")
    for path in ("/orders", "/calls", "/messages", "/missed-calls"):
        await ok(client, key, path, **{"from": "2026-01-01", "to": "2026-01-07"})


PAGED = {
    "/orders": lambda shop_id, i, at: order(shop_id, 1000 + i, at),
    "/calls": lambda shop_id, i, at: call(shop_id, at, attempt=i),
    "/messages": lambda shop_id, i, at: message(shop_id, at, f"m{i}"),
    "/missed-calls": lambda shop_id, i, at: missed(shop_id, at, f"+9180000000{i:02}"),
}
LABEL = {
    "/orders": "number",
    "/calls": "attempt",
    "/messages": "body",
    "/missed-calls": "to_phone",
}
MOMENT = {
    "/orders": "placed_at",
    "/calls": "created_at",
    "/messages": "created_at",
    "/missed-calls": "received_at",
}


@pytest.mark.parametrize("path", list(PAGED))
async def test_pages_walk_every_row_exactly_once(client, db, ago, path):
    shop_id, key = await new_shop(client, db, "a.myshopify.com")
    # Rows sharing a time are ordered by id: the cursor must not skip or repeat them.
    times = [ago(hours=2), ago(hours=1), ago(hours=1), ago(hours=1), ago(hours=3), ago(hours=2)]
    rows = [PAGED[path](shop_id, i, at) for i, at in enumerate(times, start=1)]
    await add(db, *rows)
    newest_first = sorted(rows, key=lambda r: (getattr(r, MOMENT[path]), r.id), reverse=True)
    expected = [getattr(row, LABEL[path]) for row in newest_first]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        body = await ok(client, key, path, **params)
        seen += [row[LABEL[path]] for row in rows_of(path, body)]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 2


async def test_calls_filters(client, db, ago):
    shop_id, key = await new_shop(client, db, "a.myshopify.com")
    first, second = (
        order(shop_id, 1001, ago(days=1)),
        order(shop_id, 1002, ago(days=1), phone=OTHER),
    )
    await add(db, first, second)
    await add(
        db,
        call(
            shop_id,
            ago(hours=1),
            from_phone=AGENT,
            order_id=first.id,
            input_digits="1",
            duration_seconds=10,
            status="completed",
            ended_at=ago(minutes=59),
        ),
        call(
            shop_id,
            ago(hours=2),
            from_phone="+14155550101",
            order_id=first.id,
            input_digits="2",
            duration_seconds=20,
            attempt=2,
        ),
        call(
            shop_id, ago(hours=3), OTHER, from_phone=AGENT, order_id=second.id, duration_seconds=30
        ),
        call(shop_id, ago(days=9), OTHER, duration_seconds=40),
    )

    body = await ok(client, key, "/calls")
    assert [c["duration_seconds"] for c in body["calls"]] == [10, 20, 30]
    assert body["calls"][0] == {
        "provider": "exotel",
        "status": "completed",
        "direction": "outbound",
        "to_phone": CUSTOMER,
        "from_phone": AGENT,
        "attempt": 1,
        "input_digits": "1",
        "duration_seconds": 10,
        "created_at": ago(hours=1).isoformat(),
        "ended_at": ago(minutes=59).isoformat(),
        "order": {"name": "#1001", "url": "/api/v1/orders/1001"},
    }

    async def durations(**params: Any) -> list[int]:
        return await listed(client, key, "/calls", "duration_seconds", **params)

    assert await durations(customer="9876543210") == [10, 20]
    assert await durations(agent=AGENT) == await durations(agent="14155550100") == [10, 30]
    assert await durations(order="#1001") == await durations(order="1001") == [10, 20]
    assert await durations(order="1002") == [30]
    assert await durations(order="#9999") == []
    assert await durations(direction="outbound") == [10, 20, 30]
    assert await durations(direction="inbound") == []
    assert await durations(input="2") == [20]
    assert await durations(
        **{"from": ago(days=10).isoformat(), "to": ago(days=4).isoformat()}
    ) == [40]
    old = await ok(client, key, "/calls", **{"to": ago(days=4).isoformat()})
    assert old["calls"][0]["order"] is None


async def test_messages_filters(client, db, ago):
    shop_id, key = await new_shop(client, db, "a.myshopify.com")
    first, second = (
        order(shop_id, 1001, ago(days=1)),
        order(shop_id, 1002, ago(days=1), phone=OTHER),
    )
    await add(db, first, second)
    await add(
        db,
        message(shop_id, ago(hours=1), "m1", order_id=first.id, status="delivered", segments=1),
        message(shop_id, ago(hours=2), "m2", direction="in", status="received"),
        message(
            shop_id,
            ago(hours=3),
            "m3",
            to_phone=OTHER,
            order_id=second.id,
            status="failed",
            error_code="30003",
        ),
        message(shop_id, ago(days=10), "m4"),
    )

    body = await ok(client, key, "/messages")
    assert [m["body"] for m in body["messages"]] == ["m1", "m2", "m3"]
    assert body["messages"][0] == {
        "channel": "sms",
        "direction": "outbound",
        "provider": "twilio",
        "account": "platform",
        "to_phone": CUSTOMER,
        "from_phone": SENDER,
        "body": "m1",
        "status": "delivered",
        "error_code": "",
        "segments": 1,
        "created_at": ago(hours=1).isoformat(),
        "order": {"name": "#1001", "url": "/api/v1/orders/1001"},
    }
    assert body["messages"][1]["direction"] == "inbound"
    assert body["messages"][1]["order"] is None

    async def bodies(**params: Any) -> list[str]:
        return await listed(client, key, "/messages", "body", **params)

    # A customer's messages both ways: sent to them, and received from them.
    assert await bodies(customer="9876543210") == ["m1", "m2"]
    assert await bodies(customer=SENDER) == []
    assert await bodies(order="#1001") == ["m1"]
    assert await bodies(order="1002") == ["m3"]
    assert await bodies(status="failed") == ["m3"]
    assert await bodies(**{"from": ago(days=11).isoformat(), "to": ago(days=5).isoformat()}) == [
        "m4"
    ]


async def test_missed_calls_filters(client, db, ago):
    shop_id, key = await new_shop(client, db, "a.myshopify.com")
    first = order(shop_id, 1001, ago(days=1))
    second = order(shop_id, 1002, ago(days=1))
    third = order(shop_id, 1003, ago(days=1), phone=OTHER)
    await add(db, first, second, third)
    await add(
        db,
        missed(shop_id, ago(hours=1), "+918000000001", matched=[first.id, second.id]),
        missed(shop_id, ago(hours=2), "+918000000002", matched=[second.id]),
        missed(shop_id, ago(hours=3), "+918000000003", OTHER, matched=[third.id]),
        missed(shop_id, ago(days=9), "+918000000004"),
    )

    body = await ok(client, key, "/missed-calls")
    assert [m["to_phone"] for m in body["missed_calls"]] == [
        "+918000000001",
        "+918000000002",
        "+918000000003",
    ]
    assert body["missed_calls"][0] == {
        "from_phone": CUSTOMER,
        "to_phone": "+918000000001",
        "received_at": ago(hours=1).isoformat(),
        "orders": [
            {"name": "#1001", "url": "/api/v1/orders/1001"},
            {"name": "#1002", "url": "/api/v1/orders/1002"},
        ],
    }

    async def numbers(**params: Any) -> list[str]:
        return await listed(client, key, "/missed-calls", "to_phone", **params)

    assert await numbers(customer="9876543210") == ["+918000000001", "+918000000002"]
    assert await numbers(order="#1001") == ["+918000000001"]
    assert await numbers(order="1002") == ["+918000000001", "+918000000002"]
    assert await numbers(order="1003") == ["+918000000003"]
    assert await numbers(order="#9999") == []
    assert await numbers(**{"from": ago(days=10).isoformat(), "to": ago(days=4).isoformat()}) == [
        "+918000000004"
    ]
    # The matched ids are checked after SQL: pages still hold `limit` rows and walk on.
    page = await ok(client, key, "/missed-calls", order="1002", limit=1)
    assert [m["to_phone"] for m in page["missed_calls"]] == ["+918000000001"]
    rest = await ok(
        client, key, "/missed-calls", order="1002", limit=1, cursor=page["next_cursor"]
    )
    assert [m["to_phone"] for m in rest["missed_calls"]] == ["+918000000002"]
    assert rest["next_cursor"] is None


async def test_order_card_has_its_timeline_oldest_first(client, db, ago):
    shop_id, key = await new_shop(client, db, "a.myshopify.com")
    mine, other = order(shop_id, 1001, ago(hours=5)), order(shop_id, 1002, ago(hours=5))
    await add(db, mine, other)
    await add(
        db,
        # Inserted out of time order: the timeline sorts by time, not by id.
        Activity(
            shop_id=shop_id,
            order_id=mine.id,
            kind="confirmed",
            mode="ivr",
            detail={"digit": "1"},
            created_at=ago(hours=1),
        ),
        Activity(
            shop_id=shop_id,
            order_id=mine.id,
            kind="order_created",
            mode="shopify",
            created_at=ago(hours=5),
        ),
        Activity(
            shop_id=shop_id,
            order_id=mine.id,
            kind="call_placed",
            mode="ivr",
            created_at=ago(hours=2),
        ),
        Activity(
            shop_id=shop_id, order_id=other.id, kind="order_created", created_at=ago(hours=4)
        ),
        call(shop_id, ago(hours=1), order_id=mine.id, attempt=2),
        call(shop_id, ago(hours=2), order_id=mine.id, attempt=1),
        call(shop_id, ago(hours=2), order_id=other.id, attempt=9),
        message(shop_id, ago(hours=3), "your code", order_id=mine.id),
    )

    for name in ("1001", "%231001"):
        card = await ok(client, key, f"/orders/{name}")
        assert card["order"]["name"] == "#1001"
        assert card["order"]["financial_status"] == ""
        assert card["order"]["cancelled_at"] is None
        assert card["timeline"] == [
            {
                "kind": "order_created",
                "mode": "shopify",
                "detail": {},
                "created_at": ago(hours=5).isoformat(),
            },
            {
                "kind": "call_placed",
                "mode": "ivr",
                "detail": {},
                "created_at": ago(hours=2).isoformat(),
            },
            {
                "kind": "confirmed",
                "mode": "ivr",
                "detail": {"digit": "1"},
                "created_at": ago(hours=1).isoformat(),
            },
        ]
        assert [c["attempt"] for c in card["calls"]] == [1, 2]
        assert [m["body"] for m in card["messages"]] == ["your code"]
        assert card["messages"][0]["order"] == {"name": "#1001", "url": "/api/v1/orders/1001"}

    status, missing = await get(client, key, "/orders/9999")
    assert status == 404
    assert missing["error"]["code"] == "not_found"


async def test_one_shop_never_sees_another_shops_rows(client, db, ago):
    a_id, a_key = await new_shop(client, db, "a.myshopify.com")
    b_id, b_key = await new_shop(client, db, "b.myshopify.com")
    a_order = order(a_id, 1001, ago(hours=3), "confirmed")
    await add(db, a_order, order(b_id, 2001, ago(hours=3), "confirmed", OTHER))
    await add(
        db,
        Activity(shop_id=a_id, order_id=a_order.id, kind="order_created", created_at=ago(hours=3)),
        call(a_id, ago(hours=2), order_id=a_order.id),
        message(a_id, ago(hours=2), "for a", order_id=a_order.id),
        missed(a_id, ago(hours=1), "+918000000001", matched=[a_order.id]),
    )

    assert await listed(client, a_key, "/orders", "name") == ["#1001"]
    assert await listed(client, b_key, "/orders", "name") == ["#2001"]
    b_orders = await ok(client, b_key, "/orders", customer=CUSTOMER)
    assert b_orders["orders"] == [] and b_orders["totals"]["total"] == 0
    for path in ("/calls", "/messages", "/missed-calls"):
        assert len(rows_of(path, await ok(client, a_key, path))) == 1
        assert rows_of(path, await ok(client, b_key, path)) == []
        assert rows_of(path, await ok(client, b_key, path, order="1001")) == []
        assert rows_of(path, await ok(client, b_key, path, customer=CUSTOMER)) == []
    for path in ("/orders", "/orders/1001", "/calls", "/messages", "/missed-calls"):
        assert (await client.get(f"/api/v1{path}")).status == 401
    assert (await get(client, b_key, "/orders/1001"))[0] == 404
    assert (await get(client, b_key, "/orders/%231001"))[0] == 404
    assert (await get(client, a_key, "/orders/2001"))[0] == 404


async def test_openapi_describes_the_reports(client):
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert {"/orders", "/orders/{name}", "/calls", "/messages", "/missed-calls"} <= set(
        document["paths"]
    )
    parameters = {
        p.get("name") or p["$ref"] for p in document["paths"]["/calls"]["get"]["parameters"]
    }
    assert {"agent", "direction", "input", "#/components/parameters/from"} <= parameters
    assert "OrderList" in document["components"]["schemas"]
