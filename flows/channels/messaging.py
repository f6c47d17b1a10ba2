"""Outbound messages: queue one (a message row and its send job, in the caller's transaction)
and send it (the job): pick the provider and account, respect the sender's rate limit, and
record the outcome. A transient provider failure is retried by the job system; a permanent
one is recorded with its reason on the message and the order timeline, and not retried (and
the conversation the message belongs to is told, so it does not wait for an answer). A
conversation's message that must wait for the calling window is checked on every run, just
before sending, and deferred to the window's next start when it is closed. A send left in
doubt (the request went out, no answer came back) is never sent again: it is recorded
`unconfirmed`, as when a worker died mid-send, and counted in the metrics.

The send gate: consent is checked in the transaction that marks the message `sending`, just
before the provider is called, not when the message was queued. A message to a phone opted
out of its channel is not sent: it is recorded `suppressed` with the reason (and its
conversation told, as for a permanent failure). Only a compliance keyword's own answer passes
(its send details carry CONSENT_REPLY).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import PLATFORM, AccountWaiting
from flows.conversations.consent import CONSENT_REPLY, line_of, opted_out
from flows.jobs import THROTTLED, provider_failure, space_send, throttled, wait_for_slot
from flows.verification.customer_keys import CustomerKeys
from metrics import Metrics
from providers.base import (
    UNAUTHORIZED,
    Button,
    ProviderError,
    SendReceipt,
    SmsRequest,
    WhatsAppButtons,
    WhatsAppTemplate,
)
from providers.sms import measure
from storage.db import Database
from storage.jobs import ClaimedJob, Deferred, JobQueue, NewJob
from storage.models import Activity, Message, Shop
from storage.ratelimit import RateLimiter

_LOGGER = logging.getLogger(__name__)

SEND_JOB = "message.send"
# Send details: the provider the customer wrote through, which an answer goes back through.
VIA = "via"
SUPPRESSED, OPTED_OUT = "suppressed", "OPTED_OUT"
OTP_PLACEHOLDER = "%otp%"


@dataclass(frozen=True)
class Route:
    """Where one message goes: the client, which account pays, who it is from."""

    provider: str
    account: str  # shop | platform
    client: Any  # an SmsSender or WhatsAppSender
    sender: str
    per_second: float
    status_callback: str = ""
    account_id: int = 0
    # Exotel sends from the sender id (DLT header) the flow asks for; the others from the
    # account's own number, which is also where customers' replies come back.
    sender_ids: bool = False

    def sender_for(self, message: Message) -> str:
        return message.from_phone if self.sender_ids and message.from_phone else self.sender

    @property
    def rate_key(self) -> str:
        return f"{self.provider}:{self.account}:{self.account_id}:{self.sender}"


class NoRoute(Exception):
    """No provider account can send on this channel for this shop."""


class MessageOwner(Protocol):
    """The conversation messages belong to (a verification), asked before each send and told
    about the ones that could not be sent, in the send job's transaction. It answers None
    and ignores messages that are not its own."""

    async def send_after(self, session: AsyncSession, message: Message) -> datetime | None:
        """When `message` may go if not now (its calling window is closed); None: now."""
        ...

    async def send_failed(
        self, session: AsyncSession, message: Message, code: str, permanent: bool
    ) -> None:
        """`message` failed: refused for good (`permanent`), or its retries ran out."""
        ...


async def queue_message(
    session: AsyncSession,
    queue: JobQueue,
    now: datetime,
    *,
    shop_id: int,
    channel: str,
    to: str,
    idempotency_key: str,
    body: str = "",
    sender: str = "",
    order_id: int | None = None,
    customer_id: int | None = None,
    template: str = "",
    details: dict[str, Any] | None = None,
) -> Message:
    """Record an outbound message and enqueue its send; a known key returns the first one.

    `details` carries what the provider needs beyond the body: DLT ids, the SMS encoding
    chosen ("plain" | "unicode"; else the text's own), template params,
    buttons ([{"postback", "title"}]), and an OTP to put in place of %otp% when sending
    ({"nonce", "length"}: the code itself is never stored).
    """
    existing = await session.scalar(
        select(Message).where(Message.idempotency_key == idempotency_key)
    )
    if existing is not None:
        return existing
    otp = (details or {}).get("otp")
    sized = body.replace(OTP_PLACEHOLDER, "0" * otp["length"]) if otp else body
    shape = measure(sized, (details or {}).get("encoding", "")) if channel == "sms" else None
    message = Message(
        shop_id=shop_id,
        order_id=order_id,
        customer_id=customer_id,
        channel=channel,
        direction="out",
        provider="",
        to_phone=to,
        from_phone=sender,
        body=body,
        template=template,
        idempotency_key=idempotency_key,
        status="queued",
        encoding=shape.encoding if shape else "",
        segments=shape.segments if shape else 0,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    await session.flush()
    await queue.enqueue(
        session,
        NewJob(
            SEND_JOB,
            {"message_id": message.id, "details": details or {}},
            idempotency_key=f"{SEND_JOB}:{idempotency_key}",
            shop_id=shop_id,
        ),
    )
    return message


class MessageSender:
    """The SEND_JOB handler. `router` picks the provider account for (shop, channel); a
    refused account makes the message wait for it, not fail."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        limiter: RateLimiter,
        router: Any,
        keys: CustomerKeys,
        on_rejected: Callable[[int, str], Awaitable[None]],
        *,
        owner: MessageOwner | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limiter = limiter
        self.router = router
        self.keys = keys
        self.on_rejected = on_rejected  # (account id, reason): the provider refused it
        self.owner = owner
        self.metrics = metrics

    async def handle(self, job: ClaimedJob) -> None:
        details = job.payload.get("details") or {}
        mode = details.get("mode", "")
        ready = await self._prepare(job.payload["message_id"], mode, details.get(VIA, ""))
        if ready is None:
            return
        if isinstance(ready, Deferred):
            raise ready
        message, route = ready
        await wait_for_slot(self.limiter, job, route.rate_key, route.per_second, self.clock.now())
        if not await self._start_sending(message.id, route, mode, CONSENT_REPLY in details):
            return
        try:
            await space_send(self.limiter, route.rate_key, route.per_second)
        except Deferred:
            await self._mark(message.id, "queued", route)
            raise
        try:
            receipt = await self._send(route, message, details)
        except ProviderError as exc:
            if exc.code == UNAUTHORIZED:
                await self._mark(message.id, "queued", route)
                await self.on_rejected(route.account_id, str(exc))
                raise AccountWaiting(route.account_id).deferral() from exc
            if exc.code == THROTTLED:
                await self._mark(message.id, "queued", route)
                now = self.clock.now()
                raise await throttled(
                    self.limiter, job, route.rate_key, route.per_second, now, exc
                ) from exc
            if exc.retryable and not exc.in_doubt and job.attempts < job.max_attempts:
                await self._mark(message.id, "queued", route)
                raise provider_failure(exc) from exc
            status = "unconfirmed" if exc.in_doubt else "failed"
            async with self.db.transaction() as session:
                message = await session.get(Message, message.id)
                self._settle(session, message, status, exc.code, str(exc), mode)
                if not exc.in_doubt:
                    await self._failed(session, message, exc.code, not exc.retryable)
            if exc.in_doubt and self.metrics is not None:
                self.metrics.sends_in_doubt.labels(route.provider, message.channel).inc()
            return
        async with self.db.transaction() as session:
            message = await session.get(Message, message.id)
            message.provider_message_id = receipt.provider_message_id
            self._settle(session, message, "sent", "", "", mode)

    async def _prepare(
        self, message_id: int, mode: str, via: str
    ) -> tuple[Message, Route] | Deferred | None:
        """The message and its route when it may go now; a deferral until its conversation's
        calling window opens; or None when it is settled (now or earlier)."""
        async with self.db.transaction() as session:
            message = await session.get(Message, message_id)
            if message is None or message.status not in ("queued", "sending"):
                return None  # already sent or settled by an earlier run
            if message.status == "sending":
                # An earlier run died while the provider had the request: it may have gone
                # out. Never risk a second copy to the customer.
                self._settle(session, message, "unconfirmed", "", "worker lost during send", mode)
                return None
            if self.owner is not None:
                until = await self.owner.send_after(session, message)
                if until is not None:
                    wait = (until - self.clock.now()).total_seconds()
                    return Deferred(wait, "outside the calling window")
            shop = await session.get(Shop, message.shop_id)
            try:
                route = await self.router(session, shop, message.channel, via)
            except NoRoute as exc:
                self._settle(session, message, "failed", "NO_ROUTE", str(exc), mode)
                await self._failed(session, message, "NO_ROUTE", permanent=True)
                return None
            except AccountWaiting as exc:
                raise exc.deferral() from None
            return message, route

    async def _send(self, route: Route, message: Message, details: dict[str, Any]) -> SendReceipt:
        if message.channel == "sms":
            body = message.body
            otp = details.get("otp")
            if otp:
                body = body.replace(
                    OTP_PLACEHOLDER, self.keys.otp_code(otp["nonce"], otp["length"])
                )
            shape = measure(body, details.get("encoding", ""))
            return await route.client.send_sms(
                SmsRequest(
                    to=message.to_phone,
                    body=body,
                    sender=route.sender_for(message),
                    status_callback=route.status_callback,
                    unicode=shape.unicode,
                    dlt_entity_id=details.get("dlt_entity_id", ""),
                    dlt_template_id=details.get("dlt_template_id", ""),
                    reference=str(message.id),
                )
            )
        if message.template:
            return await route.client.send_template(
                WhatsAppTemplate(
                    to=message.to_phone,
                    template_id=message.template,
                    params=tuple(details.get("params", ())),
                    postbacks=tuple(details.get("postbacks", ())),
                )
            )
        return await route.client.send_buttons(
            WhatsAppButtons(
                to=message.to_phone,
                text=message.body,
                buttons=tuple(
                    Button(b["postback"], b["title"]) for b in details.get("buttons", ())
                ),
                reference=str(message.id),
            )
        )

    async def _failed(
        self, session: AsyncSession, message: Message, code: str, permanent: bool
    ) -> None:
        if self.owner is not None:
            await self.owner.send_failed(session, message, code, permanent)

    async def _start_sending(
        self, message_id: int, route: Route, mode: str, consent_reply: bool
    ) -> bool:
        """The send gate, in the transaction that marks the message `sending` (the last before
        the provider is called): False when the phone opted out of the message's channel (for
        this shop, or on the platform's number the route sends from), and the message is then
        settled `suppressed`."""
        async with self.db.transaction() as session:
            message = await session.get(Message, message_id)
            # A keyword on the platform's shared number binds every shop sending from it.
            platform_line = line_of(route.provider, None) if route.account == PLATFORM else None
            if not consent_reply and await opted_out(
                session, message.shop_id, message.to_phone, message.channel, platform_line
            ):
                reason = f"the customer opted out of {message.channel}"
                self._settle(session, message, SUPPRESSED, OPTED_OUT, reason, mode)
                await self._failed(session, message, OPTED_OUT, permanent=True)
                return False
            self._assign(message, "sending", route)
        return True

    async def _mark(self, message_id: int, status: str, route: Route) -> None:
        async with self.db.transaction() as session:
            self._assign(await session.get(Message, message_id), status, route)

    def _assign(self, message: Message, status: str, route: Route) -> None:
        message.status = status
        message.provider, message.account = route.provider, route.account
        message.from_phone = route.sender_for(message)
        message.updated_at = self.clock.now()

    def _settle(
        self,
        session: AsyncSession,
        message: Message,
        status: str,
        code: str,
        error: str,
        mode: str = "",
    ) -> None:
        """The message's outcome, on the message and on its order's timeline."""
        now = self.clock.now()
        message.status, message.error_code, message.error = status, code, error[:2000]
        message.updated_at = now
        if status != "sent":
            _LOGGER.warning(
                "message %s to %s %s: %s %s", message.id, message.to_phone, status, code, error
            )
        if message.order_id is not None:
            detail: dict[str, Any] = {"message_id": message.id, "channel": message.channel}
            if code or error:
                detail |= {"code": code, "error": error[:500]}
            session.add(
                Activity(
                    shop_id=message.shop_id,
                    order_id=message.order_id,
                    kind=f"message_{status}",
                    mode=mode or message.channel,
                    detail=detail,
                    created_at=now,
                )
            )
