"""Gupshup WhatsApp (self-serve API): template and quick-reply session sends, template lookup,
the live check of an api key and app, and the parser of the callbacks Gupshup posts to
/webhooks/gupshup/{token}.

Requests are forms whose JSON objects travel as string fields, authenticated by the `apikey`
header. Gupshup signs no callback: the secret token in the callback path is the web route's check.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import phonenumbers

from providers.base import (
    INVALID_NUMBER,
    OPTED_OUT,
    OUTSIDE_SESSION_WINDOW,
    TEMPLATE_NOT_APPROVED,
    UNAUTHORIZED,
    AccountCheck,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    SendReceipt,
    TemplateInfo,
    WhatsAppButtons,
    WhatsAppTemplate,
)
from providers.events import InboundMessage, MessageStatus
from providers.http import Answer, exchange

API_URL = "https://api.gupshup.io"
TEMPLATE_SEND_PATH = "/wa/api/v1/template/msg"
SESSION_SEND_PATH = "/wa/api/v1/msg"
TEMPLATE_LIST_PATH = "/sm/api/v1/template/list/{app_name}"
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"

_EVENT_STATUS = {
    "enqueued": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}
# Gupshup failure codes (docs.gupshup.io/docs/error-and-status-messages) the flows act on;
# any other code, Gupshup's or Meta's, is passed through as it came.
_FAILURE_CODES = {
    "1002": INVALID_NUMBER,  # number not on WhatsApp
    "1012": OPTED_OUT,
    "4003": TEMPLATE_NOT_APPROVED,  # no template match
    "4005": TEMPLATE_NOT_APPROVED,  # paused template
    # Not a template WhatsApp takes, to a customer whose 24-hour session is not open:
    # Gupshup's own code, and Meta's (Cloud API; on-premises) passed through.
    "1005": OUTSIDE_SESSION_WINDOW,
    "131047": OUTSIDE_SESSION_WINDOW,
    "470": OUTSIDE_SESSION_WINDOW,
}
_RATE_LIMITED_CODE = "4001"
# "Portal User Not Found With APIKey" is how Gupshup refuses an unknown key on some endpoints.
_AUTH_FAILED = re.compile(r"authentication failed|portal user not found", re.IGNORECASE)
_INVALID_DESTINATION = re.compile(r"invalid destination", re.IGNORECASE)
_RATE_LIMITED = re.compile(r"rate limit", re.IGNORECASE)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_REPLY_TYPES = frozenset({"quick_reply", "button_reply", "list_reply"})
# Callback values are stored in columns this wide (ids; error codes; numbers).
_MAX_ID, _MAX_CODE, _MAX_NUMBER = 128, 64, 20


class GupshupClient:
    """Sends WhatsApp templates and quick-reply session messages through one Gupshup app."""

    name = "gupshup"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_key: str,
        app_name: str,
        source: str,
        api_url: str = API_URL,
        timeout_seconds: float = 15.0,
    ) -> None:
        digits = re.sub(r"\D", "", source)
        if not digits:
            raise ValueError(f"source {source!r} is not a phone number")
        self._http = http
        self._api_key = api_key
        self._app_name = app_name
        self._source = digits
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def send_template(self, request: WhatsAppTemplate) -> SendReceipt:
        """Send an approved template with its parameters and its buttons' postback texts."""
        form = self._form(request.to)
        form["template"] = _dumps({"id": request.template_id, "params": list(request.params)})
        postbacks = [
            {"index": index, "text": text} for index, text in enumerate(request.postbacks) if text
        ]
        if postbacks:
            form["postbackTexts"] = _dumps(postbacks)
        return _receipt(await self._call("POST", TEMPLATE_SEND_PATH, "template send", form))

    async def send_buttons(self, request: WhatsAppButtons) -> SendReceipt:
        """Send a session message with up to three quick-reply buttons (plain text with none).

        ValueError for more than three buttons or a title WhatsApp refuses: a caller's bug.
        """
        message = _session_message(request)
        form = self._form(request.to)
        form["message"] = _dumps(message)
        return _receipt(await self._call("POST", SESSION_SEND_PATH, "session send", form))

    async def template(self, template_id: str) -> TemplateInfo:
        """A template of the app, found by its id (or element name): approval status and text."""
        path = self._template_list_path()
        templates = (await self._call("GET", path, "template list")).get("templates")
        if not isinstance(templates, list):
            raise ProviderError(
                "gupshup template list: answer has no templates",
                retryable=False,
                code="BAD_RESPONSE",
            )
        candidates = [item for item in templates if isinstance(item, dict)]
        found = next((item for item in candidates if item.get("id") == template_id), None)
        if found is None:
            found = next(
                (item for item in candidates if item.get("elementName") == template_id), None
            )
        if found is None:
            raise ProviderError(
                f"gupshup: app {self._app_name} has no template {template_id!r}",
                retryable=False,
                code=TEMPLATE_NOT_FOUND,
            )
        return TemplateInfo(
            template_id=_str(found.get("id")),
            name=_str(found.get("elementName")),
            status=_str(found.get("status")).upper(),
            text=_str(found.get("data")),
            language=_str(found.get("languageCode")),
        )

    async def check_account(self, numbers: Sequence[str]) -> AccountCheck:
        """Whether Gupshup takes the api key and knows the app as the key's, by listing the
        app's templates; raises CheckFailed naming the input Gupshup refused.

        Gupshup's self-serve API cannot tell which WhatsApp number an app sends from: `numbers`
        come back as given, with neither SMS nor voice. Gupshup reports no account name.
        """
        operation = "template list"
        answer = await self._exchange("GET", self._template_list_path(), operation)
        try:
            _answer(operation, answer.status, answer.retry_after, answer.text)
        except ProviderError as exc:
            if exc.retryable or exc.code == "BAD_RESPONSE":
                raise
            reason = _message(_json_object(answer.text)) or f"HTTP {answer.status}"
            # Gupshup answers "Invalid App Details" for an app that is not the key's.
            raise CheckFailed(
                "api_key" if exc.code == UNAUTHORIZED else "app_name", reason
            ) from None
        return AccountCheck(
            name="",
            numbers=tuple(
                NumberCapabilities(number, sms=False, voice=False) for number in numbers
            ),
        )

    def _template_list_path(self) -> str:
        return TEMPLATE_LIST_PATH.format(app_name=quote(self._app_name, safe=""))

    def _form(self, to: str) -> dict[str, str]:
        if not _E164.fullmatch(to):
            raise ProviderError(
                f"gupshup: {to!r} is not an E.164 phone", retryable=False, code=INVALID_NUMBER
            )
        return {
            "channel": "whatsapp",
            "source": self._source,
            "destination": to[1:],
            "src.name": self._app_name,
        }

    async def _call(
        self, method: str, path: str, operation: str, form: dict[str, str] | None = None
    ) -> dict[str, Any]:
        answer = await self._exchange(method, path, operation, form)
        return _answer(operation, answer.status, answer.retry_after, answer.text)

    async def _exchange(
        self, method: str, path: str, operation: str, form: dict[str, str] | None = None
    ) -> Answer:
        headers = {"apikey": self._api_key, "Accept": "application/json"}
        return await exchange(
            self._http,
            method,
            self._api_url + path,
            f"gupshup {operation}",
            client_timeout=self._timeout,
            data=form,
            headers=headers,
        )


