"""Order-journey notifications at volume: N fulfilled orders (half of their customers gave SMS
consent), each fulfilment announced twice (fulfillments/create and orders/fulfilled), through
the real notification and send jobs to the fake Twilio.

    python bench/notifications.py [--orders N] [--rate R] [--databases sqlite,postgresql]

Figures per database: the time from the first job claimed until the last SMS reached the fake
provider, against the provider-limited minimum (consenting orders / R, the platform number's
configured messages per second); when the last notification job was done; SMS received,
duplicates (must be 0) and skips recorded for the customers without consent. SQLite runs on
a temporary file; PostgreSQL (default $TEST_DATABASE_URL) on a scratch database
`ordertalk_bench_notifications`, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.shared import DEFAULT_PG, Row, print_table, scratch_postgres, target_note
from clock import SystemClock
from flows.notifications.events import SHIPPED, JourneyEvent
from flows.notifications.job import NOTIFY_JOB, SKIPPED_KIND, notify_job
from main import ensure_schema, make_worker, open_resources
from providers.sandbox.twilio import FakeTwilio
from settings import Settings
from storage.models import Activity, Consent, Customer, Job, Order, Shop

SCRATCH_DB = "ordertalk_bench_notifications"
SMS_FROM = "+15005550006"
CHUNK = 1_000
# Above the provider-limited minimum by at most this share: the jobs keep the number busy.
OVERHEAD_TARGET = 0.10
POLL_SECONDS = 1.0


def _phone(index: int) -> str:
    return f"+9198{index:08d}"


async def _seed(res: Any, orders: int) -> int:
    """The shop, its orders and customers (every other one opted in to SMS); returns how many
    consented."""
    now = datetime.now(UTC)
    document = {"notifications": {"sms_active": True}}
    async with res.db.transaction() as session:
        shop = Shop(
            domain="bench.myshopify.com",
            name="Bench",
            currency="INR",
            country="IN",
            timezone="Asia/Kolkata",
            language="en",
            status="installed",
            settings=document,
            created_at=now,
            updated_at=now,
        )
        session.add(shop)
    await res.account_desk().connect(shop.id, {"provider": "twilio", "platform": True})
    for start in range(0, orders, CHUNK):
        batch = range(start, min(start + CHUNK, orders))
        async with res.db.transaction() as session:
            await session.execute(
                insert(Customer),
                [
                    {
                        "shop_id": shop.id,
                        "phone": _phone(i),
                        "name": f"Asha {i}",
                        "created_at": now,
                    }
                    for i in batch
                ],
            )
            ids = dict(
                (
                    await session.execute(
                        select(Customer.phone, Customer.id).where(
                            Customer.phone.in_([_phone(i) for i in batch])
                        )
                    )
                ).all()
            )
            await session.execute(
                insert(Order),
                [
                    {
                        "shop_id": shop.id,
                        "customer_id": ids[_phone(i)],
                        "shopify_order_id": str(900_000 + i),
                        "name": f"#{10_000 + i}",
                        "number": 10_000 + i,
                        "phone": _phone(i),
                        "total_amount": "1499.00",
                        "currency": "INR",
                        "payment_method": "prepaid",
                        "placed_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in batch
                ],
            )
            consenting = [
                {
                    "shop_id": shop.id,
                    "phone": _phone(i),
                    "channel": "sms",
                    "state": "opted_in",
                    "source": "shopify",
                    "updated_at": now,
                }
                for i in batch
                if i % 2 == 0
            ]
            await session.execute(insert(Consent), consenting)
            events = [
                JourneyEvent(
                    SHIPPED,
                    str(900_000 + i),
                    "shopify",
                    carrier="Delhivery",
                    awb=f"AWB{i}",
                    tracking_url=f"https://track.example/AWB{i}",
                )
                for i in batch
            ]
            # Each fulfilment is announced twice (fulfillments/create, orders/fulfilled).
            await res.queue.enqueue(session, *(notify_job(shop.id, e) for e in events * 2))
    return (orders + 1) // 2


async def _run(url: str, orders: int, rate: float) -> list[Row]:
    fake = FakeTwilio()
    await fake.start()
    settings = Settings(
        database={"url": url},
        security={"secret_key": "the-bench-secret-key-0123456789abcdef"},
        server={"public_url": "http://127.0.0.1:9"},
        providers={
            "twilio": {
                "account_sid": fake.account_sid,
                "auth_token": fake.auth_token,
                "api_url": fake.base_url,
                "sms_from": SMS_FROM,
                "messages_per_second": rate,
            }
        },
    )
    name = "sqlite" if url.startswith("sqlite") else "postgresql"
    try:
        async with open_resources(settings, SystemClock()) as res:
            await ensure_schema(res.db, migrate_any=True)
            expected = await _seed(res, orders)
            worker = make_worker(res)
            started = time.perf_counter()
            task = asyncio.create_task(worker.run())
            last = decided = started
            checked = 0.0
            while True:
                await asyncio.sleep(0.05)
                now = time.perf_counter()
                if len(fake.messages) >= expected and last == started:
                    last = now
                if now - checked < POLL_SECONDS:
                    continue  # the count competes with the worker for the database
                checked = now
                async with res.db.sessions() as session:
                    left = dict(
                        (
                            await session.execute(
                                select(Job.kind, func.count())
                                .where(Job.status.in_(("queued", "running")))
                                .group_by(Job.kind)
                            )
                        ).all()
                    )
                if not left.get(NOTIFY_JOB) and decided == started:
                    decided = now
                if not left:
                    break
            worker.stop()
            await task
            async with res.db.sessions() as session:
                skipped = await session.scalar(
                    select(func.count()).where(Activity.kind == SKIPPED_KIND)
                )
    finally:
        await fake.close()
    sent = Counter(str(form["To"]) for form in fake.messages)
    duplicates = sum(count - 1 for count in sent.values())
    floor = expected / rate
    took = last - started
    return [
        Row(
            f"{name}: {orders:,} orders, last SMS",
            f"{took:.1f} s",
            f"minimum {floor:.1f} s at {rate:g} SMS/s; "
            + target_note(took / floor - 1, OVERHEAD_TARGET, False, "over the minimum"),
        ),
        Row(
            f"{name}: notification jobs done",
            f"{decided - started:.1f} s",
            f"{2 * orders:,} jobs, ~{POLL_SECONDS:g} s resolution",
        ),
        Row(f"{name}: SMS received", f"{len(fake.messages):,}", f"expected {expected:,}"),
        Row(
            f"{name}: duplicates",
            str(duplicates),
            "target 0: " + ("met" if not duplicates else "MISSED"),
        ),
        Row(f"{name}: skipped (no consent)", f"{skipped:,}", f"expected {orders - expected:,}"),
    ]


async def bench(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for database in args.databases.split(","):
        if database == "sqlite":
            with tempfile.TemporaryDirectory() as scratch:
                url = f"sqlite+aiosqlite:///{scratch}/bench.db"
                rows += await _run(url, args.orders, args.rate)
        else:
            async with scratch_postgres(args.pg, SCRATCH_DB) as url:
                rows += await _run(url, args.orders, args.rate)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="SMS/s of the platform number")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg", default=DEFAULT_PG)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print_table(asyncio.run(bench(args)), "reference")


if __name__ == "__main__":
    main()
