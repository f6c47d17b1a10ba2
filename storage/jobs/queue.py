"""The jobs table's operations: enqueue, batch claim, finish, lease upkeep, counts.

Every operation is one statement or one short transaction, shared by as many jobs as it
can take: a claim takes up to `limit` jobs (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any
number of workers share the table), results are written back in one batch, and a worker's
turn (`exchange`) does both in one transaction. A claim takes the due jobs of higher lanes
first (a kind's lane is the caller's: the later stages of a burst, its contacts, before its
intake), so they never wait behind a backlog of lower lanes; a claim may also say how many
jobs of each lane it has room for (a worker's free slots per lane).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    union_all,
    update,
)
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
NEXT_DUE = select(func.min(jobs.c.due_at)).where(QUEUED)


@functools.cache
def _candidates(upper_kinds: tuple[str, ...]) -> Any:
    """The claim's candidates, due at :now: the :window oldest and newest due jobs of all
    kinds and of each of `upper_kinds` (built once: a claim is the hottest statement)."""
    due = jobs.c.due_at <= bindparam("now", type_=jobs.c.due_at.type)
    window = bindparam("window", type_=Integer)
    ends = [
        select(jobs.c.id, jobs.c.kind, jobs.c.shop_id, jobs.c.due_at)
        .where(QUEUED, due, *where)
        .order_by(order)
        .limit(window)
        .subquery()
        for where in [(), *((jobs.c.kind == kind,) for kind in upper_kinds)]
        # By due time alone, as the index reads: ties (one instant) come in any order.
        for order in (jobs.c.due_at, jobs.c.due_at.desc())
    ]
    return union_all(*(select(end.c.id, end.c.kind, end.c.shop_id, end.c.due_at) for end in ends))


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
    created_at: datetime

    @property
    def ready_at(self) -> datetime:
        """Since when the job has been waiting: its due time, or its arrival if the intake
        placed it earlier in the queue (see storage.jobs.places)."""
        return max(self.due_at, self.created_at)


@dataclass(frozen=True)
class Outcome:
    """What became of one execution: done, or retry at `retry_at`, or dead."""

    job_id: int
    status: str  # done | queued | dead
    error: str = ""
    retry_at: datetime | None = None
    deferred: bool = False  # not a failure: the attempt is not counted
    payload: dict[str, Any] | None = None  # the payload of the next run; None: unchanged


@dataclass(frozen=True)
class Exchange:
    """What a worker's turn claimed."""

    claimed: list[ClaimedJob]
    full: bool  # the claim took as many as asked: more may be due
    next_due: datetime | None  # a short claim: when the earliest queued job falls due


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

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lanes: Mapping[str, int] | None = None,
        room: Mapping[int, int] | None = None,
    ) -> list[ClaimedJob]:
        """Take up to `limit` due jobs, leased to `worker_id`: the due jobs of the highest
        lane first (`lanes` maps a kind to its lane; any other kind is lane 0), and within a
        lane shops take turns (each shop's oldest due job, then each one's second, ...), so
        one shop's backlog does not queue another's first job behind it. While lower lanes
        have due jobs, a lane takes at most three quarters of what is left of the claim.
        `room` caps the jobs taken of each lane it names (lane -> count).

        The turns are dealt among the oldest and the newest due jobs only (FAIR_WINDOW times
        `limit` of each, of every kind above lane 0 and of all kinds together: short index
        scans): ranking a whole backlog would cost a claim as much as the backlog is long.
        A new job of a quiet shop is among the newest, the backlog's head among the oldest.
        """
        async with self.db.transaction() as session:
            claimed, _ = await self._claim(session, worker_id, limit, lanes or {}, room or {})
            return claimed

    async def finish(self, worker_id: str, outcomes: Sequence[Outcome]) -> None:
        """Record results; a job whose lease was taken over by another worker is left alone."""
        async with self.db.transaction() as session:
            await self._finish(session, worker_id, outcomes)

    async def exchange(
        self,
        worker_id: str,
        outcomes: Sequence[Outcome],
        limit: int,
        lanes: Mapping[str, int] | None = None,
        room: Mapping[int, int] | None = None,
    ) -> Exchange:
        """A worker's turn in one transaction: record `outcomes` (as `finish`), then claim
        up to `limit` jobs (as `claim`; none if `limit` is 0). A claim that comes back short
        also answers when the earliest queued job falls due (None if none is queued, or if
        due jobs were left for want of `room`: the worker waits for its jobs to finish), so
        the worker can sleep until then.
        """
        async with self.db.transaction() as session:
            if outcomes:
                await self._finish(session, worker_id, outcomes)
            if limit <= 0:
                return Exchange([], full=False, next_due=None)
            claimed, crowded = await self._claim(
                session, worker_id, limit, lanes or {}, room or {}
            )
            if len(claimed) == limit:
                return Exchange(claimed, full=True, next_due=None)
            if crowded:
                return Exchange(claimed, full=False, next_due=None)
            next_due = await session.scalar(NEXT_DUE)
            return Exchange(claimed, full=False, next_due=next_due)

    async def _claim(
        self,
        session: AsyncSession,
        worker_id: str,
        limit: int,
        lanes: Mapping[str, int],
        room: Mapping[int, int],
    ) -> tuple[list[ClaimedJob], bool]:
        """The jobs claimed, and whether due jobs were left for want of `room`."""
        now = self.clock.now()
        upper = tuple(sorted(kind for kind, lane in lanes.items() if lane > 0))
        found = (
            await session.execute(_candidates(upper), {"now": now, "window": limit * FAIR_WINDOW})
        ).all()
        dealt, crowded = _deal(found, lanes, limit, room)
        if not dealt:
            return [], crowded
        if self.db.dialect == "postgresql":
            # Twice as many as wanted are locked: some may be held by another worker's claim.
            # The status is read, not filtered on: the planner then finds the rows by their key.
            free = await session.execute(
                select(jobs.c.id, jobs.c.status)
                .where(jobs.c.id.in_(dealt[: 2 * limit]))
                .with_for_update(skip_locked=True)
            )
            lockable = {job_id for job_id, status in free if status == "queued"}
            chosen = [job_id for job_id in dealt if job_id in lockable][:limit]
        else:
            # SQLite's transaction began IMMEDIATE, holding the file's write lock: the queued
            # jobs just read are still queued and no other claim can take them meanwhile.
            chosen = dealt[:limit]
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
                jobs.c.created_at,
            )
        )
        claimed = [ClaimedJob(*row) for row in await session.execute(stmt)]
        claimed.sort(key=lambda job: (-lanes.get(job.kind, 0), job.due_at, job.id))
        return claimed, crowded

    async def _finish(
        self, session: AsyncSession, worker_id: str, outcomes: Sequence[Outcome]
    ) -> None:
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
            return await session.scalar(NEXT_DUE)

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


