"""A fake RingCentral on 127.0.0.1: the OAuth token endpoint (JWT and refresh grants), SMS send,
WebHook subscriptions with the real `Validation-Token` handshake, SMS notifications, and the JWT
user's extension with its phone numbers and their features.

Answers in RingCentral's wire shapes (`errorCode` with `errors[]`; a wrong client id or secret
is refused 401 invalid_client, a wrong JWT 400 invalid_grant); records each request. Token and
subscription lifetimes follow the clock it is given, so a test's ManualClock expires them.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from clock import Clock, SystemClock
from providers.sandbox.server import FakeServer

ACCOUNT_ID = "37439510"
EXTENSION_ID = "946159004"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
HANDSHAKE_TIMEOUT_SECONDS = 3.0
MAX_HANDSHAKE_RESPONSE_BYTES = 1024
MAX_WEBHOOK_EXPIRES_IN = 315_360_000
DEFAULT_EXPIRES_IN = 604_800
SMS_EVENT = (
    f"/restapi/v1.0/account/{ACCOUNT_ID}/extension/{EXTENSION_ID}/message-store/instant?type=SMS"
)
USER_AGENT = "RingCentral-Webhook"

_MESSAGE_IDS = itertools.count(1_234_567_890)


@dataclass
class FakeSubscription:
    """A WebHook subscription as the fake stores it."""

    id: str
    address: str
    verification_token: str
    event_filters: list[str]
    expires_in: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class _PhoneNumber:
    id: str
    number: str
    features: tuple[str, ...]
    usage_type: str


@dataclass
class _Failure:
    status: int
    retry_after: float | str | None


class FakeRingCentral(FakeServer):
    """RingCentral's token, SMS and subscription APIs and its webhook sender, on loopback."""

    client_headers = {"User-Agent": USER_AGENT}  # noqa: RUF012 (read-only)

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        jwt: str = "fake-jwt-credential",
        clock: Clock | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.jwt = jwt
        self.extension_name = "Store Manager"
        self.clock = clock or SystemClock()
        self.expires_in = 3600
        self.refresh_token_expires_in = 604_800
        self.grants: list[str] = []
        self.issued: list[str] = []
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        self.messages: list[dict[str, Any]] = []
        self.subscriptions: dict[str, FakeSubscription] = {}
        self._access: dict[str, datetime] = {}
        self._refresh: dict[str, datetime] = {}
        self._failures: list[_Failure] = []
        self._invalid: set[str] = set()
        self._opted_out: set[str] = set()
        self._numbers: dict[str, _PhoneNumber] = {}

    def routes(self, app: web.Application) -> None:
        """The provider API this fake answers."""
        app.router.add_post("/restapi/oauth/token", self._token)
        extension = "/restapi/v1.0/account/{account}/extension/{extension}"
        app.router.add_get(extension, self._extension)
        app.router.add_get(f"{extension}/phone-number", self._phone_numbers)
        app.router.add_post(
            "/restapi/v1.0/account/{account}/extension/{extension}/sms", self._send_sms
        )
        app.router.add_post("/restapi/v1.0/subscription", self._create_subscription)
        app.router.add_post("/restapi/v1.0/subscription/{id}/renew", self._renew_subscription)

    # State -----------------------------------------------------------------------------

    def fail_next(
        self, count: int, status: int = 503, retry_after: float | str | None = None
    ) -> None:
        """Answer the next `count` API calls (not token requests) with `status`."""
        self._failures.extend([_Failure(status, retry_after)] * count)

    def add_number(
        self,
        number: str,
        *,
        features: tuple[str, ...] = ("SmsSender", "CallerId"),
        usage_type: str = "DirectNumber",
    ) -> None:
        """Give the JWT user's extension a number (E.164) with these features."""
        self._numbers[number] = _PhoneNumber(
            str(next(_MESSAGE_IDS)), number, tuple(features), usage_type
        )

    def invalid(self, number: str) -> None:
        """Refuse SMS to `number` as an invalid recipient (400 CMN-101 on to.phoneNumber)."""
        self._invalid.add(number)

    def opt_out(self, number: str) -> None:
        """Fail SMS to `number` at once with SendingFailed / SMS-RC-413 (recipient opted out)."""
        self._opted_out.add(number)

    def expire_access_tokens(self) -> None:
        """End every access token now, as RingCentral may before `expires_in`."""
        now = self.clock.now()
        self._access = dict.fromkeys(self._access, now)

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token: the next refresh grant is refused."""
        self._refresh.clear()

    # Webhooks --------------------------------------------------------------------------

    async def deliver_sms(
        self,
        address: str,
        *,
        from_phone: str,
        to_phone: str,
        text: str,
        message_id: str | None = None,
        verification_token: str | None = None,
    ) -> tuple[int, str]:
        """POST an inbound-SMS notification to `address`; returns the HTTP status and body.

        The Verification-Token header carries `verification_token`, else the token of the
        subscription at `address`; an empty string sends no header.
        """
        if self._http is None:
            raise RuntimeError("FakeRingCentral.start() has not been called")
        subscription = next(
            (sub for sub in self.subscriptions.values() if sub.address == address), None
        )
        token = verification_token
        if token is None:
            token = subscription.verification_token if subscription is not None else ""
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        if token:
            headers["Verification-Token"] = token
        notification = self._notification(
            subscription.id if subscription is not None else str(uuid.uuid4()),
            message_id or str(next(_MESSAGE_IDS)),
            from_phone,
            to_phone,
            text,
        )
        async with self._http.post(
            address, data=json.dumps(notification).encode(), headers=headers
        ) as response:
            return response.status, await response.text()

    def _notification(
        self, subscription_id: str, message_id: str, from_phone: str, to_phone: str, text: str
    ) -> dict[str, Any]:
        moment = _iso(self.clock.now())
        conversation = str(next(_MESSAGE_IDS))
        return {
            "uuid": str(uuid.uuid4()),
            "event": SMS_EVENT,
            "timestamp": moment,
            "subscriptionId": subscription_id,
            "ownerId": EXTENSION_ID,
            "body": {
                "id": message_id,
                "to": [{"phoneNumber": to_phone, "name": "Store", "location": "San Mateo, CA"}],
                "from": {"phoneNumber": from_phone},
                "type": "SMS",
                "creationTime": moment,
                "lastModifiedTime": moment,
                "readStatus": "Unread",
                "priority": "Normal",
                "attachments": [{"id": message_id, "type": "Text", "contentType": "text/plain"}],
                "direction": "Inbound",
                "availability": "Alive",
                "subject": text,
                "messageStatus": "Received",
                "conversationId": conversation,
                "conversation": {"id": conversation},
            },
        }

    async def _handshake(self, address: str) -> web.Response | None:
        """RingCentral's check of a new WebHook address; an error response when it fails."""
        if self._http is None:
            raise RuntimeError("FakeRingCentral.start() has not been called")
        token = str(uuid.uuid4())
        try:
            async with self._http.post(
                address,
                headers={"Validation-Token": token},
                timeout=aiohttp.ClientTimeout(total=HANDSHAKE_TIMEOUT_SECONDS),
            ) as response:
                body = await response.read()
                status, headers = response.status, response.headers
        except (TimeoutError, aiohttp.ClientError):
            return _invalid_webhook_response()
        if status != 200:
            message = f"WebHook responds with incorrect HTTP status. HTTP status is {status}"
            return _error(400, "SUB-522", message)
        size = len(body) + sum(len(name) + len(value) + 4 for name, value in headers.items())
        if headers.get("Validation-Token") != token or size > MAX_HANDSHAKE_RESPONSE_BYTES:
            return _invalid_webhook_response()
        return None

    # OAuth -----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.grants.append(str(form.get("grant_type", "")))
        if request.headers.get("Authorization") != self._basic():
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "Invalid client credentials",
                    "errors": [{"errorCode": "OAU-146", "message": "Invalid client credentials"}],
                },
                status=401,
            )
        now = self.clock.now()
        grant = form.get("grant_type")
        if grant == JWT_GRANT and form.get("assertion") == self.jwt:
            return self._issue(now)
        refresh = str(form.get("refresh_token", ""))
        refresh_expires_at = self._refresh.get(refresh)
        if (
            grant == "refresh_token"
            and refresh_expires_at is not None
            and refresh_expires_at > now
        ):
            # RingCentral rotates refresh tokens: the used one is gone.
            del self._refresh[refresh]
            return self._issue(now)
        return web.json_response(
            {
                "error": "invalid_grant",
                "error_description": "Token not found",
                "errors": [{"errorCode": "OAU-213", "message": "Token not found"}],
            },
            status=400,
        )

    def _issue(self, now: datetime) -> web.Response:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self._access[access] = now + timedelta(seconds=self.expires_in)
        self.issued.append(access)
        self._refresh[refresh] = now + timedelta(seconds=self.refresh_token_expires_in)
        return web.json_response(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": self.expires_in,
                "refresh_token": refresh,
                "refresh_token_expires_in": self.refresh_token_expires_in,
                "scope": "SMS ReadMessages SubscriptionWebhook",
                "owner_id": EXTENSION_ID,
                "endpoint_id": secrets.token_urlsafe(8),
            }
        )

    def _basic(self) -> str:
        credentials = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(credentials).decode()

    # REST API --------------------------------------------------------------------------

    async def _api_gate(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """Record the call, check its Bearer token, and apply a queued failure."""
        body = _json(await request.read())
        self.requests.append((request.method, request.path, body, dict(request.headers)))
        authorization = request.headers.get("Authorization", "")
        if not authorization:
            return body, _error(401, "AGW-401", "Authorization header is not specified")
        if not authorization.startswith("Bearer "):
            return body, _error(401, "AGW-402", "Invalid Authorization header")
        expires_at = self._access.get(authorization.removeprefix("Bearer "))
        if expires_at is None:
            return body, _error(401, "OAU-213", "Token not found", top="TokenInvalid")
        if expires_at <= self.clock.now():
            return body, _error(401, "OAU-128", "Access token expired", top="TokenExpired")
        if self._failures:
            return body, _failure(self._failures.pop(0))
        return body, None

    async def _extension(self, request: web.Request) -> web.Response:
        _, refused = await self._api_gate(request)
        if refused is not None:
            return refused
        first, _, last = self.extension_name.partition(" ")
        return web.json_response(
            {
                "uri": self._extension_uri(),
                "id": int(EXTENSION_ID),
                "extensionNumber": "101",
                "contact": {"firstName": first, "lastName": last, "email": "store@example.com"},
                "name": self.extension_name,
                "type": "User",
                "status": "Enabled",
                "account": {
                    "uri": f"{self.base_url}/restapi/v1.0/account/{ACCOUNT_ID}",
                    "id": ACCOUNT_ID,
                },
            }
        )

    async def _phone_numbers(self, request: web.Request) -> web.Response:
        _, refused = await self._api_gate(request)
        if refused is not None:
            return refused
        try:
            page = int(request.query.get("page", "1"))
            per_page = int(request.query.get("perPage", "100"))
        except ValueError:
            return _error(400, "CMN-101", "Parameter [page] value is invalid", "page")
        if page < 1 or not 1 <= per_page <= 1000:
            return _error(400, "CMN-101", "Parameter [perPage] value is invalid", "perPage")
        numbers = list(self._numbers.values())
        start = (page - 1) * per_page
        shown = numbers[start : start + per_page]
        uri = f"{self._extension_uri()}/phone-number"
        pages = max(1, -(-len(numbers) // per_page))
        return web.json_response(
            {
                "uri": f"{uri}?page={page}&perPage={per_page}",
                "records": [self._phone_number_info(number, uri) for number in shown],
                "paging": {
                    "page": page,
                    "totalPages": pages,
                    "perPage": per_page,
                    "totalElements": len(numbers),
                    "pageStart": start,
                    "pageEnd": start + max(0, len(shown) - 1),
                },
                "navigation": {
                    "firstPage": {"uri": f"{uri}?page=1&perPage={per_page}"},
                    "lastPage": {"uri": f"{uri}?page={pages}&perPage={per_page}"},
                },
            }
        )

    def _extension_uri(self) -> str:
        return f"{self.base_url}/restapi/v1.0/account/{ACCOUNT_ID}/extension/{EXTENSION_ID}"

    def _phone_number_info(self, number: _PhoneNumber, uri: str) -> dict[str, Any]:
        return {
            "uri": f"{uri}/{number.id}",
            "id": int(number.id),
            "phoneNumber": number.number,
            "country": {
                "uri": f"{self.base_url}/restapi/v1.0/dictionary/country/1",
                "id": "1",
                "name": "United States",
                "isoCode": "US",
            },
            "location": "San Mateo, CA",
            "paymentType": "Local",
            "status": "Normal",
            "type": "VoiceFax",
            "usageType": number.usage_type,
            "features": list(number.features),
        }

    async def _send_sms(self, request: web.Request) -> web.Response:
        body, refused = await self._api_gate(request)
        if refused is not None:
            return refused
        problem = _sms_problem(body)
        if problem is not None:
            return _error(400, "CMN-101", f"Parameter [{problem}] value is invalid", problem)
        to = body["to"][0]["phoneNumber"]
        if to in self._invalid:
            message = "Parameter [to.phoneNumber] value is invalid"
            return _error(400, "CMN-101", message, "to.phoneNumber")
        message_id = str(next(_MESSAGE_IDS))
        moment = _iso(self.clock.now())
        record: dict[str, Any] = {
            "uri": (
                f"{self.base_url}/restapi/v1.0/account/{ACCOUNT_ID}/extension/{EXTENSION_ID}"
                f"/message-store/{message_id}"
            ),
            "id": message_id,
            "to": [{"phoneNumber": to}],
            "from": {"phoneNumber": body["from"]["phoneNumber"]},
            "type": "SMS",
            "creationTime": moment,
            "readStatus": "Read",
            "priority": "Normal",
            "attachments": [{"id": message_id, "type": "Text", "contentType": "text/plain"}],
            "direction": "Outbound",
            "availability": "Alive",
            "subject": body["text"],
            "messageStatus": "Queued",
            "conversationId": str(next(_MESSAGE_IDS)),
            "lastModifiedTime": moment,
        }
        if to in self._opted_out:
            record["messageStatus"] = "SendingFailed"
            record["deliveryErrorCode"] = "SMS-RC-413"
        self.messages.append(record)
        return web.json_response(record)

    async def _create_subscription(self, request: web.Request) -> web.Response:
        body, refused = await self._api_gate(request)
        if refused is not None:
            return refused
        problem = _subscription_problem(body)
        if problem is not None:
            return _error(400, "CMN-101", f"Parameter [{problem}] value is invalid", problem)
        delivery = body["deliveryMode"]
        failed = await self._handshake(delivery["address"])
        if failed is not None:
            return failed
        now = self.clock.now()
        expires_in = body.get("expiresIn", DEFAULT_EXPIRES_IN)
        subscription = FakeSubscription(
            id=str(uuid.uuid4()),
            address=delivery["address"],
            verification_token=delivery.get("verificationToken", ""),
            event_filters=list(body["eventFilters"]),
            expires_in=expires_in,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in),
        )
        self.subscriptions[subscription.id] = subscription
        return web.json_response(self._subscription_info(subscription))

    async def _renew_subscription(self, request: web.Request) -> web.Response:
        _, refused = await self._api_gate(request)
        if refused is not None:
            return refused
        now = self.clock.now()
        subscription = self.subscriptions.get(request.match_info["id"])
        if subscription is None or subscription.expires_at <= now:
            message = "Resource for parameter [subscriptionId] is not found"
            return _error(404, "CMN-102", message, "subscriptionId")
        subscription.expires_at = now + timedelta(seconds=subscription.expires_in)
        return web.json_response(self._subscription_info(subscription))

    def _subscription_info(self, subscription: FakeSubscription) -> dict[str, Any]:
        remaining = subscription.expires_at - self.clock.now()
        return {
            "uri": f"{self.base_url}/restapi/v1.0/subscription/{subscription.id}",
            "id": subscription.id,
            "creationTime": _iso(subscription.created_at),
            "status": "Active",
            "eventFilters": [
                event.replace("account/~", f"account/{ACCOUNT_ID}").replace(
                    "extension/~", f"extension/{EXTENSION_ID}"
                )
                for event in subscription.event_filters
            ],
            "expirationTime": _iso(subscription.expires_at),
            "expiresIn": max(0, int(remaining.total_seconds())),
            "deliveryMode": {
                "transportType": "WebHook",
                "address": subscription.address,
                "encryption": False,
            },
        }


def _sms_problem(body: Any) -> str | None:
    """The first invalid parameter of an SMS request, or None."""
    if not isinstance(body, dict):
        return "body"
    sender = body.get("from")
    if not isinstance(sender, dict) or not _phone(sender.get("phoneNumber")):
        return "from.phoneNumber"
    to = body.get("to")
    if not isinstance(to, list) or len(to) != 1 or not isinstance(to[0], dict):
        return "to"
    if not _phone(to[0].get("phoneNumber")):
        return "to.phoneNumber"
    text = body.get("text")
    if not isinstance(text, str) or not 0 < len(text.encode("utf-16-le")) // 2 <= 1000:
        return "text"
    return None


def _subscription_problem(body: Any) -> str | None:
    """The first invalid parameter of a subscription request, or None."""
    if not isinstance(body, dict):
        return "body"
    filters = body.get("eventFilters")
    if not isinstance(filters, list) or not filters:
        return "eventFilters"
    if not all(isinstance(event, str) and event.startswith("/restapi/") for event in filters):
        return "eventFilters"
    delivery = body.get("deliveryMode")
    if not isinstance(delivery, dict) or delivery.get("transportType") != "WebHook":
        return "deliveryMode.transportType"
    address = delivery.get("address")
    if not isinstance(address, str) or not address.startswith(("http://", "https://")):
        return "deliveryMode.address"
    if not isinstance(delivery.get("verificationToken", ""), str):
        return "deliveryMode.verificationToken"
    expires_in = body.get("expiresIn", DEFAULT_EXPIRES_IN)
    if (
        not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or not 0 < expires_in <= MAX_WEBHOOK_EXPIRES_IN
    ):
        return "expiresIn"
    return None


def _phone(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("+") and value[1:].isdigit()


def _error(
    status: int, code: str, message: str, parameter: str | None = None, *, top: str | None = None
) -> web.Response:
    entry = {"errorCode": code, "message": message}
    if parameter is not None:
        entry["parameterName"] = parameter
    body = {"errorCode": top or code, "message": message, "errors": [entry]}
    return web.json_response(body, status=status)


def _invalid_webhook_response() -> web.Response:
    return _error(400, "SUB-525", "WebHook server response is invalid")


def _failure(failure: _Failure) -> web.Response:
    if failure.status == 429:
        response = _error(429, "CMN-301", "Request rate exceeded")
    elif failure.status == 401:
        response = _error(401, "OAU-213", "Token not found", top="TokenInvalid")
    elif failure.status == 403:
        message = (
            "In order to call this API endpoint, application needs to have [ReadAccounts] "
            "permission"
        )
        response = _error(403, "CMN-408", message)
    else:
        response = _error(failure.status, "CMN-201", "Service Temporary Unavailable")
    if failure.retry_after is not None:
        response.headers["Retry-After"] = str(failure.retry_after)
    return response


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
