"""Provider events into the inbox: stored durably and deduplicated, then handled by a job.

An inbound message is stamped with the line it arrived on ("shop:{id}" when the callback
names its shop, "{provider}:platform" on the platform's shared account). A STOP or START,
typed or reported by the provider (Twilio's OptOutType), is committed on that line in the
transaction that accepts the message, before the provider has its 2xx: the send gate honours
it at once, whatever the job that answers it later is doing. YES is never taken here: it may
answer an open question, which only the job can tell.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from flows.channels.provider_events import EVENT_JOB, event_payload
from flows.conversations.consent import OPTED_IN, OPTED_OUT, line_of
from flows.conversations.keywords import Keyword, classify
from providers.events import Event, InboundMessage
from storage.inbox import Accepted, Delivery
from storage.inbox_store import ConsentWrite
from web.keys import clock_key, inbox_key

_STATES = {Keyword.STOP: OPTED_OUT, Keyword.START: OPTED_IN}


async def accept_event(request: web.Request, event: Event, shop_id: int | None = None) -> Accepted:
    """Store one provider event for its job; `shop_id` None when the account is the platform's."""
    consent = None
    if isinstance(event, InboundMessage):
        line = line_of(event.provider, shop_id)
        consent = keyword_consent(event, line)
        payload = inbound_payload(event, line, request.app[clock_key].now())
    else:
        payload = event_payload(event)
    return await request.app[inbox_key].accept(
        Delivery(
            provider=event.provider,
            # Within the shop: another shop's token must not take this shop's event's key first.
            delivery_id=event.dedup_key if shop_id is None else f"{shop_id}:{event.dedup_key}",
            event_id=None,
            topic=type(event).__name__,
            triggered_at=None,
            job_kind=EVENT_JOB,
            job_payload=payload,
            shop_id=shop_id,
            allow_unknown_shop=shop_id is None,
            consent=consent,
        )
    )


def inbound_payload(event: InboundMessage, line: str, now: datetime) -> dict[str, Any]:
    """event_payload of the event with its line and acceptance time, without a copy of the
    event and the deep copy of dataclasses.asdict (the intake's hot path; the fields are flat)."""
    return {
        "kind": "InboundMessage",
        "event": {**vars(event), "line": line, "received_at": now.isoformat()},
    }


def keyword_consent(event: InboundMessage, line: str) -> ConsentWrite | None:
    """The consent a STOP or START message sets on `line`; None for anything else (HELP,
    free text, a pressed button: its title may well be "Cancel")."""
    if event.opt_out_type:
        keyword: Keyword | None = Keyword[event.opt_out_type]
    elif event.button:
        return None
    else:
        keyword = classify(event.text, question_open=True)
    state = _STATES.get(keyword) if keyword is not None else None
    if state is None:
        return None
    return ConsentWrite(
        line=line,
        phone=event.from_phone,
        channel=event.channel,
        state=state,
        reference=f"{event.provider}:{event.message_id}",
    )
