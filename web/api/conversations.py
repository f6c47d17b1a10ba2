"""Admin API handlers for customers' consent (read per channel with its history; the
merchant's change) and the merchant's threads (list, read, reply). Each reads and writes the
calling shop's rows only: another shop's thread is not found (404)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.conversations import customer_consent, threads
from flows.conversations.customer_consent import ChannelConsent
from storage.models import Message, Thread
from web.api.auth import require_shop
from web.api.shops import read_json, unprocessable
from web.errors import ApiError, field_problem
from web.keys import clock_key, db_key, queue_key

PHONE_PATTERN = r"^\+[1-9][0-9]{7,14}$"
THREAD_URL = "/api/v1/threads/{id}"
_PHONE = re.compile(PHONE_PATTERN, re.ASCII)
_DIRECTIONS = {"out": "outbound", "in": "inbound"}


class ConsentChange(BaseModel):
    """The merchant's change of a customer's consent on one channel."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "whatsapp"]
    state: Literal["opted_in", "opted_out"]
    source: Literal["merchant", "api", "checkout"] = Field(
        description="who gave or withdrew it: the merchant, an integration, the checkout"
    )


class ThreadReply(BaseModel):
    """The merchant's answer, sent on the thread's channel through the shop's account."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1,
        max_length=threads.MAX_REPLY,
        pattern=r"^[^\x00]*\S[^\x00]*$",
        description="not blank; no NUL character",
    )


async def get_consent(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    phone = _phone(request)
    found = await customer_consent.read(request.app[db_key], shop.id, phone)
    return web.json_response(_consent(phone, found))


async def put_consent(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    phone = _phone(request)
    change = _body(ConsentChange, await read_json(request))
    app = request.app
    await customer_consent.change(
        app[db_key],
        app[clock_key],
        shop.id,
        phone,
        channel=change.channel,
        state=change.state,
        source=change.source,
    )
    found = await customer_consent.read(app[db_key], shop.id, phone)
    return web.json_response(_consent(phone, found))


async def list_threads(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    unknown = sorted(set(request.query) - {"status"})
    if unknown:
        raise unprocessable([field_problem(name, "is not a filter") for name in unknown])
    status = request.query.get("status") or None
    if status is not None and status not in threads.STATUSES:
        message = f"must be one of {', '.join(threads.STATUSES)}"
        raise unprocessable([field_problem("status", message)])
    rows = await threads.threads(request.app[db_key], shop.id, status)
    return web.json_response({"threads": [_thread(row) for row in rows]})


async def get_thread(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    view = await threads.thread(request.app[db_key], shop.id, _thread_id(request))
    if view is None:
        raise _no_thread(request)
    return web.json_response(
        {"thread": _thread(view.thread), "messages": [_message(m) for m in view.messages]}
    )


async def reply(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    thread_id = _thread_id(request)
    app = request.app
    if await threads.thread(app[db_key], shop.id, thread_id) is None:
        raise _no_thread(request)
    answer = _body(ThreadReply, await read_json(request))
    if not _storable(answer.text):
        raise unprocessable([field_problem("text", "is not valid Unicode text")])
    sent = await threads.reply(
        app[db_key], app[queue_key], app[clock_key].now(), shop.id, thread_id, answer.text
    )
    if sent is None:
        raise _no_thread(request)
    return web.json_response({"message": _message(sent)}, status=201)


def _storable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which no database stores
        return False
    return True


def _phone(request: web.Request) -> str:
    phone = request.match_info["phone"].strip()
    if not _PHONE.fullmatch(phone):
        problem = "must be E.164: + and 8 to 15 digits (URL-encode the + as %2B)"
        raise unprocessable([field_problem("phone", problem)])
    return phone


def _thread_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise _no_thread(request)
    return int(raw)


def _no_thread(request: web.Request) -> ApiError:
    return ApiError(404, f"no thread {request.match_info['id']} in this shop", "not_found")


def _body(model: type[Any], document: Any) -> Any:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise unprocessable(
            [
                field_problem(".".join(map(str, e["loc"])) or "body", e["msg"])
                for e in exc.errors(include_url=False)
            ]
        ) from None


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _consent(phone: str, found: dict[str, ChannelConsent]) -> dict[str, Any]:
    return {
        "phone": phone,
        "channels": {
            channel: {
                "state": value.state,
                "source": value.source,
                "updated_at": _time(value.updated_at),
                "history": [
                    {
                        "state": event.state,
                        "source": event.source,
                        "reference": event.reference,
                        "created_at": _time(event.created_at),
                    }
                    for event in value.history
                ],
            }
            for channel, value in found.items()
        },
    }


def _thread(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "phone": thread.phone,
        "channel": thread.channel,
        "status": thread.status,
        "handed_over": thread.handed_over,
        "last_inbound_at": _time(thread.last_inbound_at),
        "last_outbound_at": _time(thread.last_outbound_at),
        "updated_at": _time(thread.updated_at),
        "url": THREAD_URL.format(id=thread.id),
    }


def _message(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": _DIRECTIONS.get(message.direction, message.direction),
        "channel": message.channel,
        "provider": message.provider,
        "account": message.account,
        "body": message.body,
        "status": message.status,
        "created_at": _time(message.created_at),
    }
