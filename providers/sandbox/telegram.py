"""A simulated Telegram Bot API on 127.0.0.1: `/bot{token}/{method}` for the methods the
merchant bot calls, answered in the Bot API's wire shapes (`{"ok": true, "result": ...}`,
errors as `{"ok": false, "error_code", "description"}`). The tests and the sandbox's chat pane
point the real aiogram Bot at it.

It keeps each chat as a user sees it: the bot's messages (text, inline buttons, documents and
photos with their bytes), edits and deletions, and the user's own messages. A test or the
sandbox page plays the user: `type` a message (optionally a reply to one) or `press` a
button. With a webhook set (`setWebhook`) the update is posted to it at once, with the secret
token header, and `type` returns once our app answered; without one it waits for
`getUpdates`, which long-polls with Telegram's offset semantics (updates up to `offset - 1`
are confirmed and gone) and answers 409 to a poll that a newer one overlaps, as Telegram
does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from clock import Clock, SystemClock
from providers.sandbox.server import FakeServer

# A token of the Bot API's shape that only this fake knows (the tests' and the sandbox's bot).
TOKEN = "123456789:AAFakeTokenForTheMerchantBotTests_0123"
WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATES = 100
# How long a test waits for the bot to answer before it fails: milliseconds usually, seconds
# when another process must first take the polling over.
REPLY_TIMEOUT_SECONDS = 30.0


class _Refused(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass
class ChatMessage:
    """A message in a chat, as its members see it."""

    message_id: int
    from_bot: bool
    text: str = ""
    # Inline keyboard rows of (text, callback_data or url).
    buttons: list[list[tuple[str, str]]] = field(default_factory=list)
    document: bytes | None = None
    file_name: str = ""
    photo: bytes | None = None
    caption: str = ""
    deleted: bool = False
    edits: int = 0
    reply_to: int | None = None  # the message this one answers (a Telegram reply)

    def button_data(self, label: str) -> str:
        """The callback data of the button whose text contains `label`."""
        for row in self.buttons:
            for text, data in row:
                if label in text:
                    return data
        raise KeyError(f"no button {label!r} in {self.buttons}")


@dataclass
class Chat:
    id: int
    first_name: str
    messages: list[ChatMessage] = field(default_factory=list)
    callback_answers: list[str] = field(default_factory=list)

    @property
    def from_bot(self) -> list[ChatMessage]:
        """The bot's messages still shown (not deleted)."""
        return [m for m in self.messages if m.from_bot and not m.deleted]

    @property
    def texts(self) -> list[str]:
        return [m.text or m.caption for m in self.from_bot]

    def message(self, message_id: int) -> ChatMessage:
        for message in self.messages:
            if message.message_id == message_id:
                return message
        raise _Refused(400, "Bad Request: message to edit not found")


