"""The job worker: claims due jobs in batches, runs their handlers, writes results in batches.

A worker holds at most `concurrency` claimed jobs of each lane (contacts waiting for their
provider's slots never keep the intake from being claimed). Handlers run concurrently, but a
flooding shop's batches of a kind that comes in floods run one at a time, apart from the
other shops' jobs (see `_chunks`), so those do not share the process with a whole flood. Each
loop turn writes the finished results back and claims into the free slots in one
transaction, which also tells when the next job falls due if the claim came back short (the
worker sleeps till then, or till new work or a finished job wakes it). Held jobs have their
lease renewed while they run; jobs of a dead worker are taken back once their lease expires.
A failing job retries with exponential backoff and jitter, and is `dead` after its last
attempt. On stop, running handlers get a grace period; what is still running is cancelled
and handed back untouched. A database outage never ends the loop: it waits and tries again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from clock import Clock
from metrics import Metrics
from settings import JobsSettings
from storage.jobs.queue import ClaimedJob, Exchange, JobQueue, Outcome
from storage.turns import Turns
from storage.wakeup import Wakeup

_LOGGER = logging.getLogger(__name__)
BATCH_SIZE = 50  # jobs per call of a batch handler
# A shop with more jobs than this in one claim of a kind is flooding: its batches are apart.
FLOOD_JOBS = BATCH_SIZE // 5
# A job due now but not claimable (another worker's claim is committing): look again soon.
MIN_WAKE_SECONDS = 0.002

Handler = Callable[[ClaimedJob], Awaitable[None]]
# Runs many jobs of one kind together; answers each job's error (None: done), in order.
BatchHandler = Callable[[list[ClaimedJob]], Awaitable[list[BaseException | None]]]


class PermanentJobError(Exception):
    """The job can never succeed: record why and do not retry."""


class RetryLater(Exception):
    """Retry after a delay the handler knows (e.g. a provider's Retry-After)."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {seconds:g}s")
        self.seconds = seconds


class Deferred(Exception):
    """Not a failure (e.g. a rate limit is reached): run again later, attempt not counted.

    `payload`, when given, replaces the job's payload for the next run (e.g. the rate-limit
    slot the job now holds).
    """

    def __init__(
        self, seconds: float, reason: str = "", payload: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason or f"deferred {seconds:g}s")
        self.seconds = seconds
        self.payload = payload


def backoff_seconds(attempts: int, settings: JobsSettings, rng: random.Random) -> float:
    """Exponential backoff with jitter: half the delay fixed, half random."""
    ceiling = min(
        settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempts - 1)
    )
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        clock: Clock,
        settings: JobsSettings,
        wakeup: Wakeup,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        paced: Collection[str] = (),
        lanes: Mapping[str, int] | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.batch_handlers = dict(batch_handlers or {})
        # Kinds that come in floods (webhooks turned into orders): while the webhook intake
        # works they give way to it, taking turns a batch (or a job) at a time.
        self.paced = frozenset(paced)
        # Kind -> lane: due jobs of higher lanes are claimed first and their batches take the
        # flood's turns first (other kinds are lane 0).
        self.lanes = dict(lanes or {})
        self.clock = clock
        self.settings = settings
        self.wakeup = wakeup
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.id = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._held: dict[int, ClaimedJob] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._results: list[Outcome] = []
        self._stopping = False
        self._nudge = asyncio.Event()
        # A flooding shop's batches of a kind that comes in floods run one at a time.
        self._floods = Turns()
        # Set while the worker waits for work (lets callers know it has caught up).
        self.idle = asyncio.Event()

    def stop(self) -> None:
        self._stopping = True
        self._nudge.set()

    async def run(self) -> None:
        """Work until `stop()`, then finish or hand back what is held."""
        events = self.wakeup.subscribe()
        loop = asyncio.get_running_loop()
        next_upkeep = loop.time()
        next_prune = loop.time()
        _LOGGER.info("worker %s started", self.id)
        try:
            while not self._stopping:
                next_due = None
                try:
                    if loop.time() >= next_upkeep:
                        await self._upkeep()
                        next_upkeep = loop.time() + self.settings.lease_seconds / 3
                    if loop.time() >= next_prune:
                        await self.queue.prune_done()
                        next_prune = loop.time() + 600
                    turn = await self._turn()
                    if turn.full:
                        continue
                    next_due = turn.next_due
                except Exception:
                    _LOGGER.exception("worker %s: database step failed; retrying", self.id)
                await self._idle(events, next_due)
        finally:
            self.wakeup.unsubscribe(events)
            await self._shutdown()
            _LOGGER.info("worker %s stopped", self.id)

    async def run_until_idle(self) -> int:
        """Run every job due now, including retries that fall due meanwhile; return the count.

        For tests and the sandbox's time control, which move the clock themselves.
        """
        total = 0
        while claimed := (await self._turn()).claimed:
            total += len(claimed)
            await asyncio.gather(*self._running.values())
        return total

    async def _idle(self, events: asyncio.Event, next_due: datetime | None) -> None:
        timeout = self.settings.poll_seconds
        if next_due is not None:
            # Paced jobs come due one slot apart: wake for the next, not a poll later.
            wait = (next_due - self.clock.now()).total_seconds()
            timeout = min(timeout, max(MIN_WAKE_SECONDS, wait))
        waiters = [asyncio.ensure_future(e.wait()) for e in (events, self._nudge)]
        self.idle.set()
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.idle.clear()
            for waiter in waiters:
                waiter.cancel()
        events.clear()
        self._nudge.clear()

    async def _turn(self) -> Exchange:
        """Write the finished results and claim into the free slots, in one transaction.

        Each lane has `concurrency` slots. While a lane's jobs run, it is claimed for again
        once a quarter of its slots are free: a few jobs at a time would cost a transaction
        each.
        """
        results, self._results = self._results, []
        finished = {outcome.job_id for outcome in results}
        held = collections.Counter(
            self.lanes.get(job.kind, 0)
            for job_id, job in self._held.items()
            if job_id not in finished
        )
        concurrency = self.settings.concurrency
        room = {}
        for lane in {0, *self.lanes.values()}:
            free = concurrency - held[lane]
            room[lane] = free if not held[lane] or free >= max(1, concurrency // 4) else 0
        limit = min(concurrency, sum(room.values()))
        if not results and not limit:
            return Exchange([], full=False, next_due=None)
        try:
            turn = await self.queue.exchange(self.id, results, limit, self.lanes, room)
        except BaseException:
            self._results[:0] = results
            raise
        for outcome in results:
            self._held.pop(outcome.job_id, None)
        self._dispatch(turn.claimed)
        return turn

    def _dispatch(self, claimed: list[ClaimedJob]) -> None:
        """One task per job, or per kind for kinds with a batch handler."""
        batches: dict[str, list[ClaimedJob]] = {}
        for job in claimed:
            self._held[job.id] = job
            if self.metrics:
                lag = (self.clock.now() - job.ready_at).total_seconds()
                self.metrics.job_start_lag.labels(job.kind).observe(max(lag, 0.0))
            if self._batched(job.kind):
                batches.setdefault(job.kind, []).append(job)
            else:
                self._running[job.id] = asyncio.create_task(
                    self._execute([job]), name=f"job-{job.id}"
                )
        for kind, jobs in batches.items():
            paced = kind in self.paced
            for chunk, flood in _chunks(jobs, FLOOD_JOBS if paced else BATCH_SIZE):
                task = asyncio.create_task(
                    self._execute(chunk, flood and paced), name=f"jobs-{kind}"
                )
                for job in chunk:
                    self._running[job.id] = task

    async def _execute(self, jobs: list[ClaimedJob], flood: bool = False) -> None:
        """Run one job, or one batch of a kind (`flood`: in turn with the other floods'
        batches); record each job's outcome."""
        try:
            if flood:
                async with self._floods.hold(-self.lanes.get(jobs[0].kind, 0)):
                    errors = await self._run(jobs)
            else:
                errors = await self._run(jobs)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: the jobs go back untouched.
            for job in jobs:
                self._running.pop(job.id, None)
            raise
        for job, error in zip(jobs, errors, strict=True):
            outcome = Outcome(job.id, "done") if error is None else self._failure(job, error)
            self._running.pop(job.id, None)
            self._results.append(outcome)
            if self.metrics:
                self.metrics.job_runs.labels(job.kind, _metric_outcome(outcome)).inc()
        self._nudge.set()

    def _batched(self, kind: str) -> bool:
        # A handler set for a single kind takes over from its batch handler (a test's own).
        return kind in self.batch_handlers and kind not in self.handlers

    async def _run(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        kind = jobs[0].kind
        if kind not in self.paced:
            return await self._call(jobs)
        waited = (self.clock.now() - min(job.ready_at for job in jobs)).total_seconds()
        async with self.queue.pace.turn(waited, self.lanes.get(kind, 0)):
            return await self._call(jobs)

    async def _call(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        kind = jobs[0].kind
        try:
            if self._batched(kind):
                return await self.batch_handlers[kind](jobs)
            handler = self.handlers.get(kind)
            if handler is None:
                raise PermanentJobError(f"no handler for job kind {kind!r}")
            await handler(jobs[0])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return [exc] * len(jobs)
        return [None]

    def _failure(self, job: ClaimedJob, exc: BaseException) -> Outcome:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Deferred):
            # Whole milliseconds: a wait that rounds to nothing would come due at once, again.
            retry_at = self.clock.now() + timedelta(
                milliseconds=max(1, math.ceil(exc.seconds * 1000))
            )
            return Outcome(job.id, "queued", error, retry_at, deferred=True, payload=exc.payload)
        if isinstance(exc, PermanentJobError) or job.attempts >= job.max_attempts:
            _LOGGER.warning("job %s (%s) is dead: %s", job.id, job.kind, error)
            return Outcome(job.id, "dead", error)
        if isinstance(exc, RetryLater):
            delay = exc.seconds
        else:
            delay = backoff_seconds(job.attempts, self.settings, self.rng)
        _LOGGER.info("job %s (%s) failed, retry in %.1fs: %s", job.id, job.kind, delay, error)
        return Outcome(job.id, "queued", error, self.clock.now() + timedelta(seconds=delay))

    async def _flush(self) -> None:
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            await self.queue.finish(self.id, results)
        except BaseException:
            self._results[:0] = results
            raise
        for outcome in results:
            self._held.pop(outcome.job_id, None)

    async def _upkeep(self) -> None:
        await self.queue.extend(self.id, self._held)
        recovered = await self.queue.requeue_expired()
        if recovered:
            _LOGGER.warning("took back %d jobs of a lost worker", recovered)

    async def _shutdown(self) -> None:
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=self.settings.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        reported = {outcome.job_id for outcome in self._results}
        unfinished = [job_id for job_id in self._held if job_id not in reported]
        try:
            await self.queue.release(self.id, unfinished)
        except Exception:
            _LOGGER.exception("worker %s could not hand back %d jobs", self.id, len(unfinished))
        self._held.clear()


def _chunks(jobs: list[ClaimedJob], first: int) -> list[tuple[list[ClaimedJob], bool]]:
    """A claim's jobs of one kind in batches, each marked whether it is a flood's: short
    ones, as a long transaction would keep others (the webhook intake) waiting; the jobs of
    flooding shops (not the platform's, which name none) apart from the others', which would
    otherwise wait for a flood's batch to commit; and the oldest in a first batch of `first`
    (shorter for the kinds that come in floods, so a burst's first orders reach their first
    contacts without waiting for a full batch). Each in claim order."""
    counts = collections.Counter(job.shop_id for job in jobs)
    groups: tuple[list[ClaimedJob], list[ClaimedJob]] = ([], [])
    for job in jobs:
        groups[job.shop_id is not None and counts[job.shop_id] > FLOOD_JOBS].append(job)
    chunks = []
    for flood, group in enumerate(groups):
        start, size = 0, first
        while start < len(group):
            chunks.append((group[start : start + size], bool(flood)))
            start, size = start + size, BATCH_SIZE
    return chunks


def _metric_outcome(outcome: Outcome) -> str:
    if outcome.deferred:
        return "deferred"
    return {"done": "done", "queued": "retry", "dead": "dead"}[outcome.status]
