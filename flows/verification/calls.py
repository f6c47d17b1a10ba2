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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select

from clock import Clock
from flows.channels.accounts import AccountWaiting
from flows.channels.messaging import NoRoute
from flows.channels.routing import ProviderRouter, VoiceRoute
from flows.jobs import THROTTLED, provider_failure, space_send, throttled, wait_for_slot
from flows.verification.flow import PENDING, CallEnded, CallRefused
from flows.verification.runtime import Context, Verifier, call_key
from metrics import Metrics
from providers.base import UNAUTHORIZED, CallRequest, ProviderError
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
        verification_id, ref = job.payload["verification_id"], job.payload["call"]
        ready = await self._prepare(verification_id, ref)
        if ready is None:
            return
        if isinstance(ready, Deferred):
            raise ready
        route, call_id, request = ready
        await wait_for_slot(self.limiter, job, route.rate_key, route.per_second, self.clock.now())
        await self._set(call_id, "placing")
        try:
            await space_send(self.limiter, route.rate_key, route.per_second)
        except Deferred:
            await self._set(call_id, "queued")
            raise
        try:
            receipt = await route.client.place_call(request)
        except ProviderError as exc:
            if exc.code == UNAUTHORIZED:
                await self._set(call_id, "queued")
                await self.on_rejected(route.account_id, str(exc))
                raise AccountWaiting(route.account_id).deferral() from exc
            if exc.code == THROTTLED:
                await self._set(call_id, "queued")
                now = self.clock.now()
                raise await throttled(
                    self.limiter, job, route.rate_key, route.per_second, now, exc
                ) from exc
            if exc.in_doubt:
                await self._unconfirmed(verification_id, call_id, ref, exc)
                if self.metrics is not None:
                    self.metrics.sends_in_doubt.labels(route.provider, "call").inc()
                return
            if exc.retryable and job.attempts < job.max_attempts:
                await self._set(call_id, "queued")
                raise provider_failure(exc) from exc
            await self._refused(verification_id, call_id, ref, exc)
            return
        _LOGGER.info(
            "verification %s: call %s placed through the %s %s account",
            verification_id,
            ref,
            route.account,
            route.provider,
        )
        async with self.db.transaction() as session:
            call = await session.get(Call, call_id)
            call.provider_call_id = receipt.provider_call_id
            call.status = receipt.status or "queued"
            session.add(
                Activity(
                    shop_id=call.shop_id,
                    order_id=call.order_id,
                    kind="call_placed",
                    mode="ivr",
                    detail={
                        "call_id": call.id,
                        "attempt": call.attempt,
                        "provider": call.provider,
                    },
                    created_at=self.clock.now(),
                )
            )

    async def _prepare(
        self, verification_id: int, ref: str
    ) -> tuple[VoiceRoute, int, CallRequest] | Deferred | None:
        """The route, call row and request of a call to place now; a deferral until the
        calling window opens; or None when there is nothing (more) to do."""
        key = call_key(verification_id, ref)
        async with self.db.transaction() as session:
            ctx = await self.verifier.load(session, verification_id)
            if ctx is None or ctx.state.status != PENDING or ctx.state.open_call != ref:
                return None  # decided, stopped or moved on since the call was asked for
            call = await session.scalar(select(Call).where(Call.idempotency_key == key))
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
            try:
                route = await self.router.voice(session, ctx.shop, ctx.settings)
            except AccountWaiting as exc:
                raise exc.deferral() from None
            except NoRoute as exc:
                _LOGGER.warning("verification %s: %s", verification_id, exc)
                await self.verifier.apply(session, ctx, CallRefused(ref, "NO_ROUTE"))
                return None
            if call is None:
                call = self._new_call(ctx, route, key)
                session.add(call)
                await session.flush()
            return route, call.id, self._request(ctx, route)

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

    async def _set(self, call_id: int, status: str) -> None:
        async with self.db.transaction() as session:
            call = await session.get(Call, call_id)
            call.status = status

    async def _unconfirmed(
        self, verification_id: int, call_id: int, ref: str, exc: ProviderError
    ) -> None:
        _LOGGER.warning("verification %s call in doubt: %s %s", verification_id, exc.code, exc)
        async with self.db.transaction() as session:
            call = await session.get(Call, call_id)
            call.status, call.error = "unconfirmed", f"{exc.code}: {exc}"[:2000]
            ctx = await self.verifier.load(session, verification_id)
            if ctx is not None:
                await self.verifier.apply(session, ctx, CallEnded(ref, "unknown"))

    async def _refused(
        self, verification_id: int, call_id: int, ref: str, exc: ProviderError
    ) -> None:
        _LOGGER.warning("verification %s call refused: %s %s", verification_id, exc.code, exc)
        async with self.db.transaction() as session:
            call = await session.get(Call, call_id)
            call.status, call.error = "failed", f"{exc.code}: {exc}"[:2000]
            call.ended_at = self.clock.now()
            ctx = await self.verifier.load(session, verification_id)
            if ctx is None:
                return
            # A provider that kept failing is an unanswered attempt; a refusal ends the calls.
            event = CallEnded(ref, "failed") if exc.retryable else CallRefused(ref, exc.code)
            await self.verifier.apply(session, ctx, event)