class FakeTelegram(FakeServer):
    """The Telegram Bot API for one bot, and the users who talk to it."""

    party = "telegram"

    def __init__(
        self,
        token: str = TOKEN,
        *,
        username: str = "ordertalk_test_bot",
        clock: Clock | None = None,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":")[0])
        self.username = username
        self.clock = clock or SystemClock()
        self.chats: dict[int, Chat] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.webhook_url = ""
        self.webhook_secret = ""
        self.commands: list[dict[str, Any]] = []
        self.conflicts = 0
        self._pending: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._queries: dict[str, int] = {}  # callback queries not answered yet -> their chat
        self._new_update = asyncio.Event()
        # Set while a getUpdates call waits for updates.
        self.polling = asyncio.Event()
        self._poll: asyncio.Future[None] | None = None
        self._poll_request: web.Request | None = None
        self._failures: dict[str, list[tuple[int, str]]] = {}
        self._bot_spoke = asyncio.Condition()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._method)

    async def summary(self, request: web.Request) -> str:
        method = request.match_info.get("method", "")
        params, _files = await _params(request)
        chat_id = params.get("chat_id")
        return f"{method} to chat {chat_id}" if chat_id else method

    def shown_path(self, request: web.Request) -> str:
        # The path carries the bot's token, which no log shows.
        return f"/bot<token>/{request.match_info.get('method', '')}"

    def chat(self, chat_id: int, first_name: str = "") -> Chat:
        """The user's chat with the bot (opened with their `first_name` if new)."""
        if chat_id not in self.chats:
            self.chats[chat_id] = Chat(chat_id, first_name or f"User {chat_id}")
        return self.chats[chat_id]

    def fail_next(self, method: str, code: int = 500, description: str = "Internal Server Error"):
        """Answer the next call of `method` with this error instead."""
        self._failures.setdefault(method, []).append((code, description))

    def called(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every call of `method`, in order."""
        return [params for name, params in self.calls if name == method]

    # -- the user's side ----------------------------------------------------------------

    async def type(self, chat_id: int, text: str, reply_to: int | None = None) -> int:
        """The user sends `text`, as a reply to message `reply_to` if given; returns our
        webhook's HTTP status (0 when queued for polling)."""
        chat = self.chat(chat_id)
        answered = chat.message(reply_to) if reply_to is not None else None
        message = ChatMessage(
            next(self._message_ids), from_bot=False, text=text, reply_to=reply_to
        )
        chat.messages.append(message)
        payload = self._message_json(chat, message)
        if answered is not None:
            payload["reply_to_message"] = self._message_json(chat, answered)
        if text.startswith("/"):
            command = text.split()[0]
            payload["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return await self._deliver({"message": payload})

    async def press(self, chat_id: int, message_id: int, data: str) -> int:
        """The user taps the inline button carrying `data` under the bot's message."""
        chat = self.chat(chat_id)
        message = chat.message(message_id)
        query_id = str(next(self._callback_ids))
        self._queries[query_id] = chat_id
        query = {
            "id": query_id,
            "from": self._user(chat),
            "chat_instance": f"instance-{chat_id}",
            "message": self._message_json(chat, message),
            "data": data,
        }
        return await self._deliver({"callback_query": query})

    async def replies(self, chat_id: int, count: int) -> list[str]:
        """Wait until the bot has shown `count` messages in the chat (polling mode)."""

        def enough() -> bool:
            return len(self.chat(chat_id).from_bot) >= count

        async with self._bot_spoke:
            await asyncio.wait_for(self._bot_spoke.wait_for(enough), REPLY_TIMEOUT_SECONDS)
        return self.chat(chat_id).texts

    @property
    def pending(self) -> int:
        """Updates not yet confirmed by a poller."""
        return len(self._pending)

    async def _deliver(self, update: dict[str, Any]) -> int:
        update = {"update_id": next(self._update_ids), **update}
        if self.webhook_url:
            assert self._http is not None
            headers = {WEBHOOK_SECRET_HEADER: self.webhook_secret} if self.webhook_secret else {}
            async with self._http.post(self.webhook_url, json=update, headers=headers) as resp:
                await resp.read()
                return resp.status
        self._pending.append(update)
        self._new_update.set()
        return 0

    def _user(self, chat: Chat) -> dict[str, Any]:
        return {"id": chat.id, "is_bot": False, "first_name": chat.first_name}

    def _message_json(self, chat: Chat, message: ChatMessage) -> dict[str, Any]:
        sender = (
            {
                "id": self.bot_id,
                "is_bot": True,
                "first_name": "OrderTalk",
                "username": self.username,
            }
            if message.from_bot
            else self._user(chat)
        )
        payload: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(self.clock.now().timestamp()),
            "chat": {"id": chat.id, "type": "private", "first_name": chat.first_name},
            "from": sender,
        }
        if message.text:
            payload["text"] = message.text
        if message.caption:
            payload["caption"] = message.caption
        if message.document is not None:
            payload["document"] = {
                "file_id": f"doc-{message.message_id}",
                "file_unique_id": f"udoc-{message.message_id}",
                "file_name": message.file_name,
                "file_size": len(message.document),
            }
        if message.photo is not None:
            payload["photo"] = [
                {
                    "file_id": f"photo-{message.message_id}",
                    "file_unique_id": f"uphoto-{message.message_id}",
                    "width": 800,
                    "height": 600,
                    "file_size": len(message.photo),
                }
            ]
        if message.buttons:
            payload["reply_markup"] = {
                "inline_keyboard": [
                    [{"text": text, "callback_data": data} for text, data in row]
                    for row in message.buttons
                ]
            }
        return payload

    # -- the Bot API's side -------------------------------------------------------------

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await _params(request)
        self.calls.append((method, params))
        handler = getattr(self, f"_api_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        if self._failures.get(method):
            return _error(*self._failures[method].pop(0))
        try:
            result = await handler(request, params, files)
        except _Refused as exc:
            return _error(exc.code, exc.description)
        return web.json_response({"ok": True, "result": result})

    async def _api_getme(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "OrderTalk",
            "username": self.username,
            "can_join_groups": False,
        }

    async def _api_getupdates(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        if self.webhook_url:
            raise _Refused(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if self._poll is not None and not self._poll.done():
            # The older poll ends with 409, unless its client is gone (a killed process).
            if self._poll_request is not None and not _gone(self._poll_request):
                self.conflicts += 1
            self._poll.set_result(None)
        poll = self._poll = asyncio.get_running_loop().create_future()
        self._poll_request = request
        offset = int(params.get("offset", 0) or 0)
        limit = min(int(params.get("limit", MAX_UPDATES) or MAX_UPDATES), MAX_UPDATES)
        timeout = float(params.get("timeout", 0) or 0)
        if offset:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        try:
            if not self._pending:
                self._new_update.clear()
                self.polling.set()
                arrived = asyncio.ensure_future(self._new_update.wait())
                done, _ = await asyncio.wait(
                    {arrived, poll}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                arrived.cancel()
                if poll in done:
                    raise _Refused(409, "Conflict: terminated by other getUpdates request")
            return self._pending[:limit]
        finally:
            if self._poll is poll:
                self._poll = None
                self.polling.clear()

    async def _api_sendmessage(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        return await self._send(params, ChatMessage(0, True, text=_text(params, "text")))

    async def _api_senddocument(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        name, content = _file(params, files, "document")
        sent = ChatMessage(
            0, True, document=content, file_name=name, caption=params.get("caption", "")
        )
        return await self._send(params, sent)

    async def _api_sendphoto(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        _, content = _file(params, files, "photo")
        return await self._send(
            params, ChatMessage(0, True, photo=content, caption=params.get("caption", ""))
        )

    async def _api_editmessagetext(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        chat = self._known_chat(params)
        message = chat.message(int(params.get("message_id", 0)))
        text = _text(params, "text")
        buttons = _buttons(params)
        if text == message.text and buttons == message.buttons:
            raise _Refused(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        message.text, message.buttons = text, buttons
        message.edits += 1
        await self._spoke()
        return self._message_json(chat, message)

    async def _api_deletemessage(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        chat = self._known_chat(params)
        message = chat.message(int(params.get("message_id", 0)))
        if message.deleted:
            raise _Refused(400, "Bad Request: message to delete not found")
        message.deleted = True
        return True

    async def _api_answercallbackquery(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        chat_id = self._queries.pop(params.get("callback_query_id", ""), None)
        if chat_id is None:
            raise _Refused(400, "Bad Request: query is too old or query ID is invalid")
        self.chat(chat_id).callback_answers.append(params.get("text", ""))
        return True

    async def _api_setwebhook(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        url = params.get("url", "")
        if not url:
            raise _Refused(400, "Bad Request: bad webhook: URL must not be empty")
        self.webhook_url, self.webhook_secret = url, params.get("secret_token", "")
        return True

    async def _api_deletewebhook(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        self.webhook_url = self.webhook_secret = ""
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self._pending.clear()
        return True

    async def _api_setmycommands(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        self.commands = json.loads(params.get("commands", "[]"))
        return True

    def _known_chat(self, params: dict[str, Any]) -> Chat:
        chat_id = params.get("chat_id", "")
        if not str(chat_id).lstrip("-").isdigit():
            raise _Refused(400, "Bad Request: chat not found")
        return self.chat(int(chat_id))

    async def _send(self, params: dict[str, Any], message: ChatMessage) -> Any:
        chat = self._known_chat(params)
        message.message_id = next(self._message_ids)
        message.buttons = _buttons(params)
        chat.messages.append(message)
        await self._spoke()
        return self._message_json(chat, message)

    async def _spoke(self) -> None:
        async with self._bot_spoke:
            self._bot_spoke.notify_all()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _error(code: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": code, "description": description}, status=code
    )


async def _params(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, tuple[str, bytes]] = {}
    if request.content_type == "application/json":
        params.update(await request.json())
        return params, files
    for name, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            files[name] = (value.filename or name, value.file.read())
        else:
            params[name] = value
    return params, files


def _text(params: dict[str, Any], name: str) -> str:
    text = params.get(name, "")
    if not text.strip():
        raise _Refused(400, "Bad Request: message text is empty")
    return text


def _file(
    params: dict[str, Any], files: dict[str, tuple[str, bytes]], name: str
) -> tuple[str, bytes]:
    # An uploaded file is a multipart part that the parameter names: `attach://<part>`.
    part = str(params.get(name, "")).removeprefix("attach://")
    if part not in files:
        raise _Refused(400, f"Bad Request: there is no {name} in the request")
    return files[part]


def _buttons(params: dict[str, Any]) -> list[list[tuple[str, str]]]:
    markup = params.get("reply_markup")
    if not markup:
        return []
    keyboard = json.loads(markup) if isinstance(markup, str) else markup
    return [
        [(button["text"], button.get("callback_data") or button.get("url", "")) for button in row]
        for row in keyboard.get("inline_keyboard", [])
    ]
