"""Keep RingCentral webhook subscriptions alive, the platform's account's and each shop's own
account's: create one when there is none (or it stopped working), renew it a day before it
expires, and check again every 6 hours. A shop account's subscription delivers to its own
address and verification token, so its inbound SMS reach that shop alone."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import SHOP, Clients, secrets_of
from flows.channels.callback_urls import PLATFORM, CallbackUrls, ringcentral_token
from flows.jobs import provider_failure
from providers.base import ProviderError
from providers.ringcentral import Subscription, needs_renewal
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import ProviderAccount, ProviderState

_LOGGER = logging.getLogger(__name__)

SUBSCRIPTION_JOB = "ringcentral.subscription"
STATE_KEY = "ringcentral.subscription"
CHECK_EVERY = timedelta(hours=6)


def state_key(account_id: int = PLATFORM) -> str:
    return STATE_KEY if account_id == PLATFORM else f"{STATE_KEY}.{account_id}"


def _slot(now: datetime) -> int:
    return int(now.timestamp() // CHECK_EVERY.total_seconds())


def _job(key: str, account_id: int, due_at: datetime | None = None) -> NewJob:
    payload = {} if account_id == PLATFORM else {"account_id": account_id}
    suffix = "" if account_id == PLATFORM else f":{account_id}"
    return NewJob(SUBSCRIPTION_JOB, payload, due_at=due_at, idempotency_key=f"{key}{suffix}")


def next_check(now: datetime, account_id: int = PLATFORM) -> NewJob:
    """The next check; one per 6-hour slot however often it is asked for."""
    slot = _slot(now) + 1
    due = datetime.fromtimestamp(slot * CHECK_EVERY.total_seconds(), now.tzinfo)
    return _job(f"{SUBSCRIPTION_JOB}:{slot}", account_id, due)


def check_now(now: datetime, account_id: int = PLATFORM) -> NewJob:
    """A check at start (or when an account is connected); one per slot."""
    return _job(f"{SUBSCRIPTION_JOB}:start:{_slot(now)}", account_id)


async def subscriptions(session: AsyncSession, account_ids: Sequence[int]) -> dict[int, datetime]:
    """When each account's subscription expires (accounts without one are left out)."""
    found = {}
    for account_id in account_ids:
        state = await session.get(ProviderState, state_key(account_id))
        if state is not None:
            found[account_id] = datetime.fromisoformat(state.value["expires_at"])
    return found


class SubscriptionKeeper:
    """The SUBSCRIPTION_JOB handler."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        clock: Clock,
        clients: Clients,
        box: SecretBox,
        urls: CallbackUrls,
        secret_key: str,
    ) -> None:
        self.db = db
        self.queue = queue
        self.clock = clock
        self.clients = clients
        self.box = box
        self.urls = urls
        self.secret_key = secret_key

    async def handle(self, job: ClaimedJob) -> None:
        account_id = job.payload.get("account_id", PLATFORM)
        async with self.db.sessions() as session:
            client = await self._client(session, account_id)
            state = await session.get(ProviderState, state_key(account_id))
        if client is None:
            return  # the account is gone or no longer configured: its subscription lapses
        current = _subscription(state.value) if state else None
        address = self.urls.ringcentral(account_id)
        try:
            subscription = await self._keep(client, current, address, account_id)
        except ProviderError as exc:
            raise provider_failure(exc) from exc
        now = self.clock.now()
        async with self.db.transaction() as session:
            value = {
                "id": subscription.id,
                "expires_at": subscription.expires_at.isoformat(),
                "address": subscription.address or address,
            }
            state = ProviderState(key=state_key(account_id), value=value, updated_at=now)
            await session.merge(state)
            await self.queue.enqueue(session, next_check(now, account_id))

    async def _client(self, session: AsyncSession, account_id: int) -> Any:
        if account_id == PLATFORM:
            return self.clients.platform("ringcentral")
        account = await session.get(ProviderAccount, account_id)
        if account is None or account.provider != "ringcentral" or account.owner != SHOP:
            return None
        return self.clients.for_account(
            account.provider, account.details, secrets_of(account, self.box)
        )

    async def _keep(
        self, client: Any, current: Subscription | None, address: str, account_id: int
    ) -> Subscription:
        now = self.clock.now()
        if current is not None and current.address == address:
            if not needs_renewal(current, now):
                return current
            try:
                return await client.renew_subscription(current.id)
            except ProviderError as exc:
                if exc.retryable:
                    raise
                _LOGGER.warning(
                    "ringcentral subscription %s not renewable (%s); new one", current.id, exc
                )
        token = ringcentral_token(self.secret_key, account_id)
        return await client.create_subscription(address, token)


def _subscription(value: dict) -> Subscription:
    return Subscription(value["id"], datetime.fromisoformat(value["expires_at"]), value["address"])
