"""The jobs table's operations: enqueue, batch claim, finish, lease upkeep, counts.

Every operation is one statement or one short transaction, shared by as many jobs as it
can take: a claim takes up to `limit` jobs (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any
number of workers share the table), and results are written back in one batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, literal_column, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from settings import JobsSettings
from storage.db import JOBS_CHANNEL, Database
from storage.jobs.pace import Pace
from storage.models import Job

jobs = Job.__table__
STATES = ("queued", "running", "done", "dead")
# A claim deals shops their turns among this many times its size of oldest and newest jobs.
FAIR_WINDOW = 2


def _in_state(state: str) -> Any:
    # The state is written into the SQL, not bound: a prepared statement's generic plan
    # can then still use the partial indexes on status (ix_jobs_queued_due, ...).
    return jobs.c.status == literal_column(f"'{state}'")


QUEUED, RUNNING, DONE = _in_state("queued"), _in_state("running"), _in_state("done")
DEAD = _in_state("dead")


@dataclass(frozen=True)
class NewJob:
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    due_at: datetime | None = None  # None: due now
    idempotency_key: str | None = None
    shop_id: int | None = None
    max_attempts: int | None = None  # None: the configured default


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one
    max_attempts: int
    idempotency_key: str | None
    shop_id: int | None
    due_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What became of one execution: done, or retry at `retry_at`, or dead."""

    job_id: int
    status: str  # done | queued | dead
    error: str = ""
    retry_at: datetime | None = None
    deferred: bool = False  # not a failure: the attempt is not counted
    payload: dict[str, Any] | None = None  # the payload of the next run; None: unchanged


