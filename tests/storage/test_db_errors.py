"""Issue 14, item 4: a database error keeps its statement but not its parameters (phones,
tokens), in the logs and in `jobs.last_error`."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from logs import JsonFormatter
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Customer, Job, Shop
from tests.storage.test_jobs import make_worker

PHONE = "+919876543210"


async def add_shop(db: Database, clock) -> int:
    now = clock.now()
    async with db.transaction() as session:
        shop = Shop(domain="errors.myshopify.com", name="Errors", created_at=now, updated_at=now)
        session.add(shop)
    return shop.id


async def test_a_failed_jobs_error_and_log_carry_no_parameter(
    db: Database, queue: JobQueue, clock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    shop_id = await add_shop(db, clock)

    async def add_customer_twice(job: ClaimedJob) -> None:
        async with db.transaction() as session:
            for _ in range(2):
                session.add(Customer(shop_id=shop_id, phone=PHONE, created_at=clock.now()))
                await session.flush()

    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("test.customer", max_attempts=1))
    await make_worker(queue, {"test.customer": add_customer_twice}).run_until_idle()

    async with db.sessions() as session:
        job = await session.scalar(select(Job))
    assert job.status == "dead"
    assert "IntegrityError" in job.last_error and "customers" in job.last_error
    assert PHONE not in job.last_error
    formatter = JsonFormatter()
    printed = "\n".join(formatter.format(record) for record in caplog.records)
    assert "IntegrityError" in printed
    assert PHONE not in printed and PHONE[3:] not in printed
