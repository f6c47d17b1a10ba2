"""What a provider's callback does to our records: message statuses, inbound messages, call
ends, keypad input and missed calls. One job per accepted (deduplicated) event runs `handle`.

Statuses only move forward (a late "sent" never overwrites "delivered"). Call ends, keypad
input and missed calls are fed to the order's verification. A customer's message is routed
by `flows.conversations.inbound`: compliance keywords first, then the open conversation
(verification), else the merchant's thread.

An event accepted for a shop (Exotel's callback paths name one) finds only that shop's calls
and messages: another shop's token cannot reach them. A keypad input counts only on the open
call it belongs to: not after that call ended, nor once a later call or method took over.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.messaging import MessageOwner
from flows.conversations.inbound import Conversations
from flows.verification.flow import CallEnded, Keypad
from flows.verification.runtime import Verifier, call_ref
from providers.events import (
    CallStatus,
    Event,
    InboundMessage,
    KeypadInput,
    MessageStatus,
    MissedCall,
)
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, RetryLater
from storage.models import Call, Message
from storage.models import MissedCall as MissedCallRow

_LOGGER = logging.getLogger(__name__)

EVENT_JOB = "provider.event"
EVENT_TYPES = {
    cls.__name__: cls
    for cls in (InboundMessage, MessageStatus, CallStatus, KeypadInput, MissedCall)
}
_RANK = {
    "queued": 0,
    "sending": 0,
    "sent": 1,
    "delivered": 2,
    "undelivered": 2,
    "failed": 2,
    "read": 3,
}
CALL_ENDS = {"completed", "busy", "no-answer", "failed", "canceled"}
# A call's callback can overtake the call job's write of the provider's call id.
UNKNOWN_CALL_RETRIES = 3
_REFERENCE = re.compile(r"v(\d{1,18})")


def event_payload(event: Event) -> dict[str, Any]:
    return {"kind": type(event).__name__, "event": dataclasses.asdict(event)}


def event_from_payload(payload: dict[str, Any]) -> Event:
    return EVENT_TYPES[payload["kind"]](**payload["event"])


class ProviderEvents:
    """The EVENT_JOB handler."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        verifier: Verifier,
        queue: JobQueue,
        owner: MessageOwner | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.verifier = verifier
        # Told about the messages that failed after they left (default: the verifications).
        self.owner = owner or verifier
        self.queue = queue
        self.conversations = Conversations(clock, queue, verifier)

    async def handle(self, job: ClaimedJob) -> None:
        event = event_from_payload(job.payload)
        shop_id = job.payload.get("shop_id")
        async with self.db.transaction() as session:
            if isinstance(event, MessageStatus):
                await self._message_status(session, event, shop_id)
            elif isinstance(event, InboundMessage):
                await self._inbound(session, event, shop_id)
            elif isinstance(event, CallStatus):
                await self._call_status(session, event, job, shop_id)
            elif isinstance(event, KeypadInput):
                await self._keypad(session, event, job, shop_id)
            elif isinstance(event, MissedCall):
                await self._missed_call(session, event, shop_id)

    async def _message_status(
        self, session: AsyncSession, event: MessageStatus, shop_id: int | None
    ) -> None:
        query = select(Message).where(
            Message.provider == event.provider,
            Message.provider_message_id == event.message_id,
        )
        if shop_id is not None:
            query = query.where(Message.shop_id == shop_id)
        message = await session.scalar(query)
        if message is None:
            _LOGGER.info("%s status for unknown message %s", event.provider, event.message_id)
            return
        if _RANK.get(event.status, 0) <= _RANK.get(message.status, 0):
            return
        message.status = event.status
        message.error_code, message.error = event.error_code, event.error
        message.updated_at = self.clock.now()
        if event.status in ("failed", "undelivered"):
            # Its verification must not wait for an answer to it ("failed": never sendable).
            code = event.error_code or event.status.upper()
            await self.owner.send_failed(session, message, code, event.status == "failed")

    async def _inbound(
        self, session: AsyncSession, event: InboundMessage, shop_id: int | None
    ) -> None:
        await self.conversations.receive(session, event, shop_id)

    async def _call(
        self,
        session: AsyncSession,
        event: CallStatus | KeypadInput,
        job: ClaimedJob,
        shop_id: int | None,
    ) -> Call | None:
        query = select(Call).where(
            Call.provider == event.provider, Call.provider_call_id == event.call_id
        )
        if shop_id is not None:
            query = query.where(Call.shop_id == shop_id)
        call = await session.scalar(query)
        if call is None:
            call = await self._unnamed_call(session, event, shop_id)
        if call is None:
            if job.attempts <= UNKNOWN_CALL_RETRIES:
                raise RetryLater(
                    2 * job.attempts, f"{event.provider} call {event.call_id} not known yet"
                )
            _LOGGER.info("%s event for unknown call %s", event.provider, event.call_id)
        return call

    async def _unnamed_call(
        self, session: AsyncSession, event: CallStatus | KeypadInput, shop_id: int | None
    ) -> Call | None:
        """The verification call the event's reference (`v{id}`) names, whose provider id was
        never saved (the worker died between the provider's answer and the save)."""
        found = _REFERENCE.fullmatch(event.reference)
        if found is None:
            return None
        query = select(Call).where(
            Call.provider == event.provider,
            Call.provider_call_id.is_(None),
            Call.idempotency_key.like(f"verify:{found[1]}:call:%"),
        )
        if shop_id is not None:
            query = query.where(Call.shop_id == shop_id)
        call = await session.scalar(query.order_by(Call.id.desc()).limit(1))
        if call is not None:
            call.provider_call_id = event.call_id
        return call

    async def _call_status(
        self, session: AsyncSession, event: CallStatus, job: ClaimedJob, shop_id: int | None
    ) -> None:
        call = await self._call(session, event, job, shop_id)
        if call is None or call.status in CALL_ENDS:
            return
        call.status = event.status
        call.duration_seconds = event.duration_seconds
        if event.status in CALL_ENDS:
            call.ended_at = self.clock.now()
            await self._to_verification(session, call, event.status)

    async def _keypad(
        self, session: AsyncSession, event: KeypadInput, job: ClaimedJob, shop_id: int | None
    ) -> None:
        call = await self._call(session, event, job, shop_id)
        if call is None:
            return
        if call.ended_at is not None or call.status in CALL_ENDS:
            _LOGGER.info("%s keypad input after call %s ended ignored", call.provider, call.id)
            return
        ref = call_ref(call.idempotency_key)
        ctx = await self.verifier.load(session, ref[0]) if ref is not None else None
        if ref is not None and ctx is not None:
            state = ctx.state
            # A call whose end never came (its provider id was lost) stays the current one
            # until a later call or method takes over: the customer's key still counts.
            if ref[1] != (state.open_call or f"{state.stage}:{state.attempt}"):
                _LOGGER.info("keypad input on call %s, no longer open, ignored", call.id)
                return
        call.input_digits = event.digits
        if ref is not None and ctx is not None:
            await self.verifier.apply(session, ctx, Keypad(ref[1], event.digits))

    async def _to_verification(self, session: AsyncSession, call: Call, status: str) -> None:
        ref = call_ref(call.idempotency_key)
        if ref is None:
            return
        ctx = await self.verifier.load(session, ref[0])
        if ctx is not None:
            await self.verifier.apply(session, ctx, CallEnded(ref[1], status))

    async def _missed_call(
        self, session: AsyncSession, event: MissedCall, shop_id: int | None
    ) -> None:
        if shop_id is None:
            _LOGGER.info("missed call %s for no known shop dropped", event.call_id)
            return
        confirmed = await self.verifier.missed_call(session, shop_id, event.from_phone)
        if not confirmed:
            _LOGGER.info("missed call from %s matches no pending order", event.from_phone)
        session.add(
            MissedCallRow(
                shop_id=shop_id,
                provider=event.provider,
                provider_call_id=event.call_id,
                from_phone=event.from_phone,
                to_phone=event.to,
                matched_order_ids=confirmed,
                received_at=self.clock.now(),
            )
        )
