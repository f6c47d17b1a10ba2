"""The verification call job: place one call of one attempt, at most once.

The call row is written before the provider is asked (status `placing`); a run that finds it
still `placing` knows an earlier run died with the request possibly out, and never dials
again for that attempt: it is recorded `unconfirmed` and the flow moves on as if unanswered.
A provider that timed out (or dropped the connection) after the request went out is the same
case, found at once: `unconfirmed`, counted in the metrics, never dialled again. A DND or
other permanent refusal goes to the flow, which falls back at once.

The calling window is checked on every run, just before dialling: a late run (a backlog, a
retry after backoff, a rate-limit deferral) finding it closed waits for its next start, the
same attempt (the job is deferred, not failed; the flow's call timer moves with it).

Call jobs come in floods on a sale day: they run a batch at a time, in three transactions
per batch (prepare, mark `placing`, record) whatever its size, the calls of the batch whose
account has a slot now placed together; the others are deferred to their slots.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from sqlalchemy import select, update
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
        """CALL_JOB, a batch at a time: the calls are prepared in one transaction, the ones
        whose account has a slot now are marked `placing` in a second and placed together,
        and every outcome is recorded in a third. The others are deferred to their slots."""
        errors: list[BaseException | None] = [None] * len(jobs)
        # Verifications are locked in one order by every batch: no deadlock between workers.
        order = sorted(range(len(jobs)), key=lambda i: jobs[i].payload["verification_id"])
        ready: dict[int, tuple[VoiceRoute, int, CallRequest]] = {}
        async with self.db.transaction() as session:
            refs = {
                i: (jobs[i].payload["verification_id"], jobs[i].payload["call"]) for i in order
            }
            contexts = await self.verifier.load_many(session, {vid for vid, _ in refs.values()})
            calls = {
                call.idempotency_key: call
                for call in await session.scalars(
                    select(Call).where(
                        Call.idempotency_key.in_([call_key(*ref) for ref in refs.values()])
                    )
                )
            }
            routes: dict[int, VoiceRoute | Exception] = {}
            prepared: dict[int, tuple[VoiceRoute, Call, CallRequest]] = {}
            for i in order:
                vid, ref = refs[i]
                try:
                    found = await self._prepare(
                        session, contexts.get(vid), vid, ref, calls.get(call_key(vid, ref)), routes
                    )
                except Deferred as exc:
                    errors[i] = exc
                    continue
                if isinstance(found, Deferred):
                    errors[i] = found
                elif found is not None:
                    prepared[i] = found
            await session.flush()  # the new call rows get their ids
            ready = {
                i: (route, call.id, request) for i, (route, call, request) in prepared.items()
            }
        keys = {i: (route.rate_key, route.per_second) for i, (route, _, _) in ready.items()}
        going, slots = await batch_slots(self.limiter, self.clock, jobs, keys, errors)
        if not going:
            return errors
        async with self.db.transaction() as session:
            await session.execute(
                update(Call)
                .where(Call.id.in_([ready[i][1] for i in going]))
                .values(status="placing")
            )
        results = await send_spaced(
            self.limiter,
            self.clock,
            [
                (
                    ready[i][0].rate_key,
                    ready[i][0].per_second,
                    slots[i],
                    partial(ready[i][0].client.place_call, ready[i][2]),
                )
                for i in going
            ],
        )
        outcomes = dict(zip(going, results, strict=True))
        rejected: dict[int, str] = {}
        async with self.db.transaction() as session:
            placed = await session.scalars(
                select(Call).where(Call.id.in_([ready[i][1] for i in going]))
            )
            by_id = {call.id: call for call in placed}
            for i in (i for i in order if i in outcomes):
                call = by_id[ready[i][1]]
                errors[i] = await self._record(
                    session, jobs[i], ready[i], call, outcomes[i], rejected
                )
        for account_id, reason in rejected.items():
            await self.on_rejected(account_id, reason)
        for i in going:
            route, result = ready[i][0], outcomes[i]
            if isinstance(result, ProviderError) and result.code == THROTTLED:
                now = self.clock.now()
                errors[i] = await throttled(
                    self.limiter, jobs[i], route.rate_key, route.per_second, now, result
                )
            elif isinstance(result, ProviderError) and result.in_doubt and self.metrics:
                self.metrics.sends_in_doubt.labels(route.provider, "call").inc()
        return errors

    async def _record(
        self,
        session: AsyncSession,
        job: ClaimedJob,
        ready: tuple[VoiceRoute, int, CallRequest],
        call: Call,
        result: CallReceipt | BaseException,
        rejected: dict[int, str],
    ) -> BaseException | None:
        """One placed (or not placed) call's outcome, in the batch's last transaction; the
        job's error (None: done). A 429 is finished by the caller (it moves the slots)."""
        route = ready[0]
        verification_id, ref = job.payload["verification_id"], job.payload["call"]
        if isinstance(result, Deferred):
            call.status = "queued"  # the sends were spaced: not sent
            return result
        if isinstance(result, ProviderError):
            exc = result
            if exc.code == UNAUTHORIZED:
                call.status = "queued"
                rejected[route.account_id] = str(exc)
                return AccountWaiting(route.account_id).deferral()
            if exc.code == THROTTLED:
                call.status = "queued"
                return exc
            if exc.in_doubt:
                await self._unconfirmed(session, verification_id, call, ref, exc)
                return None
            if exc.retryable and job.attempts < job.max_attempts:
                call.status = "queued"
                return provider_failure(exc)
            await self._refused(session, verification_id, call, ref, exc)
            return None
        if isinstance(result, BaseException):
            return result  # left `placing`: the request may have gone out
        _LOGGER.info(
            "verification %s: call %s placed through the %s %s account",
            verification_id,
            ref,
            route.account,
            route.provider,
        )
        call.provider_call_id = result.provider_call_id
        call.status = result.status or "queued"
        session.add(
            Activity(
                shop_id=call.shop_id,
                order_id=call.order_id,
                kind="call_placed",
                mode="ivr",
                detail={"call_id": call.id, "attempt": call.attempt, "provider": call.provider},
                created_at=self.clock.now(),
            )
        )
        return None

    async def _prepare(
        self,
        session: AsyncSession,
        ctx: Context | None,
        verification_id: int,
        ref: str,
        call: Call | None,
        routes: dict[int, VoiceRoute | Exception],
    ) -> tuple[VoiceRoute, Call, CallRequest] | Deferred | None:
        """The route, call row (new ones not yet flushed) and request of a call to place
        now; a deferral until the calling window opens; or None when there is nothing (more)
        to do. Raises Deferred while the account waits for its owner. `routes` keeps each
        shop's route (or why it has none) for the batch."""
        if ctx is None or ctx.state.status != PENDING or ctx.state.open_call != ref:
            return None  # decided, stopped or moved on since the call was asked for
        if call is not None and call.status == "placing":
            call.status, call.error = "unconfirmed", "worker lost while placing the call"
            await self.verifier.apply(session, ctx, CallEnded(ref, "unknown"))
            return None
        if call is not None and call.status != "queued":
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
        if call is None:
            call = self._new_call(ctx, route, call_key(verification_id, ref))
            session.add(call)
        return route, call, self._request(ctx, route)

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

    def _new_call(self, ctx: Context, route: VoiceRoute, key: str) -> Call:
        return Call(
            shop_id=ctx.shop.id,
            order_id=ctx.order.id,
            provider=route.provider,
            account=route.account,
            idempotency_key=key,
            to_phone=ctx.order.phone,
            from_phone=route.caller_id,
            attempt=ctx.state.attempt,
            status="queued",
            created_at=self.clock.now(),
        )

    async def _unconfirmed(
        self,
        session: AsyncSession,
        verification_id: int,
        call: Call,
        ref: str,
        exc: ProviderError,
    ) -> None:
        _LOGGER.warning("verification %s call in doubt: %s %s", verification_id, exc.code, exc)
        call.status, call.error = "unconfirmed", f"{exc.code}: {exc}"[:2000]
        ctx = await self.verifier.load(session, verification_id)
        if ctx is not None:
            await self.verifier.apply(session, ctx, CallEnded(ref, "unknown"))

    async def _refused(
        self,
        session: AsyncSession,
        verification_id: int,
        call: Call,
        ref: str,
        exc: ProviderError,
    ) -> None:
        _LOGGER.warning("verification %s call refused: %s %s", verification_id, exc.code, exc)
        call.status, call.error = "failed", f"{exc.code}: {exc}"[:2000]
        call.ended_at = self.clock.now()
        ctx = await self.verifier.load(session, verification_id)
        if ctx is None:
            return
        # A provider that kept failing is an unanswered attempt; a refusal ends the calls.
        event = CallEnded(ref, "failed") if exc.retryable else CallRefused(ref, exc.code)
        await self.verifier.apply(session, ctx, event)