def parse_callback(body: Mapping[str, Any]) -> list[InboundMessage | MessageStatus]:
    """The events in one Gupshup (v2) callback body; callbacks we do not track give [].

    A malformed body raises ValueError naming the field ("payload.sender.phone: ...").
    """
    if not isinstance(body, Mapping):
        raise ValueError("body: not a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ValueError("type: missing or not a string")
    if kind == "message":
        return [_inbound(body)]
    if kind == "message-event":
        status = _message_status(body)
        return [status] if status is not None else []
    return []


def _session_message(request: WhatsAppButtons) -> dict[str, Any]:
    if not request.buttons:
        text = f"{request.header}\n{request.text}" if request.header else request.text
        return {"type": "text", "text": text}
    if len(request.buttons) > MAX_BUTTONS:
        raise ValueError(f"at most {MAX_BUTTONS} quick-reply buttons, got {len(request.buttons)}")
    for button in request.buttons:
        if not 1 <= len(button.title) <= MAX_BUTTON_TITLE:
            raise ValueError(
                f"button title {button.title!r} must have 1 to {MAX_BUTTON_TITLE} characters"
            )
    content = {"type": "text", "text": request.text}
    if request.header:
        content["header"] = request.header
    return {
        "type": "quick_reply",
        "msgid": request.reference or uuid.uuid4().hex,
        "content": content,
        "options": [
            {"type": "text", "title": button.title, "postbackText": button.postback}
            for button in request.buttons
        ],
    }


def _answer(operation: str, status: int, retry_after: str | None, text: str) -> dict[str, Any]:
    body = _json_object(text)
    message = _message(body)
    detail = message or text[:200]
    where = f"gupshup {operation}"
    if status in (401, 403) or _AUTH_FAILED.search(message):
        raise ProviderError(f"{where}: {detail}", retryable=False, code=UNAUTHORIZED)
    if (
        status == 429
        or str((body or {}).get("code")) == _RATE_LIMITED_CODE
        or _RATE_LIMITED.search(message)
    ):
        raise ProviderError(
            f"{where}: rate limited: {detail}",
            retryable=True,
            code="THROTTLED",
            retry_after=_seconds(retry_after),
        )
    if status >= 500:
        raise ProviderError(f"{where}: HTTP {status}", retryable=True, code=f"HTTP_{status}")
    if _INVALID_DESTINATION.search(message):
        raise ProviderError(f"{where}: {message}", retryable=False, code=INVALID_NUMBER)
    if not 200 <= status < 300 or (body is not None and body.get("status") == "error"):
        raise ProviderError(f"{where}: HTTP {status}: {detail}", retryable=False, code="REJECTED")
    if body is None:
        raise ProviderError(
            f"{where}: answer is not a JSON object: {text[:200]}",
            retryable=False,
            code="BAD_RESPONSE",
        )
    return body


def _receipt(body: dict[str, Any]) -> SendReceipt:
    message_id = body.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        # Not retryable: Gupshup may have taken the message, and a retry could send it twice.
        raise ProviderError(
            "gupshup send: answer has no messageId", retryable=False, code="BAD_RESPONSE"
        )
    return SendReceipt(provider_message_id=message_id, status="queued")


def _inbound(body: Mapping[str, Any]) -> InboundMessage:
    payload = _mapping(body.get("payload"), "payload")
    message_id = _id(payload.get("id"), "payload.id")
    kind = _required(payload.get("type"), "payload.type")
    sender = payload.get("sender")
    if isinstance(sender, Mapping) and "phone" in sender:
        phone = _e164(sender.get("phone"), "payload.sender.phone")
    else:
        phone = _e164(payload.get("source"), "payload.source")
    content = payload.get("payload")
    button = ""
    if kind == "text":
        text = _string(_mapping(content, "payload.payload").get("text"), "payload.payload.text")
    elif kind in _REPLY_TYPES:
        text, button = _reply(_mapping(content, "payload.payload"))
    else:
        caption = content.get("caption") if isinstance(content, Mapping) else None
        text = caption if isinstance(caption, str) and caption else f"[{kind}]"
    # Newer callbacks name our number in "phone"; older ones only the app, whose name may not
    # fit where our number is kept: then none is recorded.
    to = body.get("phone") or body.get("app")
    return InboundMessage(
        provider="gupshup",
        message_id=message_id,
        channel="whatsapp",
        from_phone=phone,
        to=to if isinstance(to, str) and len(to) <= _MAX_NUMBER else "",
        text=text,
        button=button,
    )


def _reply(content: Mapping[str, Any]) -> tuple[str, str]:
    """(label, button): the button is its postback, else its label; never the reply's `id`,
    which is the msgid we sent (a message id, the same for every button of the message)."""
    # A template button sends {"text", "type": "button", "postbackText"?}; a session quick reply
    # or list reply {"title", "id", "reply", "postbackText"?}.
    if "title" in content:
        label = _string(content.get("title"), "payload.payload.title")
    else:
        label = _string(content.get("text"), "payload.payload.text")
    postback = content.get("postbackText")
    return label, postback if isinstance(postback, str) and postback else label


def _message_status(body: Mapping[str, Any]) -> MessageStatus | None:
    payload = _mapping(body.get("payload"), "payload")
    status = _EVENT_STATUS.get(_required(payload.get("type"), "payload.type"))
    if status is None:
        return None
    # sent/delivered/read carry WhatsApp's id in "id" and ours (the send's messageId) in "gsId";
    # enqueued and a synchronous failure carry ours in "id".
    gs_id = payload.get("gsId")
    if isinstance(gs_id, str) and gs_id:
        message_id = _id(gs_id, "payload.gsId")
    else:
        message_id = _id(payload.get("id"), "payload.id")
    error_code = error = ""
    if status == "failed":
        details = payload.get("payload")
        details = details if isinstance(details, Mapping) else {}
        code, reason = details.get("code"), details.get("reason")
        raw = str(code) if isinstance(code, int | str) and not isinstance(code, bool) else ""
        if len(raw) > _MAX_CODE:
            raise ValueError(f"payload.payload.code: longer than {_MAX_CODE} characters")
        error_code = _FAILURE_CODES.get(raw, raw)
        error = reason if isinstance(reason, str) else ""
    return MessageStatus(
        provider="gupshup",
        message_id=message_id,
        status=status,
        error_code=error_code,
        error=error,
    )


def _e164(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{field}: missing or not a string")
    digits = raw.strip().removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{field}: {raw!r} is not an international number")
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{field}: {raw!r}: {exc}") from None
    # Possible rather than valid: WhatsApp vouches for the number, and a numbering plan newer
    # than the phonenumbers metadata must not turn a real reply into a rejected callback.
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{field}: {raw!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: missing or not an object")
    return value


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: missing or not a string")
    return value


def _required(value: Any, field: str) -> str:
    text = _string(value, field)
    if not text:
        raise ValueError(f"{field}: empty")
    return text


def _id(value: Any, field: str) -> str:
    text = _required(value, field)
    if len(text) > _MAX_ID:
        raise ValueError(f"{field}: longer than {_MAX_ID} characters")
    return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _message(body: dict[str, Any] | None) -> str:
    message = (body or {}).get("message")
    if message is None:
        return ""
    return message if isinstance(message, str) else json.dumps(message)


def _seconds(header: str | None) -> float | None:
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
