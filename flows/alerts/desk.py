"""What a linked chat asks of its alerts: turning them off and on, the phone an agent is
rung on, and a click-to-call that bridges that phone and a customer who asked for a callback.

The call goes through the shop's voice account (`ProviderRouter.voice`), as a job: the
agent's phone rings first, and once answered the provider dials the customer with the
shop's caller id. A call in doubt (the request went, no answer came) is not placed again:
the agent is told instead, and presses the button again if no call came.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.alerts.decide import CALLBACK, Push
from flows.alerts.scan import CALL_JOB, deliver_job
from flows.channels.accounts import AccountWaiting
from flows.channels.messaging import NoRoute
from flows.channels.routing import ProviderRouter
from flows.jobs import provider_failure
from flows.shops import config
from flows.shops.bot_links import ChatLink
from providers.base import UNAUTHORIZED, ProviderError
from providers.shopify.orders import normalize_phone
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, BotLink, Shop

_LOGGER = logging.getLogger(__name__)

CALL_FAILED = "The call to {phone} could not be placed: {reason}"
REFUSED = "the shop's voice account was refused by its provider (/status)"
CALL_IN_DOUBT = (
    "I asked for the call to {phone}, but the provider did not answer: if your phone does "
    "not ring within a minute, press the button again."
)


class CallAsked(StrEnum):
    QUEUED = "queued"
    NO_PHONE = "no_phone"  # the agent's phone is not known yet: ask for it
    GONE = "gone"  # no such callback request in the chat's shop


@dataclass(frozen=True)
class Asked:
    outcome: CallAsked
    customer: str = ""
    agent: str = ""


class AlertDesk:
    """The use cases of a chat's alerts, for the bot."""

    def __init__(self, db: Database, clock: Clock, queue: JobQueue) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue

    async def alerts_on(self, link: ChatLink) -> bool:
        async with self.db.sessions() as session:
            row = await _row(session, link)
            return row is not None and row.alerts and row.blocked_at is None

    async def set_alerts(self, link: ChatLink, on: bool) -> None:
        """Turn the chat's alerts on (which also forgets that it had blocked the bot) or off."""
        values: dict[str, object] = {"alerts": on}
        if on:
            values["blocked_at"] = None
        async with self.db.transaction() as session:
            await session.execute(
                update(BotLink)
                .where(BotLink.id == link.link_id, BotLink.shop_id == link.shop_id)
                .values(**values)
            )

    async def phone(self, link: ChatLink) -> str:
        """The agent's phone rung by a click-to-call ("" until given)."""
        async with self.db.sessions() as session:
            row = await _row(session, link)
            return row.phone if row is not None else ""

    async def set_phone(self, link: ChatLink, raw: str) -> str | None:
        """Store the agent's phone, read in the shop's country; None if it is not a number."""
        async with self.db.transaction() as session:
            row = await _row(session, link)
            shop = await session.get(Shop, link.shop_id)
            if row is None or shop is None:
                return None
            phone = normalize_phone(raw.strip(), shop.country or None)
            if phone is None:
                return None
            row.phone = phone
            return phone

    async def call(self, link: ChatLink, activity_id: int) -> Asked:
        """Queue the call bridging the agent and the customer of a callback request."""
        async with self.db.transaction() as session:
            row = await _row(session, link)
            activity = await session.scalar(
                select(Activity).where(
                    Activity.id == activity_id,
                    Activity.shop_id == link.shop_id,
                    Activity.kind == "merchant_alert",
                )
            )
            detail = activity.detail if activity is not None else {}
            if row is None or activity is None or detail.get("alert") != CALLBACK:
                return Asked(CallAsked.GONE)
            customer = str(detail.get("phone", ""))
            if not row.phone:
                return Asked(CallAsked.NO_PHONE, customer)
            await self.queue.enqueue(
                session,
                NewJob(
                    CALL_JOB,
                    {"link_id": row.id, "activity_id": activity.id},
                    # Each press is a new call: the agent may call the customer twice.
                    idempotency_key=f"{CALL_JOB}:{activity.id}:{secrets.token_hex(8)}",
                    shop_id=link.shop_id,
                ),
            )
            return Asked(CallAsked.QUEUED, customer, row.phone)


class Bridger:
    """The CALL_JOB handler: rings the agent, then the customer, through the shop's voice
    account; what went wrong is told to the agent's chat. An account whose credentials the
    provider refuses is marked rejected (`on_rejected`), as a verification call does."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        queue: JobQueue,
        router: ProviderRouter,
        on_rejected: Callable[[int, str], Awaitable[None]],
    ) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue
        self.router = router
        self.on_rejected = on_rejected  # (account id, reason)

    async def handle(self, job: ClaimedJob) -> None:
        async with self.db.sessions() as session:
            link = await session.get(BotLink, job.payload["link_id"])
            activity = await session.get(Activity, job.payload["activity_id"])
            shop = await session.get(Shop, job.shop_id)
            if link is None or activity is None or shop is None or link.shop_id != shop.id:
                _LOGGER.info("click-to-call job %s: the chat or the request is gone", job.id)
                return
            customer = str(activity.detail.get("phone", ""))
            try:
                route = await self.router.voice(session, shop, config.load(shop))
            except NoRoute as exc:
                await self._tell(job, link, CALL_FAILED.format(phone=customer, reason=exc))
                return
            except AccountWaiting:
                await self._tell(job, link, CALL_FAILED.format(phone=customer, reason=REFUSED))
                return
        try:
            receipt = await route.client.bridge_call(
                link.phone, customer, caller_id=route.caller_id
            )
        except ProviderError as exc:
            if exc.code == UNAUTHORIZED:
                await self.on_rejected(route.account_id, str(exc))
                await self._tell(job, link, CALL_FAILED.format(phone=customer, reason=REFUSED))
                return
            if exc.retryable and not exc.in_doubt and job.attempts < job.max_attempts:
                raise provider_failure(exc) from exc
            text = CALL_IN_DOUBT if exc.in_doubt else CALL_FAILED
            await self._tell(job, link, text.format(phone=customer, reason=exc))
            return
        now = self.clock.now()
        async with self.db.transaction() as session:
            session.add(
                Activity(
                    shop_id=shop.id,
                    order_id=activity.order_id,
                    kind="click_to_call",
                    mode=route.provider,
                    detail={
                        "chat_id": link.chat_id,
                        "agent": link.name,
                        "call_id": receipt.provider_call_id,
                    },
                    created_at=now,
                )
            )
        _LOGGER.info("shop %s: click-to-call placed by chat %s", shop.id, link.chat_id)

    async def _tell(self, job: ClaimedJob, link: BotLink, text: str) -> None:
        push = Push(link.chat_id, text, f"alert:call:{job.id}:{link.chat_id}")
        async with self.db.transaction() as session:
            await self.queue.enqueue(session, deliver_job(push, link.shop_id))


async def _row(session: AsyncSession, link: ChatLink) -> BotLink | None:
    return await session.scalar(
        select(BotLink).where(BotLink.id == link.link_id, BotLink.shop_id == link.shop_id)
    )
