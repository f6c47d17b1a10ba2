"""The sandbox's JSON API under /sandbox/api: the state the sandbox page shows and the actions
it offers (the merchant's orders in Shopify, marked along their journey: packed, shipped,
out for delivery, delivered, failed delivery; customers' SMS consent in Shopify; the customers'
phones with what our app holds of them, the merchant's threads with its customers and its answers,
the merchant's Telegram chat with our bot, the sandbox clock).

Registered only in sandbox mode: `build_app` adds these routes when it is given a `Sandbox`.
Errors have the app's one JSON shape; 404 when there is no such order, ringing call or
message, thread, or chat message or button, 409 when the action does not fit the order's or
the phone's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from clock import OffsetClock
from flows.conversations import threads
from flows.conversations.threads import ThreadView
from flows.shops.bot_links import ChatLinks
from flows.shops.sandbox import (
    AppFacts,
    DemoShop,
    app_facts,
    merchant_threads,
    phone_facts,
    work_in_flight,
)
from providers.sandbox.phones import e164
from providers.sandbox.shop import WorldError
from providers.sandbox.telegram import ChatMessage
from providers.sandbox.world import SandboxWorld
from storage.models import Message
from web.api.conversations import ThreadReply
from web.api.shops import read_json, unprocessable
from web.errors import ApiError, field_problem
from web.keys import clock_key, db_key, queue_key

PREFIX = "/sandbox/api"
KEEPALIVE_SECONDS = 15.0
EVENTS_SETTLE_SECONDS = 0.2
# What the merchant (or its carrier) can do to an order.
_ACTIONS = "pack|fulfil|out-for-delivery|deliver|fail|cancel"


@dataclass(frozen=True)
class Sandbox:
    """What the sandbox routes work with: the simulated world, its clock, the demo shop."""

    world: SandboxWorld
    clock: OffsetClock
    shop: DemoShop


sandbox_key = web.AppKey("sandbox", Sandbox)
_closing_key = web.AppKey("sandbox_closing", asyncio.Event)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NewOrder(_Body):
    phone: str
    amount: Decimal = Field(gt=0, le=10_000_000, decimal_places=2)
    payment: Literal["cod", "prepaid"]
    customer: str = Field("", max_length=100)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        number = e164(value)
        if number is None:
            raise ValueError("must be a valid phone number, e.g. +919876543210 or 98765 43210")
        return number


class Keypad(_Body):
    digits: str = Field("", pattern=r"^[0-9*#]{0,10}$")


class Reply(_Body):
    channel: Literal["sms", "whatsapp"]
    text: str = Field(min_length=1, max_length=1000)


class Button(_Body):
    title: str = Field(min_length=1, max_length=20)


class SmsConsent(_Body):
    subscribed: bool


class Shipment(_Body):
    """How the order ships; left out, the sample's values."""

    carrier: str = Field(min_length=1, max_length=64)
    tracking_number: str = Field(min_length=1, max_length=64)
    tracking_url: str = Field("", max_length=1000, pattern=r"^(https?://\S+)?$")


class FailedDelivery(_Body):
    reason: str = Field("", max_length=255)


class ChatText(_Body):
    text: str = Field(min_length=1, max_length=4096)  # Telegram's longest message
    reply_to: int | None = Field(None, ge=1)


class ChatPress(_Body):
    data: str = Field(min_length=1, max_length=64)  # Telegram's longest callback data


class TimeMove(_Body):
    minutes: int | None = Field(None, ge=1, le=1440)
    to: Literal["next_job"] | None = None

    @model_validator(mode="after")
    def _one_move(self) -> TimeMove:
        if (self.minutes is None) == (self.to is None):
            raise ValueError("give either minutes (1 to 1440) or to: next_job")
        return self


def setup_routes(app: web.Application, sandbox: Sandbox) -> None:
    app[sandbox_key] = sandbox
    app[_closing_key] = asyncio.Event()
    app.on_shutdown.append(_close_streams)
    app.router.add_get(f"{PREFIX}/state", state)
    app.router.add_get(f"{PREFIX}/events", events)
    app.router.add_post(f"{PREFIX}/orders", create_order)
    app.router.add_post(f"{PREFIX}/orders/{{order_id}}/{{action:{_ACTIONS}}}", order_action)
    app.router.add_post(
        f"{PREFIX}/phones/{{number}}/{{action:answer|ring-out|missed-call|reply|button}}",
        phone_action,
    )
    app.router.add_post(f"{PREFIX}/customers/{{number}}/sms-consent", set_sms_consent)
    app.router.add_post(f"{PREFIX}/threads/{{thread_id}}/reply", answer_thread)
    app.router.add_get(f"{PREFIX}/chat", chat)
    app.router.add_post(f"{PREFIX}/chat/messages", chat_send)
    app.router.add_post(f"{PREFIX}/chat/messages/{{message_id}}/press", chat_press)
    app.router.add_get(f"{PREFIX}/chat/messages/{{message_id}}/file", chat_file)
    app.router.add_post(f"{PREFIX}/time", move_time)