def _deal(
    candidates: Iterable[tuple[int, str, int | None, datetime]],
    lanes: Mapping[str, int],
    limit: int,
    room: Mapping[int, int],
) -> tuple[list[int], bool]:
    """Job ids in claim order: lane by lane from the highest, shops taking turns within a
    lane; a lane's jobs beyond its share of the `limit` come after the lower lanes' jobs,
    and those beyond its `room` are left (then the answer's flag is set)."""
    by_lane: dict[int, dict[int, tuple[int | None, datetime]]] = {}
    for job_id, kind, shop_id, due_at in candidates:
        by_lane.setdefault(lanes.get(kind, 0), {})[job_id] = (shop_id, due_at)
    first: list[int] = []
    beyond: list[int] = []
    left = limit
    crowded = False
    for n, lane in enumerate(sorted(by_lane, reverse=True)):
        dealt = _take_turns(by_lane[lane])
        if lane in room and len(dealt) > room[lane]:
            # Crowded only if the room, not the claim's size, kept jobs of this lane out.
            crowded = crowded or room[lane] < left
            dealt = dealt[: room[lane]]
        # Lower lanes waiting keep a quarter of what is left: none starves behind this one.
        share = left if n == len(by_lane) - 1 else left - left // 4
        first += dealt[:share]
        beyond += dealt[share:]
        left -= min(share, len(dealt))
    return first + beyond, crowded


def _take_turns(lane: Mapping[int, tuple[int | None, datetime]]) -> list[int]:
    """Job ids in turns: every shop's oldest due, then every shop's second, ..."""
    shops: dict[int | None, list[tuple[datetime, int]]] = {}
    for job_id, (shop_id, due_at) in lane.items():
        shops.setdefault(shop_id, []).append((due_at, job_id))
    turns: list[list[int]] = []
    for shop_jobs in sorted(sorted(queue) for queue in shops.values()):
        for turn, (_, job_id) in enumerate(shop_jobs):
            if turn == len(turns):
                turns.append([])
            turns[turn].append(job_id)
    return [job_id for turn in turns for job_id in turn]
