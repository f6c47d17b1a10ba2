"""An acknowledged webhook survives a power loss: on SQLite the intake's commits run with
`synchronous=FULL` (the WAL is synced at each commit), while other work keeps NORMAL (synced
at checkpoints: safe from a process crash, not from a power loss) and its speed."""

from __future__ import annotations

import re
import shutil

from clock import ManualClock
from settings import JobsSettings
from storage.db import Database
from storage.inbox import Accepted, Delivery, Inbox
from storage.jobs import JobQueue, NewJob

_PRAGMA = re.compile(r"PRAGMA\s+synchronous\s*=\s*(\w+)", re.IGNORECASE)
_LEVELS = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}


async def test_the_intakes_commits_are_synced_and_other_commits_are_not(tmp_path, sqlite_template):
    path = tmp_path / "ordertalk.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    clock = ManualClock()
    queue = JobQueue(db, clock, JobsSettings())
    inbox = Inbox(db, queue, clock)
    statements: list[str] = []
    async with db.driver_connection() as conn:
        (level,) = await (await conn.execute("PRAGMA synchronous")).fetchone()
        await conn.set_trace_callback(statements.append)
    await inbox.start()
    try:
        delivery = Delivery(
            provider="twilio",
            delivery_id="SM0001",
            event_id=None,
            topic="message",
            triggered_at=None,
            job_kind="twilio.event",
            job_payload={},
            allow_unknown_shop=True,
        )
        assert await inbox.accept(delivery) is Accepted.NEW
        async with db.transaction() as session:
            await queue.enqueue(session, NewJob("work", {}, due_at=clock.now()))
    finally:
        await inbox.stop()
        await db.close()

    in_force = _LEVELS[str(level)]
    at_commits = []
    for sql in statements:
        if match := _PRAGMA.match(sql.strip()):
            in_force = match[1].upper()
        elif sql.strip().upper() == "COMMIT":
            at_commits.append(in_force)
    assert at_commits == ["FULL", "NORMAL"], statements