# State ---------------------------------------------------------------------------------


async def state(request: web.Request) -> web.Response:
    return web.json_response(await sandbox_state(request.app))


async def sandbox_state(app: web.Application) -> dict[str, Any]:
    """The whole sandbox state (the JSON of GET /sandbox/api/state)."""
    sandbox = app[sandbox_key]
    world = sandbox.world.snapshot()
    facts = await app_facts(
        app[db_key],
        sandbox.shop.shop_id,
        [order["id"] for order in world["orders"]],
        sandbox.clock.now(),
    )
    phones = await phone_facts(app[db_key], sandbox.shop.shop_id)
    shop_threads = await merchant_threads(app[db_key], sandbox.shop.shop_id)
    return {
        **_time(sandbox.clock, facts.next_job_at),
        "shop": {
            "domain": sandbox.shop.domain,
            "name": facts.shop_name,
            "api_key": sandbox.shop.api_key,
        },
        "special_numbers": world["special_numbers"],
        "orders": [_order(order, facts) for order in world["orders"]],
        "customers": world["customers"],
        "notification_templates": world["notification_templates"],
        "phones": [
            phone
            | {
                "consent": phones.consents.get(phone["number"], {}),
                "suppressed": phones.suppressed.get(phone["number"], []),
            }
            for phone in world["phones"]
        ],
        "threads": [_thread(view) for view in shop_threads],
        "requests": world["requests"],
    }


