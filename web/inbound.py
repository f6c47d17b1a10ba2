"""Provider events into the inbox: stored durably and deduplicated, then handled by a job."""

from __future__ import annotations

from aiohttp import web

from flows.channels.provider_events import EVENT_JOB, event_payload
from providers.events import Event
from storage.inbox import Accepted, Delivery
from web.keys import inbox_key


async def accept_event(request: web.Request, event: Event, shop_id: int | None = None) -> Accepted:
    """Store one provider event for its job; `shop_id` None when the account is the platform's."""
    return await request.app[inbox_key].accept(
        Delivery(
            provider=event.provider,
            # Within the shop: another shop's token must not take this shop's event's key first.
            delivery_id=event.dedup_key if shop_id is None else f"{shop_id}:{event.dedup_key}",
            event_id=None,
            topic=type(event).__name__,
            triggered_at=None,
            job_kind=EVENT_JOB,
            job_payload=event_payload(event),
            shop_id=shop_id,
            allow_unknown_shop=shop_id is None,
        )
    )