class JobQueue:
    def __init__(self, db: Database, clock: Clock, settings: JobsSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        # Shared by the webhook intake and the worker of one process (see storage.jobs.pace).
        self.pace = Pace(settings.flood_share, settings.flood_max_delay_seconds)

    async def enqueue(self, session: AsyncSession, *new_jobs: NewJob) -> int:
        """Add jobs inside the caller's transaction; a known idempotency key is skipped.

        Returns how many were added. Workers are woken when the transaction commits.
        """
        if not new_jobs:
            return 0
        now = self.clock.now()
        rows = [
            {
                "kind": job.kind,
                "payload": job.payload,
                "due_at": job.due_at or now,
                "idempotency_key": job.idempotency_key,
                "shop_id": job.shop_id,
                "max_attempts": job.max_attempts or self.settings.max_attempts,
                "created_at": now,
            }
            for job in new_jobs
        ]
        stmt = (
            self.db.insert(jobs)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(jobs.c.id)
        )
        added = len((await session.execute(stmt, rows)).all())
        if self.db.dialect == "postgresql":
            await session.execute(
                text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL}
            )
        session.info["jobs_enqueued"] = True
        return added

    async def claim(self, worker_id: str, limit: int) -> list[ClaimedJob]:
        """Take up to `limit` due jobs, leased to `worker_id`: shops take turns (each shop's
        oldest due job, then each one's second, ...), so one shop's backlog does not queue
        another's first job behind it.

        The turns are dealt among the oldest and the newest due jobs only (FAIR_WINDOW times
        `limit` of each, two short index scans): ranking a whole backlog would cost a claim
        as much as the backlog is long. A new job of a quiet shop is among the newest, the
        backlog's head among the oldest.
        """
        now = self.clock.now()
        window = limit * FAIR_WINDOW
        ends = [
            select(jobs.c.id, jobs.c.shop_id, jobs.c.due_at)
            .where(QUEUED, jobs.c.due_at <= now)
            .order_by(*order)
            .limit(window)
            .subquery()
            # By due time alone, as the index reads: ties (one instant) come in any order.
            for order in ((jobs.c.due_at,), (jobs.c.due_at.desc(),))
        ]
        candidates = union_all(*(select(end.c.id, end.c.shop_id, end.c.due_at) for end in ends))
        async with self.db.transaction() as session:
            dealt = _take_turns((await session.execute(candidates)).all())
            if not dealt:
                return []
            # Twice as many as wanted are locked: some may be held by another worker's claim.
            # The status is read, not filtered on: the planner then finds the rows by their key.
            free = await session.execute(
                select(jobs.c.id, jobs.c.status)
                .where(jobs.c.id.in_(dealt[: 2 * limit]))
                .with_for_update(skip_locked=True)
            )
            lockable = {job_id for job_id, status in free if status == "queued"}
            chosen = [job_id for job_id in dealt if job_id in lockable][:limit]
            stmt = (
                update(jobs)
                .where(jobs.c.id.in_(chosen))
                .values(
                    status="running",
                    locked_by=worker_id,
                    locked_until=now + timedelta(seconds=self.settings.lease_seconds),
                    attempts=jobs.c.attempts + 1,
                    started_at=now,
                )
                .returning(
                    jobs.c.id,
                    jobs.c.kind,
                    jobs.c.payload,
                    jobs.c.attempts,
                    jobs.c.max_attempts,
                    jobs.c.idempotency_key,
                    jobs.c.shop_id,
                    jobs.c.due_at,
                )
            )
            rows = (await session.execute(stmt)).all()
        claimed = [ClaimedJob(*row) for row in rows]
        claimed.sort(key=lambda job: (job.due_at, job.id))
        return claimed

    async def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> None:
        """Record results; a job whose lease was taken over by another worker is left alone."""
        now = self.clock.now()
        done = [o.job_id for o in outcomes if o.status == "done"]
        others = [
            {
                "b_id": o.job_id,
                "b_status": o.status,
                "b_error": o.error[:4000],
                "b_due": o.retry_at or now,
                "b_finished": now if o.status == "dead" else None,
                "b_refund": int(o.deferred),
            }
            for o in outcomes
            if o.status != "done"
        ]
        async with self.db.transaction() as session:
            if done:
                await session.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(done), *self._held_by(worker_id))
                    .values(status="done", finished_at=now, locked_by=None, locked_until=None)
                )
            repayload = [
                {"b_id": o.job_id, "b_payload": o.payload}
                for o in outcomes
                if o.payload is not None and o.status != "done"
            ]
            if repayload:
                # Before the status changes below: still held by this worker.
                await session.execute(
                    update(jobs)
                    .where(jobs.c.id == bindparam("b_id"), *self._held_by(worker_id))
                    .values(payload=bindparam("b_payload", type_=jobs.c.payload.type)),
                    repayload,
                )
            if others:
                await session.execute(
                    update(jobs)
                    .where(jobs.c.id == bindparam("b_id"), *self._held_by(worker_id))
                    .values(
                        status=bindparam("b_status"),
                        last_error=bindparam("b_error"),
                        due_at=bindparam("b_due"),
                        finished_at=bindparam("b_finished"),
                        attempts=jobs.c.attempts - bindparam("b_refund"),
                        locked_by=None,
                        locked_until=None,
                    ),
                    others,
                )
                if any(o.status == "queued" for o in outcomes):
                    session.info["jobs_enqueued"] = True

    async def extend(self, worker_id: str, job_ids: Iterable[int]) -> None:
        """Renew the lease of jobs this worker still holds."""
        ids = list(job_ids)
        if not ids:
            return
        until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
        async with self.db.transaction() as session:
            await session.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids), *self._held_by(worker_id))
                .values(locked_until=until)
            )

    async def release(self, worker_id: str, job_ids: Iterable[int]) -> None:
        """Hand jobs back untouched (shutdown): queued again, the attempt not counted."""
        ids = list(job_ids)
        if not ids:
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids), *self._held_by(worker_id))
                .values(
                    status="queued",
                    attempts=jobs.c.attempts - 1,
                    locked_by=None,
                    locked_until=None,
                    started_at=None,
                )
            )
            session.info["jobs_enqueued"] = True

    async def requeue_expired(self) -> int:
        """Take back jobs whose worker died (lease expired): queued again, or dead if spent."""
        now = self.clock.now()
        expired = (RUNNING, jobs.c.locked_until < now)
        async with self.db.transaction() as session:
            dead = await session.execute(
                update(jobs)
                .where(*expired, jobs.c.attempts >= jobs.c.max_attempts)
                .values(
                    status="dead",
                    last_error="worker lost while running the last attempt",
                    finished_at=now,
                    locked_by=None,
                    locked_until=None,
                )
            )
            requeued = await session.execute(
                update(jobs)
                .where(*expired)
                .values(
                    status="queued",
                    last_error="worker lost while running; lease expired",
                    locked_by=None,
                    locked_until=None,
                )
            )
            if requeued.rowcount:
                session.info["jobs_enqueued"] = True
        return dead.rowcount + requeued.rowcount

    async def prune_done(self, limit: int = 10_000) -> int:
        """Delete done jobs older than the configured retention."""
        before = self.clock.now() - timedelta(hours=self.settings.keep_done_hours)
        old = (
            select(jobs.c.id)
            .where(DONE, jobs.c.finished_at < before)
            .limit(limit)
            .scalar_subquery()
        )
        async with self.db.transaction() as session:
            result = await session.execute(delete(jobs).where(jobs.c.id.in_(old)))
        return result.rowcount

    async def prune_dead(self, limit: int = 10_000) -> int:
        """Delete up to `limit` dead jobs older than the configured retention."""
        before = self.clock.now() - timedelta(days=self.settings.keep_dead_days)
        old = (
            select(jobs.c.id)
            .where(DEAD, jobs.c.finished_at < before)
            .limit(limit)
            .scalar_subquery()
        )
        async with self.db.transaction() as session:
            result = await session.execute(delete(jobs).where(jobs.c.id.in_(old)))
        return result.rowcount

    async def counts(self) -> dict[str, int]:
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(jobs.c.status, func.count()).group_by(jobs.c.status)
            )
            found = dict(rows.all())
        return {state: int(found.get(state, 0)) for state in STATES}

    async def next_due(self) -> datetime | None:
        """When the earliest queued job falls due (None: no job is queued)."""
        async with self.db.sessions() as session:
            return await session.scalar(select(func.min(jobs.c.due_at)).where(QUEUED))

    async def oldest_due_lag(self) -> float:
        """Seconds the oldest due, queued job has been waiting (0 if none)."""
        now = self.clock.now()
        async with self.db.sessions() as session:
            oldest = await session.scalar(
                select(func.min(jobs.c.due_at)).where(QUEUED, jobs.c.due_at <= now)
            )
        return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0

    @staticmethod
    def _held_by(worker_id: str) -> tuple[Any, ...]:
        return (RUNNING, jobs.c.locked_by == worker_id)


def _take_turns(candidates: Iterable[tuple[int, int | None, datetime]]) -> list[int]:
    """Job ids in turns: every shop's oldest due, then every shop's second, ..."""
    lanes: dict[int | None, dict[int, datetime]] = {}
    for job_id, shop_id, due_at in candidates:
        lanes.setdefault(shop_id, {})[job_id] = due_at
    turns: list[list[int]] = []
    for lane in lanes.values():
        for turn, job_id in enumerate(sorted(lane, key=lambda i: (lane[i], i))):
            if turn == len(turns):
                turns.append([])
            turns[turn].append(job_id)
    return [job_id for turn in turns for job_id in turn]