def _time(clock: OffsetClock, next_job_at: datetime | None) -> dict[str, Any]:
    return {
        "now": clock.now().isoformat(),
        "offset_minutes": int(clock.offset.total_seconds() // 60),
        "next_job_at": next_job_at.isoformat() if next_job_at else None,
    }


def _order(order: dict[str, Any], facts: AppFacts) -> dict[str, Any]:
    return {
        "id": order["id"],
        "name": order["name"],
        "phone": order["phone"],
        "amount": order["amount"],
        "currency": order["currency"],
        "payment": order["payment"],
        "verification_status": facts.verification_statuses.get(order["id"], "none"),
        "tags": order["tags"],
        "cancelled": order["cancelled"],
        "fulfillment_status": order["fulfillment_status"],
        "journey": order["journey"],  # the markings, and who reported each
        "shipment_sample": order["shipment_sample"],
        "notifications": facts.notifications.get(order["id"], []),
    }


def _thread(view: ThreadView) -> dict[str, Any]:
    thread = view.thread
    return {
        "id": thread.id,
        "phone": thread.phone,
        "channel": thread.channel,
        "status": thread.status,
        "handed_over": thread.handed_over,
        "updated_at": thread.updated_at.isoformat(),
        "messages": [_thread_message(message) for message in view.messages],
    }


def _thread_message(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "body": message.body,
        "status": message.status,
        "error": message.error,  # why it was not sent: refused, suppressed
        "at": message.created_at.isoformat(),
    }


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: "changed" whenever the world or our records (new jobs) change."""
    sandbox = request.app[sandbox_key]
    closing = request.app[_closing_key]
    wakeup = request.app[db_key].wakeup
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    jobs = wakeup.subscribe()
    version = sandbox.world.version
    try:
        await response.write(f"event: changed\ndata: {version}\n\n".encode())
        while not closing.is_set():
            waiters = [
                asyncio.ensure_future(sandbox.world.wait_changed(version, KEEPALIVE_SECONDS)),
                asyncio.ensure_future(jobs.wait()),
                asyncio.ensure_future(closing.wait()),
            ]
            try:
                await asyncio.wait(
                    waiters, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if closing.is_set():
                break
            if sandbox.world.version == version and not jobs.is_set():
                await response.write(b": keep-alive\n\n")
                continue
            await asyncio.sleep(EVENTS_SETTLE_SECONDS)  # one event for a burst of changes
            jobs.clear()
            version = sandbox.world.version
            await response.write(f"event: changed\ndata: {version}\n\n".encode())
    except ConnectionResetError:
        pass
    finally:
        wakeup.unsubscribe(jobs)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _close_streams(app: web.Application) -> None:
    app[_closing_key].set()


# Actions -------------------------------------------------------------------------------


def _parse(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        raise unprocessable(
            [
                field_problem(
                    ".".join(map(str, error["loc"])) or "body",
                    error["msg"].removeprefix("Value error, "),
                )
                for error in exc.errors()
            ]
        ) from None


async def _body(request: web.Request, model: type[_Body]) -> Any:
    return _parse(model, await read_json(request) if request.can_read_body else {})


async def _world(action: Awaitable[Any]) -> Any:
    try:
        return await action
    except WorldError as exc:
        raise ApiError(exc.status, str(exc), exc.code) from None


async def create_order(request: web.Request) -> web.Response:
    body = await _body(request, NewOrder)
    sandbox = request.app[sandbox_key]
    order = await _world(
        sandbox.world.shop.create_order(
            phone=body.phone, amount=body.amount, payment=body.payment, customer=body.customer
        ),
    )
    return web.json_response({"order": await _with_status(request, order)}, status=201)


async def order_action(request: web.Request) -> web.Response:
    """The merchant's (or its carrier's) action on an order: `fulfil` takes a Shipment
    (optional), `fail` a FailedDelivery (optional); the others no body."""
    shop = request.app[sandbox_key].world.shop
    order_id, action = request.match_info["order_id"], request.match_info["action"]
    if action == "fulfil":
        body = await read_json(request) if request.can_read_body else None
        shipment = _parse(Shipment, body).model_dump() if body else None
        done = shop.fulfil(order_id, shipment)
    elif action == "fail":
        failure = await _body(request, FailedDelivery)
        done = shop.fail_delivery(order_id, failure.reason)
    else:
        simple = {
            "pack": shop.pack,
            "out-for-delivery": shop.out_for_delivery,
            "deliver": shop.deliver,
            "cancel": shop.cancel,
        }
        done = simple[action](order_id)
    order = await _world(done)
    return web.json_response({"order": await _with_status(request, order)})


async def _with_status(request: web.Request, order: dict[str, Any]) -> dict[str, Any]:
    sandbox = request.app[sandbox_key]
    facts = await app_facts(
        request.app[db_key], sandbox.shop.shop_id, [order["id"]], sandbox.clock.now()
    )
    return _order(order, facts)


async def phone_action(request: web.Request) -> web.Response:
    world = request.app[sandbox_key].world
    number, action = request.match_info["number"], request.match_info["action"]
    if action == "answer":
        keypad = await _body(request, Keypad)
        result = {"call": await _world(world.answer(number, keypad.digits))}
    elif action == "ring-out":
        result = {"call": await _world(world.ring_out(number))}
    elif action == "missed-call":
        result = {"call": await _world(world.missed_call(number))}
    elif action == "reply":
        reply = await _body(request, Reply)
        result = {"message": await _world(world.reply(number, reply.channel, reply.text))}
    else:
        button = await _body(request, Button)
        result = {"message": await _world(world.press_button(number, button.title))}
    return web.json_response(result)


async def set_sms_consent(request: web.Request) -> web.Response:
    """The merchant changes a customer's SMS marketing consent in the shop's Shopify."""
    body = await _body(request, SmsConsent)
    world = request.app[sandbox_key].world
    number = request.match_info["number"]
    return web.json_response(
        {"customer": await _world(world.set_sms_consent(number, body.subscribed))}
    )


async def answer_thread(request: web.Request) -> web.Response:
    """The merchant answers a customer's thread, as POST /api/v1/threads/{id}/reply does: on
    the thread's channel, through the account the customer wrote to."""
    app = request.app
    shop_id = app[sandbox_key].shop.shop_id
    raw = request.match_info["thread_id"]
    missing = ApiError(404, f"no thread {raw} in the demo shop", "not_found")
    thread_id = int(raw) if raw.isdigit() and len(raw) <= 18 else None
    if thread_id is None or await threads.thread(app[db_key], shop_id, thread_id) is None:
        raise missing
    answer = await _body(request, ThreadReply)
    sent = await threads.reply(
        app[db_key], app[queue_key], app[clock_key].now(), shop_id, thread_id, answer.text
    )
    if sent is None:
        raise missing
    return web.json_response({"message": _thread_message(sent)}, status=201)


# The merchant's Telegram chat --------------------------------------------------------------


