"""A fake Gupshup WhatsApp API on 127.0.0.1: template and session sends, the template list, and
callbacks posted the way Gupshup posts them, state in memory.

Answers in Gupshup's wire shapes (`{"status":"submitted","messageId":...}` served as text/html,
`{"status":"error","message":...}`: 401 "Authentication Failed" to a wrong apikey, 400 "Invalid
App Details" to an app name that is not the key's) and records every send's form with its JSON
fields decoded.
Serves the tests and the sandbox (where it is the platform's Gupshup app, on the sandbox's clock).
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import phonenumbers
from aiohttp import web

from clock import Clock
from providers.sandbox.server import FakeServer

JSON_FIELDS = frozenset({"template", "message", "postbackTexts"})
AUTH_FAILED = {"status": "error", "message": "Authentication Failed"}
INVALID_DESTINATION = {"message": "Invalid Destination", "status": "error"}
INVALID_APP = {"message": "Invalid App Details", "status": "error"}
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
_VARIABLE = re.compile(r"\{\{\s*([0-9]+)\s*\}\}")

Check = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class TemplateView:
    """A template message as a handset shows it."""

    text: str
    replies: tuple[str, ...]  # quick-reply button titles
    links: tuple[tuple[str, str], ...]  # URL buttons: (title, url)


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: float | None
    body: dict[str, Any] | None


class FakeGupshup(FakeServer):
    """Gupshup's self-serve WhatsApp API and callback sender, in memory on loopback."""

    party = "gupshup"

    def __init__(
        self,
        *,
        api_key: str = "fake-gupshup-key",
        app_name: str = "OrderTalkDemo",
        source: str = "917834811114",
        clock: Clock | None = None,
    ) -> None:
        if clock is not None:
            self.clock = clock
        self.api_key = api_key
        self.app_name = app_name
        self.source = source
        self.requests: list[tuple[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.accepted: dict[str, dict[str, Any]] = {}
        self.templates: list[dict[str, Any]] = []
        self._invalid: set[str] = set()
        self._failures: list[_Failure] = []

    def routes(self, app: web.Application) -> None:
        """The provider API this fake answers."""
        app.router.add_post("/wa/api/v1/template/msg", self._template_send)
        app.router.add_post("/wa/api/v1/msg", self._session_send)
        app.router.add_get("/sm/api/v1/template/list/{app_name}", self._template_list)

    async def summary(self, request: web.Request) -> str:
        """Whom a message is for and what it says (with its buttons), or the template list."""
        if request.method == "GET":
            return f"template list of {request.match_info.get('app_name', '?')}"
        form = await request.post()
        fields = {name: _decode(name, v) for name, v in form.items() if isinstance(v, str)}
        to = f"+{fields.get('destination', '?')}"
        template = fields.get("template")
        if isinstance(template, dict):
            params = ", ".join(map(str, _list(template.get("params"))))
            return f"WhatsApp template {template.get('id')} to {to} ({params})"
        text, buttons = message_text(fields.get("message"))
        shown = f" [{' | '.join(buttons)}]" if buttons else ""
        return f"WhatsApp to {to}: {text}{shown}"

    # State -----------------------------------------------------------------------------

    def add_template(
        self,
        template_id: str,
        element_name: str,
        status: str = "APPROVED",
        text: str = "",
        *,
        language: str = "en",
        category: str = "UTILITY",
        buttons: Sequence[dict[str, str]] = (),
    ) -> dict[str, Any]:
        """Add a template to the app's list, in the list API's shape; returns it. `buttons`
        as Gupshup's containerMeta carries them: {"type": "QUICK_REPLY", "text": ...} or
        {"type": "URL", "text": ..., "url": ...}."""
        now = self._millis()
        app_id = str(uuid.uuid4())
        container = {"appId": app_id, "data": text, "buttons": list(buttons)}
        template = {
            "id": template_id,
            "appId": app_id,
            "elementName": element_name,
            "languageCode": language,
            "category": category,
            "templateType": "TEXT",
            "status": status,
            "data": text,
            "meta": json.dumps({"example": text}),
            "containerMeta": json.dumps(container if buttons else {}),
            "createdOn": now,
            "modifiedOn": now,
            "namespace": "fake_namespace",
            "wabaId": "100000000000001",
            "quality": "UNKNOWN",
            "priority": 1,
            "retry": 0,
            "stage": "NONE",
            "vertical": "ordertalk",
        }
        self.templates.append(template)
        return template

    def template_view(self, template_id: str, params: list[str]) -> TemplateView | None:
        """What a phone shows of a template message: its text with `params` filled in, its
        quick-reply titles and its URL buttons; None for a template the app does not have."""
        template = next((t for t in self.templates if t["id"] == template_id), None)
        if template is None:
            return None
        text = _VARIABLE.sub(lambda m: _param(params, m.group(1), m.group(0)), template["data"])
        buttons = _list(_json(template.get("containerMeta")).get("buttons"))
        replies = [
            str(b.get("text")) for b in map(_dict, buttons) if b.get("type") == "QUICK_REPLY"
        ]
        links = [
            (str(b.get("text")), str(b.get("url")))
            for b in map(_dict, buttons)
            if b.get("type") == "URL"
        ]
        return TemplateView(text, tuple(replies), tuple(links))

    def invalid(self, number: str) -> None:
        """Refuse sends to this number (E.164 or digits) with "Invalid Destination"."""
        self._invalid.add(number.removeprefix("+"))

    def fail_next(
        self,
        count: int,
        status: int = 503,
        retry_after: float | None = None,
        *,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `count` authenticated calls with `status` (and `body`, Retry-After)."""
        self._failures.extend([_Failure(status, retry_after, body)] * count)

    # API -------------------------------------------------------------------------------

    async def _template_send(self, request: web.Request) -> web.Response:
        return await self._send(request, _template_problem)

    async def _session_send(self, request: web.Request) -> web.Response:
        return await self._send(request, _session_problem)

    async def _send(self, request: web.Request, check: Check) -> web.Response:
        self.requests.append((request.method, request.path))
        form = await request.post()
        fields = {
            name: _decode(name, value) for name, value in form.items() if isinstance(value, str)
        }
        self.messages.append(fields)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if (
            fields.get("channel") != "whatsapp"
            or fields.get("src.name") != self.app_name
            or fields.get("source") != self.source
        ):
            return web.json_response(INVALID_APP, status=400)
        destination = fields.get("destination")
        if (
            not isinstance(destination, str)
            or not destination.isdigit()
            or destination in self._invalid
        ):
            return web.json_response(INVALID_DESTINATION, status=400)
        problem = check(fields)
        if problem:
            return web.json_response({"status": "error", "message": problem}, status=400)
        message_id = str(uuid.uuid4())
        self.accepted[message_id] = fields
        # Gupshup answers a submitted message as text/html, whatever the Accept header says.
        return web.Response(
            status=202,
            text=json.dumps({"status": "submitted", "messageId": message_id}),
            content_type="text/html",
        )

    async def _template_list(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if request.match_info["app_name"] != self.app_name:
            return web.json_response(INVALID_APP, status=400)
        return web.json_response({"status": "success", "templates": self.templates})

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.headers.get("apikey") != self.api_key:
            return web.json_response(AUTH_FAILED, status=401)
        if not self._failures:
            return None
        failure = self._failures.pop(0)
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        if failure.body is not None:
            return web.json_response(failure.body, status=failure.status, headers=headers)
        phrase = HTTPStatus(failure.status).phrase
        if failure.status >= 500:
            return web.Response(
                status=failure.status,
                text=f"<html><body><h1>{failure.status} {phrase}</h1></body></html>",
                content_type="text/html",
                headers=headers,
            )
        return web.json_response(
            {"status": "error", "message": phrase}, status=failure.status, headers=headers
        )

    # Callbacks -------------------------------------------------------------------------

    async def send_text(
        self, url: str, *, from_phone: str, text: str, name: str = "Asha"
    ) -> tuple[int, str]:
        """POST an inbound text message callback; returns our answer's status and body."""
        return await self._post(url, self._inbound(from_phone, name, "text", {"text": text}))

    async def send_button_reply(
        self,
        url: str,
        *,
        from_phone: str,
        title: str,
        postback: str | None = None,
        reply_id: str | None = None,
        context_gs_id: str | None = None,
    ) -> tuple[int, str]:
        """POST a quick-reply press: a session reply when `reply_id` (our msgid) is given,
        else a template button press; `postbackText` only when `postback` is given."""
        content: dict[str, Any]
        if reply_id is not None:
            index = self._option_index(reply_id, title)
            content = {"title": title, "id": reply_id, "reply": f"{title} {index}"}
        else:
            content = {"text": title, "type": "button"}
        if postback is not None:
            content["postbackText"] = postback
        body = self._inbound(from_phone, "Asha", "quick_reply", content)
        if context_gs_id is not None:
            body["payload"]["context"] = {"id": _whatsapp_id(), "gsId": context_gs_id}
        return await self._post(url, body)

    async def send_event(
        self,
        url: str,
        *,
        gs_id: str,
        status: str,
        destination: str,
        code: int | None = None,
        reason: str | None = None,
    ) -> tuple[int, str]:
        """POST a message-event (enqueued, failed, sent, delivered, read) for a sent message."""
        payload: dict[str, Any] = {
            "type": status,
            "destination": destination.removeprefix("+"),
        }
        if status == "enqueued":
            payload["id"] = gs_id
            payload["payload"] = {"whatsappMessageId": _whatsapp_id(), "type": "session"}
        elif status == "failed":
            payload["id"] = gs_id
            payload["payload"] = {"code": code, "reason": reason}
        else:
            payload["id"] = _whatsapp_id()
            payload["gsId"] = gs_id
            payload["payload"] = {"ts": self._millis() // 1000}
        return await self._post(url, self._envelope("message-event", payload))

    def _inbound(
        self, from_phone: str, name: str, kind: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        digits = from_phone.removeprefix("+")
        try:
            number = phonenumbers.parse("+" + digits)
            country_code, dial_code = str(number.country_code), str(number.national_number)
        except phonenumbers.NumberParseException:
            country_code, dial_code = "", digits
        payload = {
            "id": _whatsapp_id(),
            "source": digits,
            "type": kind,
            "payload": content,
            "sender": {
                "phone": digits,
                "name": name,
                "country_code": country_code,
                "dial_code": dial_code,
            },
        }
        return self._envelope("message", payload)

    def _envelope(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "app": self.app_name,
            "timestamp": self._millis(),
            "version": 2,
            "type": kind,
            "payload": payload,
        }

    def _option_index(self, msgid: str, title: str) -> int:
        # Gupshup's "reply" is the title and the 1-based position of the pressed option.
        for fields in reversed(self.messages):
            message = fields.get("message")
            if isinstance(message, dict) and message.get("msgid") == msgid:
                titles = [_dict(option).get("title") for option in _list(message.get("options"))]
                if title in titles:
                    return titles.index(title) + 1
        return 1

    def _millis(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int, str]:
        if self._http is None:
            raise RuntimeError("FakeGupshup.start() has not been called")
        async with self._http.post(url, json=body) as response:
            return response.status, await response.text()


def message_text(message: Any) -> tuple[str, list[str]]:
    """The text of a session message and the titles of its quick-reply buttons."""
    message = _dict(message)
    if message.get("type") == "quick_reply":
        text = _dict(message.get("content")).get("text")
        titles = [_dict(option).get("title") for option in _list(message.get("options"))]
        return str(text or ""), [str(title) for title in titles if title]
    return str(message.get("text") or ""), []


def _template_problem(fields: dict[str, Any]) -> str:
    template = fields.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("id"), str):
        return "Invalid Template"
    params = template.get("params", [])
    if not isinstance(params, list) or not all(isinstance(param, str) for param in params):
        return "Invalid Template Params"
    postbacks = fields.get("postbackTexts", [])
    valid = isinstance(postbacks, list) and all(
        isinstance(item, dict)
        and isinstance(item.get("index"), int)
        and isinstance(item.get("text"), str)
        for item in postbacks
    )
    return "" if valid else "Invalid postbackTexts"


def _session_problem(fields: dict[str, Any]) -> str:
    message = fields.get("message")
    if not isinstance(message, dict):
        return "Invalid Message"
    if message.get("type") == "text":
        return "" if isinstance(message.get("text"), str) and message["text"] else "Empty Text"
    if message.get("type") != "quick_reply":
        return ""
    content = message.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("text"), str):
        return "Invalid Quick Reply Content"
    options = message.get("options")
    if not isinstance(options, list) or not 1 <= len(options) <= MAX_BUTTONS:
        return "Quick Reply Supports 1 To 3 Options"
    for option in options:
        title = _dict(option).get("title")
        if not isinstance(title, str) or not 1 <= len(title) <= MAX_BUTTON_TITLE:
            return "Option Title Must Be 1 To 20 Characters"
    return ""


def _decode(name: str, value: str) -> Any:
    if name not in JSON_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _param(params: list[str], number: str, unfilled: str) -> str:
    index = int(number) - 1
    return str(params[index]) if 0 <= index < len(params) else unfilled


def _json(text: Any) -> dict[str, Any]:
    try:
        return _dict(json.loads(text)) if isinstance(text, str) else {}
    except ValueError:
        return {}


def _whatsapp_id() -> str:
    return "ABEG" + secrets.token_urlsafe(24)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
