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

Send jobs come in floods on a sale day: they run a batch at a time, in three transactions per
batch (prepare; the send gate and `sending`; record) whatever its size, the messages whose
account has a slot now sent together; the others are deferred to their slots. The
conversations are asked about their calling windows once per batch (`MessageOwner.send_after`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import PLATFORM, AccountWaiting
from flows.conversations.consent import CONSENT_REPLY, Ask, line_of, opted_out_of
from flows.jobs import (
    THROTTLED,
    batch_slots,
    provider_failure,
    send_spaced,
    throttled,
)
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
    """The conversation messages belong to (a verification), asked once per batch of sends
    which may go now and told about the ones that could not be sent, in the send job's
    transactions. It leaves out and ignores messages that are not its own."""

    async def send_after(
        self, session: AsyncSession, messages: list[Message]
    ) -> dict[int, datetime]:
        """When each of `messages` that may not go now may go (its calling window is
        closed), by message id; the others may go now."""
        ...

    async def send_failed(
        self, session: AsyncSession, message: Message, code: str, permanent: bool
    ) -> None:
        """`message` failed: refused for good (`permanent`), or its retries ran out."""
        ...


@dataclass(frozen=True)
class Owners:
    """The owners of every kind of conversation as one MessageOwner: each answers for its own
    messages and ignores the others'."""

    members: tuple[MessageOwner, ...]

    async def send_after(
        self, session: AsyncSession, messages: list[Message]
    ) -> dict[int, datetime]:
        found: dict[int, datetime] = {}
        for owner in self.members:
            found = await owner.send_after(session, messages) | found
        return found

    async def send_failed(
        self, session: AsyncSession, message: Message, code: str, permanent: bool
    ) -> None:
        for owner in self.members:
            await owner.send_failed(session, message, code, permanent)


@dataclass(frozen=True)
class Outbound:
    """One message to queue. `details` carries what the provider needs beyond the body: DLT
    ids, the SMS encoding chosen ("plain" | "unicode"; else the text's own), template params,
    buttons ([{"postback", "title"}]), and an OTP to put in place of %otp% when sending
    ({"nonce", "length"}: the code itself is never stored)."""

    shop_id: int
    channel: str
    to: str
    idempotency_key: str
    body: str = ""
    sender: str = ""
    order_id: int | None = None
    customer_id: int | None = None
    template: str = ""
    details: dict[str, Any] | None = None
    credits: int = 0


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
    """Record an outbound message and enqueue its send; a known key returns the first one."""
    item = Outbound(
        shop_id,
        channel,
        to,
        idempotency_key,
        body,
        sender,
        order_id,
        customer_id,
        template,
        details,
    )
    [message] = await queue_messages(session, queue, now, [item])
    return message


async def queue_messages(
    session: AsyncSession, queue: JobQueue, now: datetime, outbound: list[Outbound]
) -> list[Message]:
    """Record outbound messages and enqueue their sends, with one query for the keys already
    known (their first messages are returned), one flush and one insert of the jobs."""
    if not outbound:
        return []
    keys = [item.idempotency_key for item in outbound]
    known = {
        message.idempotency_key: message
        for message in await session.scalars(
            select(Message).where(Message.idempotency_key.in_(set(keys)))
        )
    }
    messages: list[Message] = []
    new: list[tuple[Message, Outbound]] = []
    for item in outbound:
        message = known.get(item.idempotency_key)
        if message is None:
            message = known[item.idempotency_key] = _message(item, now)
            session.add(message)
            new.append((message, item))
        messages.append(message)
    if not new:
        return messages
    await session.flush()
    await queue.enqueue(
        session,
        *(
            NewJob(
                SEND_JOB,
                {"message_id": message.id, "details": item.details or {}},
                idempotency_key=f"{SEND_JOB}:{item.idempotency_key}",
                shop_id=item.shop_id,
            )
            for message, item in new
        ),
    )
    return messages


def _message(item: Outbound, now: datetime) -> Message:
    details = item.details or {}
    otp = details.get("otp")
    sized = item.body.replace(OTP_PLACEHOLDER, "0" * otp["length"]) if otp else item.body
    shape = measure(sized, details.get("encoding", "")) if item.channel == "sms" else None
    return Message(
        shop_id=item.shop_id,
        order_id=item.order_id,
        customer_id=item.customer_id,
        channel=item.channel,
        direction="out",
        provider="",
        to_phone=item.to,
        from_phone=item.sender,
        body=item.body,
        template=item.template,
        idempotency_key=item.idempotency_key,
        status="queued",
        encoding=shape.encoding if shape else "",
        segments=shape.segments if shape else 0,
        credits=item.credits,
        created_at=now,
        updated_at=now,
    )


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
        """One send job: the batch of one."""
        [error] = await self.handle_batch([job])
        if error is not None:
            raise error

    async def handle_batch(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        """SEND_JOB, a batch at a time: the messages are prepared in one transaction, the
        ones whose account has a slot now pass the send gate and are marked `sending` in a
        second and sent together, and every outcome is recorded in a third. The others are
        deferred to their slots."""
        errors: list[BaseException | None] = [None] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda i: jobs[i].payload["message_id"])
        routes: dict[int, Route] = {}
        async with self.db.transaction() as session:
            loaded = await _messages(session, jobs)
            ready: dict[int, Message] = {}
            for i in order:
                message = loaded.get(jobs[i].payload["message_id"])
                if self._unsettled(session, message, _details(jobs[i]).get("mode", "")):
                    ready[i] = message
            held: dict[int, datetime] = {}
            if self.owner is not None and ready:
                held = await self.owner.send_after(session, list(ready.values()))
            # One route per shop, channel and provider asked for in the batch.
            known: dict[tuple[int, str, str], Route | Exception] = {}
            for i, message in ready.items():
                if (until := held.get(message.id)) is not None:
                    wait = (until - self.clock.now()).total_seconds()
                    errors[i] = Deferred(wait, "outside the calling window")
                    continue
                details = _details(jobs[i])
                try:
                    found = await self._route(
                        session, message, details.get("mode", ""), details.get(VIA, ""), known
                    )
                except Deferred as exc:
                    errors[i] = exc
                    continue
                if found is not None:
                    routes[i] = found
        keys = {i: (route.rate_key, route.per_second) for i, route in routes.items()}
        slotted, slots = await batch_slots(self.limiter, self.clock, jobs, keys, errors)
        if not slotted:
            return errors
        messages: dict[int, Message] = {}
        async with self.db.transaction() as session:
            loaded = await _messages(session, [jobs[i] for i in slotted])
            gate = {
                i: _ask(loaded[jobs[i].payload["message_id"]], routes[i])
                for i in slotted
                if CONSENT_REPLY not in _details(jobs[i])
            }
            out = await opted_out_of(session, gate.values())
            for i in slotted:
                message = await self._start_sending(
                    session,
                    loaded[jobs[i].payload["message_id"]],
                    routes[i],
                    _details(jobs[i]).get("mode", ""),
                    i in gate and gate[i] in out,
                )
                if message is not None:
                    messages[i] = message
        if not messages:
            return errors
        going = list(messages)
        results = await send_spaced(
            self.limiter,
            self.clock,
            [
                (
                    routes[i].rate_key,
                    routes[i].per_second,
                    slots[i],
                    partial(self._send, routes[i], messages[i], _details(jobs[i])),
                )
                for i in going
            ],
        )
        outcomes = dict(zip(going, results, strict=True))
        rejected: dict[int, str] = {}
        async with self.db.transaction() as session:
            # The rows marked `sending` a moment ago, not read again: only their outcome is
            # written (a status callback finds a message by the provider id written here).
            session.add_all(messages.values())
            for i in going:
                errors[i] = await self._record(
                    session, jobs[i], messages[i], routes[i], outcomes[i], rejected
                )
        for account_id, reason in rejected.items():
            await self.on_rejected(account_id, reason)
        for i in going:
            route, result = routes[i], outcomes[i]
            if isinstance(result, ProviderError) and result.code == THROTTLED:
                now = self.clock.now()
                errors[i] = await throttled(
                    self.limiter, jobs[i], route.rate_key, route.per_second, now, result
                )
            elif isinstance(result, ProviderError) and result.in_doubt and self.metrics:
                self.metrics.sends_in_doubt.labels(route.provider, messages[i].channel).inc()
        return errors

    async def _record(
        self,
        session: AsyncSession,
        job: ClaimedJob,
        message: Message,
        route: Route,
        result: SendReceipt | BaseException,
        rejected: dict[int, str],
    ) -> BaseException | None:
        """One message's outcome, in the batch's last transaction; the job's error (None:
        done). A 429 is finished by the caller (it moves the slots)."""
        mode = _details(job).get("mode", "")
        if isinstance(result, Deferred):
            self._assign(message, "queued", route)  # the sends were spaced: not sent
            return result
        if isinstance(result, ProviderError):
            exc = result
            if exc.code == UNAUTHORIZED:
                self._assign(message, "queued", route)
                rejected[route.account_id] = str(exc)
                return AccountWaiting(route.account_id).deferral()
            if exc.code == THROTTLED:
                self._assign(message, "queued", route)
                return exc
            if exc.retryable and not exc.in_doubt and job.attempts < job.max_attempts:
                self._assign(message, "queued", route)
                return provider_failure(exc)
            status = "unconfirmed" if exc.in_doubt else "failed"
            self._settle(session, message, status, exc.code, str(exc), mode)
            if not exc.in_doubt:
                await self._failed(session, message, exc.code, not exc.retryable)
            return None
        if isinstance(result, BaseException):
            return result  # left `sending`: the request may have gone out
        message.provider_message_id = result.provider_message_id
        self._settle(session, message, "sent", "", "", mode)
        return None

    def _unsettled(self, session: AsyncSession, message: Message | None, mode: str) -> bool:
        """Whether `message` is still to be sent; settled by an earlier run (or now) if not."""
        if message is None or message.status not in ("queued", "sending"):
            return False  # already sent or settled by an earlier run
        if message.status == "sending":
            # An earlier run died while the provider had the request: it may have gone
            # out. Never risk a second copy to the customer.
            self._settle(session, message, "unconfirmed", "", "worker lost during send", mode)
            return False
        return True

    async def _route(
        self,
        session: AsyncSession,
        message: Message,
        mode: str,
        via: str,
        known: dict[tuple[int, str, str], Route | Exception],
    ) -> Route | None:
        """The message's route; None when there is none (the message is then settled).
        Raises Deferred while the account waits for its owner. `known`: the batch's routes
        so far."""
        key = (message.shop_id, message.channel, via)
        if key not in known:
            shop = await session.get(Shop, message.shop_id)
            try:
                known[key] = await self.router(session, shop, message.channel, via)
            except (NoRoute, AccountWaiting) as exc:
                known[key] = exc
        try:
            found = known[key]
            if isinstance(found, Exception):
                raise found
            return found
        except NoRoute as exc:
            self._settle(session, message, "failed", "NO_ROUTE", str(exc), mode)
            await self._failed(session, message, "NO_ROUTE", permanent=True)
            return None
        except AccountWaiting as exc:
            raise exc.deferral() from None

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
        self, session: AsyncSession, message: Message, route: Route, mode: str, out: bool
    ) -> Message | None:
        """The send gate, in the transaction that marks the message `sending` (the last before
        the provider is called): None when the phone opted out of the message's channel (`out`,
        read in this transaction), and the message is then settled `suppressed`; else the
        message, marked `sending`."""
        if out:
            reason = f"the customer opted out of {message.channel}"
            self._settle(session, message, SUPPRESSED, OPTED_OUT, reason, mode)
            await self._failed(session, message, OPTED_OUT, permanent=True)
            return None
        self._assign(message, "sending", route)
        return message

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


async def _messages(session: AsyncSession, jobs: list[ClaimedJob]) -> dict[int, Message]:
    """The jobs' messages by id, in one query."""
    ids = {job.payload["message_id"] for job in jobs}
    if not ids:
        return {}
    return {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}


def _ask(message: Message, route: Route) -> Ask:
    """The send gate's question for `message`: opted out for this shop, or on the platform's
    number the route sends from (a keyword there binds every shop sending from it)?"""
    platform_line = line_of(route.provider, None) if route.account == PLATFORM else None
    return Ask(message.shop_id, message.to_phone, message.channel, platform_line)


def _details(job: ClaimedJob) -> dict[str, Any]:
    return job.payload.get("details") or {}
