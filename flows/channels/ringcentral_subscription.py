"""Keep the platform's RingCentral webhook subscription alive: create it when there is none
(or it stopped working), renew it a day before it expires, and check again every 6 hours."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from clock import Clock
from flows.jobs import provider_failure
from providers.base import ProviderError
from providers.ringcentral import RingCentralClient, Subscription, needs_renewal
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import ProviderState

_LOGGER = logging.getLogger(__name__)

SUBSCRIPTION_JOB = "ringcentral.subscription"
STATE_KEY = "ringcentral.subscription"
CHECK_EVERY = timedelta(hours=6)


def _slot(now: datetime) -> int:
    return int(now.timestamp() // CHECK_EVERY.total_seconds())


def next_check(now: datetime) -> NewJob:
    """The next check; one per 6-hour slot however often it is asked for."""
    slot = _slot(now) + 1
    due = datetime.fromtimestamp(slot * CHECK_EVERY.total_seconds(), now.tzinfo)
    return NewJob(SUBSCRIPTION_JOB, due_at=due, idempotency_key=f"{SUBSCRIPTION_JOB}:{slot}")


def check_now(now: datetime) -> NewJob:
    """A check at start; one per slot however many processes start."""
    return NewJob(SUBSCRIPTION_JOB, idempotency_key=f"{SUBSCRIPTION_JOB}:start:{_slot(now)}")


class SubscriptionKeeper:
    """The SUBSCRIPTION_JOB handler."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        clock: Clock,
        client: RingCentralClient,
        address: str,
        verification_token: str,
    ) -> None:
        self.db = db
        self.queue = queue
        self.clock = clock
        self.client = client
        self.address = address
        self.verification_token = verification_token

    async def handle(self, job: ClaimedJob) -> None:
        async with self.db.sessions() as session:
            state = await session.get(ProviderState, STATE_KEY)
        current = _subscription(state.value) if state else None
        try:
            subscription = await self._keep(current)
        except ProviderError as exc:
            raise provider_failure(exc) from exc
        now = self.clock.now()
        async with self.db.transaction() as session:
            value = {
                "id": subscription.id,
                "expires_at": subscription.expires_at.isoformat(),
                "address": subscription.address or self.address,
            }
            await session.merge(ProviderState(key=STATE_KEY, value=value, updated_at=now))
            await self.queue.enqueue(session, next_check(now))

    async def _keep(self, current: Subscription | None) -> Subscription:
        now = self.clock.now()
        if current is not None and current.address == self.address:
            if not needs_renewal(current, now):
                return current
            try:
                return await self.client.renew_subscription(current.id)
            except ProviderError as exc:
                if exc.retryable:
                    raise
                _LOGGER.warning(
                    "ringcentral subscription %s not renewable (%s); new one", current.id, exc
                )
        return await self.client.create_subscription(self.address, self.verification_token)


def _subscription(value: dict) -> Subscription:
    return Subscription(value["id"], datetime.fromisoformat(value["expires_at"]), value["address"])
