"""Template governance (seed 002): every hour each shop with its own Gupshup account asks
Gupshup for the status of the templates its WhatsApp notifications use.

A template that stops being usable (PAUSED, REJECTED, DISABLED, ...) is recorded once as a
shop-wide `notification_fallback`, which the bot's alert scan pushes to the merchant: its
notifications go by SMS where the shop allows it (the notification job asks Gupshup before
each send and falls back by itself). One APPROVED again is recorded
`notification_template_approved`, and used again. The job re-queues itself, one per shop
per hour however many processes start it; it runs while the shop has its own Gupshup
account.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import SHOP, AccountWaiting
from flows.channels.messaging import NoRoute
from flows.notifications.events import EVENTS
from flows.notifications.job import FALLBACK_KIND, MODE
from flows.notifications.whatsapp import TemplateState, template_state
from flows.shops import config as shop_config
from flows.shops.settings import Notifications
from providers.base import ProviderError
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, ProviderAccount, Shop

_LOGGER = logging.getLogger(__name__)

RECHECK_JOB = "notification.templates"
APPROVED_KIND = "notification_template_approved"
INTERVAL = timedelta(hours=1)


def recheck_job(shop_id: int, now: datetime, *, next_slot: bool = True) -> NewJob:
    """The shop's check of the next hour (due at its start), or of this hour, due now."""
    seconds = INTERVAL.total_seconds()
    slot = int(now.timestamp() // seconds) + int(next_slot)
    due = datetime.fromtimestamp(slot * seconds, now.tzinfo)
    return NewJob(
        RECHECK_JOB,
        {"shop_id": shop_id},
        due_at=max(due, now),
        idempotency_key=f"{RECHECK_JOB}:{shop_id}:{slot}",
        shop_id=shop_id,
    )


async def shops_to_recheck(session: AsyncSession) -> list[int]:
    """The shops with their own Gupshup account, whose checks start with the worker."""
    rows = await session.scalars(
        select(ProviderAccount.shop_id)
        .join(Shop, Shop.id == ProviderAccount.shop_id)
        .where(
            ProviderAccount.provider == "gupshup",
            ProviderAccount.owner == SHOP,
            Shop.status != "uninstalled",
        )
        .order_by(ProviderAccount.shop_id)
    )
    return list(rows)


def templates_in_use(settings: Notifications) -> dict[str, list[str]]:
    """The templates of the active WhatsApp notifications, each with its events."""
    found: dict[str, list[str]] = defaultdict(list)
    for event in EVENTS:
        whatsapp = settings.notice(event).whatsapp
        if whatsapp.active and whatsapp.template_id:
            found[whatsapp.template_id].append(event)
    return dict(found)


class TemplateRecheck:
    """The RECHECK_JOB handler. `router` is the ProviderRouter (the WhatsApp channel's
    client)."""

    def __init__(self, db: Database, clock: Clock, queue: JobQueue, router: Any) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue
        self.router = router

    async def handle(self, job: ClaimedJob) -> None:
        shop_id = job.payload["shop_id"]
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            if shop is None or shop.status == "uninstalled":
                return
            if shop_id not in await shops_to_recheck(session):
                return  # the chain ends; connecting a Gupshup account starts it again
            settings = shop_config.load(shop).notifications
            templates = templates_in_use(settings)
            route = await self._own_gupshup(session, shop) if templates else None
            known = await self._known(session, shop_id) if route is not None else {}
        states = {}
        for template_id in templates if route is not None else ():
            try:
                states[template_id] = await template_state(route.client, template_id, SHOP)
            except ProviderError as exc:  # asked again next hour; the sends ask each time
                _LOGGER.warning("shop %s: template %s not checked: %s", shop_id, template_id, exc)
        now = self.clock.now()
        async with self.db.transaction() as session:
            for template_id, state in states.items():
                changed = _change(template_id, templates[template_id], state, known, settings)
                if changed is not None:
                    kind, detail = changed
                    session.add(
                        Activity(
                            shop_id=shop_id, kind=kind, mode=MODE, detail=detail, created_at=now
                        )
                    )
                    _LOGGER.info("shop %s: template %s is %s", shop_id, template_id, state.status)
            await self.queue.enqueue(session, recheck_job(shop_id, now))

    async def _own_gupshup(self, session: AsyncSession, shop: Shop) -> Any:
        try:
            route = await self.router(session, shop, "whatsapp")
        except (NoRoute, AccountWaiting):
            return None
        return route if route.provider == "gupshup" and route.account == SHOP else None

    async def _known(self, session: AsyncSession, shop_id: int) -> dict[str, str]:
        """What the merchant was last told of each template: its fallback kind or approval."""
        rows = await session.execute(
            select(Activity.kind, Activity.detail)
            .where(
                Activity.shop_id == shop_id,
                Activity.order_id.is_(None),
                Activity.kind.in_((FALLBACK_KIND, APPROVED_KIND)),
            )
            .order_by(Activity.id)
        )
        return {detail.get("template_id", ""): kind for kind, detail in rows}


def _change(
    template_id: str,
    events: list[str],
    state: TemplateState,
    known: dict[str, str],
    settings: Notifications,
) -> tuple[str, dict[str, Any]] | None:
    """The activity a template's state calls for, None when the merchant knows it already."""
    told = known.get(template_id)
    detail: dict[str, Any] = {
        "template_id": template_id,
        "status": state.status,
        "event": ", ".join(events),
        "source": "recheck",
    }
    if state.problem and told != FALLBACK_KIND:
        falls_back = settings.sms_active and all(
            settings.notice(event).whatsapp.fallback_to_sms for event in events
        )
        return FALLBACK_KIND, detail | {
            "channel": "whatsapp",
            "reason": state.problem,
            "fallback": "sms" if falls_back else "",
        }
    if not state.problem and told == FALLBACK_KIND:
        return APPROVED_KIND, detail
    return None
