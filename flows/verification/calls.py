"""The verification call job: place one call of one attempt, at most once.

The call row is written before the provider is asked (status `placing`, committed with the
call's slot); a run that finds it still `placing` knows an earlier run died with the request
possibly out, and never dials again for that attempt: it is recorded `unconfirmed` and the
flow moves on as if unanswered. A provider that timed out (or dropped the connection) after
the request went out is the same case, found at once: `unconfirmed`, counted in the metrics,
never dialled again. A DND or other permanent refusal goes to the flow, which falls back at
once.

The calling window is checked on every run, just before dialling: a late run (a backlog, a
retry after backoff, a rate-limit deferral) finding it closed waits for its next start, the
same attempt (the job is deferred, not failed; the flow's call timer moves with it).

Call jobs come in floods on a sale day: they run a batch at a time, in two transactions per
batch whatever its size. The first reads the batch's verifications and calls, takes the
slots, and writes the calls that go now `placing` and the others `queued` (deferred to their
slots), new rows in one statement; the calls are then placed together, and the second
transaction records the outcomes, one statement for the placed calls and one for their
activities. Rows are written with core statements, not through the ORM: a flood's calls
are many.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import AccountWaiting
from flows.channels.messaging import NoRoute
from flows.channels.routing import ProviderRouter, VoiceRoute
from flows.jobs import (
    THROTTLED,
    batch_slots,
    provider_failure,
    send_spaced,
    throttled,
)
from flows.verification.flow import PENDING, CallEnded, CallRefused
from flows.verification.runtime import Context, Verifier, call_key
from metrics import Metrics
from providers.base import UNAUTHORIZED, CallReceipt, CallRequest, ProviderError
from storage.db import Database
from storage.jobs import ClaimedJob, Deferred
from storage.models import Activity, Call
from storage.ratelimit import RateLimiter

_LOGGER = logging.getLogger(__name__)
RING_SECONDS = 30


_CALLS = Call.__table__
_PLACED = (
    update(_CALLS)
    .where(_CALLS.c.id == bindparam("b_id"))
    .values(provider_call_id=bindparam("b_sid"), status=bindparam("b_status"))
)


@dataclass
class _Call:
    """A call of the batch to place (or to defer): its route, request and row."""

    route: VoiceRoute
    request: CallRequest
    key: str
    row_id: int  # 0: a new row, inserted with the batch's others
    shop_id: int
    order_id: int
    attempt: int
    ref: str
    verification_id: int


class CallPlacer:
    """The CALL_JOB handler. `router.voice(shop, settings)` picks the account."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        limiter: RateLimiter,
        router: ProviderRouter,
        verifier: Verifier,
        on_rejected: Callable[[int, str], Awaitable[None]],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limiter = limiter
        self.router = router
        self.verifier = verifier
        self.on_rejected = on_rejected  # (account id, reason): the provider refused it
        self.metrics = metrics

    async def handle(self, job: ClaimedJob) -> None:
        """One call job: the batch of one."""
        [error] = await self.handle_batch([job])
        if error is not None:
            raise error

    async def handle_batch(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        """CALL_JOB, a batch at a time: the calls are prepared, given their slots and written
        in one transaction, the ones whose slot is now (or within the batch's patience) are
        placed together, and every outcome is recorded in a second. The others are deferred
        to their slots."""
        errors: list[BaseException | None] = [None] * len(jobs)
        async with self.db.transaction() as session:
            calls = await self._prepare(session, jobs, errors)
            keys = {i: (call.route.rate_key, call.route.per_second) for i, call in calls.items()}
            going, slots = await batch_slots(self.limiter, self.clock, jobs, keys, errors)
            await self._write(session, calls, set(going))
        if not going:
            return errors
        results = await send_spaced(
            self.limiter,
            self.clock,
            [
                (
                    calls[i].route.rate_key,
                    calls[i].route.per_second,
                    slots[i],
                    partial(calls[i].route.client.place_call, calls[i].request),
                )
                for i in going
            ],
        )
        outcomes = dict(zip(going, results, strict=True))
        rejected: dict[int, str] = {}
        async with self.db.transaction() as session:
            await self._record(session, jobs, calls, outcomes, errors, rejected)
        for account_id, reason in rejected.items():
            await self.on_rejected(account_id, reason)
        for i in going:
            route, result = calls[i].route, outcomes[i]
            if isinstance(result, ProviderError) and result.code == THROTTLED:
                now = self.clock.now()
                errors[i] = await throttled(
                    self.limiter, jobs[i], route.rate_key, route.per_second, now, result
                )
            elif isinstance(result, ProviderError) and result.in_doubt and self.metrics:
                self.metrics.sends_in_doubt.labels(route.provider, "call").inc()
        return errors

    async def _prepare(
        self, session: AsyncSession, jobs: list[ClaimedJob], errors: list[BaseException | None]
    ) -> dict[int, _Call]:
        """The batch's calls to place now or later, by job index, in verification order;
        the jobs with nothing (more) to do are left out, those that must wait get their
        deferral in `errors`."""
        # Verifications are locked in one order by every batch: no deadlock between workers.
        order = sorted(range(len(jobs)), key=lambda i: jobs[i].payload["verification_id"])
        refs = {i: (jobs[i].payload["verification_id"], jobs[i].payload["call"]) for i in order}
        keys = {i: call_key(*ref) for i, ref in refs.items()}
        contexts = await self.verifier.load_many(session, {vid for vid, _ in refs.values()})
        rows = {
            key: (row_id, status)
            for row_id, key, status in await session.execute(
                select(_CALLS.c.id, _CALLS.c.idempotency_key, _CALLS.c.status).where(
                    _CALLS.c.idempotency_key.in_(keys.values())
                )
            )
        }
        routes: dict[int, VoiceRoute | Exception] = {}
        calls: dict[int, _Call] = {}
        for i in order:
            vid, ref = refs[i]
            try:
                found = await self._prepare_one(
                    session, contexts.get(vid), vid, ref, keys[i], rows.get(keys[i]), routes
                )
            except Deferred as exc:
                errors[i] = exc
                continue
            if isinstance(found, Deferred):
                errors[i] = found
            elif found is not None:
                calls[i] = found
        return calls

    async def _prepare_one(
        self,
        session: AsyncSession,
        ctx: Context | None,
        verification_id: int,
        ref: str,
        key: str,
        row: tuple[int, str] | None,
        routes: dict[int, VoiceRoute | Exception],
    ) -> _Call | Deferred | None:
        """The call to place now (its row, if any, is `queued`); a deferral until the
        calling window opens; or None when there is nothing (more) to do. Raises Deferred
        while the account waits for its owner. `routes` keeps each shop's route (or why it
        has none) for the batch."""
        if ctx is None:
            return None
        state = ctx.state
        if state.status != PENDING or state.open_call != ref:
            return None  # decided, stopped or moved on since the call was asked for
        if row is not None and row[1] == "placing":
            await session.execute(
                update(_CALLS)
                .where(_CALLS.c.id == row[0])
                .values(status="unconfirmed", error="worker lost while placing the call")
            )
            await self.verifier.apply(session, ctx, CallEnded(ref, "unknown"))
            return None
        if row is not None and row[1] != "queued":
            return None
        until = await self.verifier.wait_for_window(session, ctx, "call", ref)
        if until is not None:
            wait = (until - self.clock.now()).total_seconds()
            return Deferred(wait, "outside the calling window")
        if ctx.shop.id not in routes:
            try:
                routes[ctx.shop.id] = await self.router.voice(session, ctx.shop, ctx.settings)
            except (AccountWaiting, NoRoute) as exc:
                routes[ctx.shop.id] = exc
        route = routes[ctx.shop.id]
        if isinstance(route, AccountWaiting):
            raise route.deferral()
        if isinstance(route, Exception):
            _LOGGER.warning("verification %s: %s", verification_id, route)
            await self.verifier.apply(session, ctx, CallRefused(ref, "NO_ROUTE"))
            return None
        return _Call(
            route,
            self._request(ctx, route),
            key,
            0 if row is None else row[0],
            ctx.shop.id,
            ctx.order.id,
            state.attempt,
            ref,
            verification_id,
        )

    async def _write(
        self, session: AsyncSession, calls: dict[int, _Call], going: set[int]
    ) -> None:
        """The batch's call rows: `placing` for those going now, `queued` for the others;
        the new ones inserted together (their ids set)."""
        new = {i: call for i, call in calls.items() if not call.row_id}
        if new:
            now = self.clock.now()
            inserted = await session.execute(
                insert(_CALLS).returning(_CALLS.c.id, _CALLS.c.idempotency_key),
                [
                    self._row(call, "placing" if i in going else "queued", now)
                    for i, call in new.items()
                ],
            )
            ids = {key: row_id for row_id, key in inserted}
            for call in new.values():
                call.row_id = ids[call.key]
        queued = [call.row_id for i, call in calls.items() if i in going and i not in new]
        if queued:
            await session.execute(
                update(_CALLS).where(_CALLS.c.id.in_(queued)).values(status="placing")
            )

    @staticmethod
    def _row(call: _Call, status: str, now: datetime) -> dict[str, Any]:
        route = call.route
        return {
            "shop_id": call.shop_id,
            "order_id": call.order_id,
            "provider": route.provider,
            "account": route.account,
            "idempotency_key": call.key,
            "to_phone": call.request.to,
            "from_phone": route.caller_id,
            "attempt": call.attempt,
            "status": status,
            "created_at": now,
        }

    async def _record(
        self,
        session: AsyncSession,
        jobs: list[ClaimedJob],
        calls: dict[int, _Call],
        outcomes: dict[int, CallReceipt | BaseException],
        errors: list[BaseException | None],
        rejected: dict[int, str],
    ) -> None:
        """The outcomes of the calls placed (or not placed), each job's error in `errors`
        (None: done). A 429 is finished by the caller (it moves the slots)."""
        placed: list[tuple[_Call, CallReceipt]] = []
        requeued: list[int] = []
        for i, result in outcomes.items():
            call = calls[i]
            if isinstance(result, CallReceipt):
                placed.append((call, result))
            elif isinstance(result, Deferred):
                requeued.append(call.row_id)  # the sends were spaced: not sent
                errors[i] = result
            elif isinstance(result, ProviderError):
                errors[i] = await self._failed(session, jobs[i], call, result, requeued, rejected)
            else:
                errors[i] = result  # left `placing`: the request may have gone out
        if requeued:
            await session.execute(
                update(_CALLS).where(_CALLS.c.id.in_(requeued)).values(status="queued")
            )
        if not placed:
            return
        await session.execute(
            _PLACED,
            [
                {
                    "b_id": call.row_id,
                    "b_sid": receipt.provider_call_id,
                    "b_status": receipt.status or "queued",
                }
                for call, receipt in placed
            ],
        )
        now = self.clock.now()
        await session.execute(
            insert(Activity.__table__),
            [
                {
                    "shop_id": call.shop_id,
                    "order_id": call.order_id,
                    "kind": "call_placed",
                    "mode": "ivr",
                    "detail": {
                        "call_id": call.row_id,
                        "attempt": call.attempt,
                        "provider": call.route.provider,
                    },
                    "created_at": now,
                }
                for call, _ in placed
            ],
        )
        if _LOGGER.isEnabledFor(logging.INFO):  # one line for the batch: a flood's calls are many
            _LOGGER.info(
                "; ".join(
                    f"verification {call.verification_id}: call {call.ref} placed through the "
                    f"{call.route.account} {call.route.provider} account"
                    for call, _ in placed
                )
            )

    async def _failed(
        self,
        session: AsyncSession,
        job: ClaimedJob,
        call: _Call,
        exc: ProviderError,
        requeued: list[int],
        rejected: dict[int, str],
    ) -> BaseException | None:
        """A call the provider did not take: the job's error (None: done); a call to try
        again is put in `requeued`."""
        if exc.code == UNAUTHORIZED:
            requeued.append(call.row_id)
            rejected[call.route.account_id] = str(exc)
            return AccountWaiting(call.route.account_id).deferral()
        if exc.code == THROTTLED:
            requeued.append(call.row_id)
            return exc
        if exc.in_doubt:
            _LOGGER.warning(
                "verification %s call in doubt: %s %s", call.verification_id, exc.code, exc
            )
            await self._ended(session, call, "unconfirmed", exc, CallEnded(call.ref, "unknown"))
            return None
        if exc.retryable and job.attempts < job.max_attempts:
            requeued.append(call.row_id)
            return provider_failure(exc)
        _LOGGER.warning("verification %s call refused: %s %s", call.verification_id, exc.code, exc)
        # A provider that kept failing is an unanswered attempt; a refusal ends the calls.
        event = CallEnded(call.ref, "failed") if exc.retryable else CallRefused(call.ref, exc.code)
        await self._ended(session, call, "failed", exc, event)
        return None

    async def _ended(
        self,
        session: AsyncSession,
        call: _Call,
        status: str,
        exc: ProviderError,
        event: CallEnded | CallRefused,
    ) -> None:
        """A call that will not ring (`unconfirmed`: it may have): its row, and the flow told."""
        values: dict[str, Any] = {"status": status, "error": f"{exc.code}: {exc}"[:2000]}
        if status == "failed":
            values["ended_at"] = self.clock.now()
        await session.execute(update(_CALLS).where(_CALLS.c.id == call.row_id).values(**values))
        ctx = await self.verifier.load(session, call.verification_id)
        if ctx is not None:
            await self.verifier.apply(session, ctx, event)

    @staticmethod
    def _request(ctx: Context, route: VoiceRoute) -> CallRequest:
        return CallRequest(
            to=ctx.order.phone,
            caller_id=route.caller_id,
            answer_url=route.answer_url,
            flow_id=route.flow_id,
            status_callback=route.status_callback,
            reference=f"v{ctx.row.id}",
            timeout_seconds=RING_SECONDS,
        )