async def chat(request: web.Request) -> web.Response:
    return web.json_response(await chat_state(request.app))


async def chat_state(app: web.Application) -> dict[str, Any]:
    """The merchant's chat as Telegram shows it (deleted messages gone), the bot it talks to,
    the demo shop's one-time link code and what the chat is linked to."""
    sandbox = app[sandbox_key]
    shown = sandbox.world.merchant_chat()
    link = await ChatLinks(app[db_key], app[clock_key]).of_chat(shown.id)
    answers = shown.callback_answers
    return {
        "bot": {"username": sandbox.world.telegram.username},
        # The command menu the bot set (setMyCommands), as Telegram offers it.
        "commands": sandbox.world.telegram.commands,
        "link_code": sandbox.shop.bot_link_code,
        "linked": {"shop": link.shop_name, "role": link.role} if link is not None else None,
        "messages": [_chat_message(m) for m in shown.messages if not m.deleted],
        # The latest answer to a button press, which Telegram shows over the chat.
        "notice": {"count": len(answers), "text": answers[-1]} if answers else None,
    }


def _chat_message(message: ChatMessage) -> dict[str, Any]:
    file = None
    if message.document is not None or message.photo is not None:
        content = message.document if message.document is not None else message.photo
        file = {
            "kind": "document" if message.document is not None else "photo",
            "name": message.file_name,
            "size": len(content or b""),
            "url": f"{PREFIX}/chat/messages/{message.message_id}/file",
        }
    return {
        "id": message.message_id,
        "from": "bot" if message.from_bot else "merchant",
        "text": message.text or message.caption,
        "buttons": [
            [{"text": text, "data": data} for text, data in row] for row in message.buttons
        ],
        "edited": message.edits > 0,
        "reply_to": message.reply_to,
        "file": file,
    }


def _message_id(request: web.Request) -> int:
    raw = request.match_info["message_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(404, f"no message {raw} in the merchant's chat", "not_found")
    return int(raw)


async def chat_send(request: web.Request) -> web.Response:
    """The merchant types a message to the bot; answered once the bot has handled it."""
    body = await _body(request, ChatText)
    world = request.app[sandbox_key].world
    await _world(world.merchant_types(body.text, body.reply_to))
    return web.json_response({"chat": await chat_state(request.app)}, status=201)


async def chat_press(request: web.Request) -> web.Response:
    """The merchant taps an inline button of one of the bot's messages."""
    message_id = _message_id(request)
    body = await _body(request, ChatPress)
    world = request.app[sandbox_key].world
    await _world(world.merchant_presses(message_id, body.data))
    return web.json_response({"chat": await chat_state(request.app)})


async def chat_file(request: web.Request) -> web.Response:
    """A document (downloaded) or photo (shown) the bot sent in the chat."""
    message_id = _message_id(request)
    try:
        message = request.app[sandbox_key].world.merchant_message(message_id)
    except WorldError:
        message = None
    if message is None or (message.document is None and message.photo is None):
        raise ApiError(404, f"no file in message {message_id} of the chat", "not_found")
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if message.photo is not None:
        return web.Response(
            body=message.photo, content_type=_image_type(message.photo), headers=headers
        )
    name = message.file_name or "document"
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = f"attachment; filename*=UTF-8''{quote(name)}"
    return web.Response(
        body=message.document,
        content_type=content_type,
        headers=headers | {"Content-Disposition": disposition},
    )


def _image_type(content: bytes) -> str:
    """A photo's type from its first bytes (the bot's charts are PNG)."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"


async def move_time(request: web.Request) -> web.Response:
    move = await _body(request, TimeMove)
    sandbox = request.app[sandbox_key]
    db = request.app[db_key]
    if move.minutes is not None:
        sandbox.clock.advance(timedelta(minutes=move.minutes))
    else:
        if await work_in_flight(db, sandbox.clock.now()):
            raise ApiError(409, "jobs due now are still running: wait for them", "busy")
        facts = await app_facts(db, sandbox.shop.shop_id, [], sandbox.clock.now())
        if facts.next_job_at is None:
            raise ApiError(409, "no job is waiting: nothing to move the clock to", "no_job")
        sandbox.clock.advance_to(facts.next_job_at)
    # Jobs now due run at once, not at the worker's next poll.
    await db.wakeup.announce()
    facts = await app_facts(db, sandbox.shop.shop_id, [], sandbox.clock.now())
    return web.json_response(_time(sandbox.clock, facts.next_job_at))
