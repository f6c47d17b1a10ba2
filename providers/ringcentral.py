"""RingCentral SMS (aiohttp, no SDK): JWT auth with token refresh, SMS send, inbound SMS
through a WebHook subscription (the `Validation-Token` handshake, then a verification token on
every delivery), and the live check of an app, JWT and the extension's numbers. Failures are
ProviderErrors with retry advice.

The web route answers the handshake and checks deliveries with the pure helpers below.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import phonenumbers

from clock import Clock
from providers.base import (
    INVALID_NUMBER,
    OPTED_OUT,
    UNAUTHORIZED,
    AccountCheck,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    SendReceipt,
    SmsRequest,
)
from providers.events import InboundMessage
from providers.http import Answer, exchange

TOKEN_PATH = "/restapi/oauth/token"
SMS_PATH = "/restapi/v1.0/account/~/extension/~/sms"
SUBSCRIPTION_PATH = "/restapi/v1.0/subscription"
EXTENSION_PATH = "/restapi/v1.0/account/~/extension/~"
PHONE_NUMBER_PATH = "/restapi/v1.0/account/~/extension/~/phone-number"
PHONE_NUMBER_PAGE_SIZE = 100
SMS_SENDER = "SmsSender"
CALLER_ID = "CallerId"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SMS_EVENT_FILTER = "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS"
VALIDATION_TOKEN_HEADER = "Validation-Token"
VERIFICATION_TOKEN_HEADER = "Verification-Token"
TOKEN_MARGIN = timedelta(seconds=60)
# An inbound message's id and our number are stored in columns this wide.
_MAX_ID, _MAX_NUMBER = 128, 20

# Codes in an error body (`errors[].errorCode`) or in a failed message's `deliveryErrorCode`.
OPT_OUT_CODES = frozenset({"SMS-RC-413", "SMS-UP-413", "SMS-CAR-413"})
INVALID_RECIPIENT_CODES = frozenset(
    {
        "MSG-240",  # recipient outside the countries this account can text
        "MSG-246",  # an extension number
        "MSG-247",  # a short number
        "SMS-RC-410",
        "SMS-UP-410",
        "SMS-CAR-400",
        "SMS-CAR-411",
    }
)
# Generic parameter errors that name the recipient (parameterName "to", "to.phoneNumber").
PARAMETER_CODES = frozenset({"CMN-101", "CMN-102"})
FAILED_STATUSES = frozenset({"SendingFailed", "DeliveryFailed"})
# The account-check input that a refused JWT grant blames, by OAuth error.
_GRANT_FIELDS = {
    "invalid_client": "client_secret",
    "unauthorized_client": "client_id",  # the app may not use the JWT grant
    "invalid_grant": "jwt",
}
_STATUSES = {
    "Queued": "queued",
    "Sent": "sent",
    "Delivered": "delivered",
    "SendingFailed": "failed",
    "DeliveryFailed": "failed",
}


@dataclass(frozen=True)
class Subscription:
    """A WebHook subscription: its id, when it expires, and where it delivers."""

    id: str
    expires_at: datetime
    address: str


class _Refusal(ProviderError):
    """A permanent refusal that keeps its HTTP status, RingCentral's own words (`reason`) and,
    from the token endpoint, the OAuth `error` ("invalid_client", "invalid_grant", ...)."""

    def __init__(self, text: str, *, code: str, status: int, reason: str, error: str = "") -> None:
        super().__init__(text, retryable=False, code=code)
        self.status = status
        self.reason = reason
        self.error = error


@dataclass(frozen=True)
class _Token:
    access: str
    expires_at: datetime
    refresh: str
    refresh_expires_at: datetime


class RingCentralClient:
    """Sends SMS and manages WebHook subscriptions for one RingCentral app and JWT user."""

    name = "ringcentral"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        clock: Clock,
        *,
        client_id: str,
        client_secret: str,
        jwt: str,
        api_url: str = "https://platform.ringcentral.com",
        timeout_seconds: float = 15.0,
    ) -> None:
        self._http = http
        self._clock = clock
        credentials = f"{client_id}:{client_secret}".encode()
        self._basic = "Basic " + base64.b64encode(credentials).decode()
        self._jwt = jwt
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    async def send_sms(self, request: SmsRequest) -> SendReceipt:
        """Hand one SMS to RingCentral; raises ProviderError."""
        body = {
            "from": {"phoneNumber": request.sender},
            "to": [{"phoneNumber": request.to}],
            "text": request.body,
        }
        record = await self._api("POST", SMS_PATH, body)
        message_id = record.get("id")
        if isinstance(message_id, bool) or not isinstance(message_id, str | int):
            raise ProviderError(
                "ringcentral sms: answer has no message id", retryable=False, code="BAD_RESPONSE"
            )
        status = _str(record.get("messageStatus"))
        if status in FAILED_STATUSES:
            _raise_for_delivery_error(str(message_id), _str(record.get("deliveryErrorCode")))
        return SendReceipt(str(message_id), _STATUSES.get(status, status.lower()))

    async def create_subscription(
        self, address: str, verification_token: str, expires_in: int = 604800
    ) -> Subscription:
        """Subscribe `address` to inbound SMS; RingCentral first runs the handshake on it."""
        body = {
            "eventFilters": [SMS_EVENT_FILTER],
            "deliveryMode": {
                "transportType": "WebHook",
                "address": address,
                "verificationToken": verification_token,
            },
            "expiresIn": expires_in,
        }
        return _subscription(await self._api("POST", SUBSCRIPTION_PATH, body), address)

    async def renew_subscription(self, subscription_id: str) -> Subscription:
        """Renew a subscription before it expires (RingCentral's renew call, empty body)."""
        path = f"{SUBSCRIPTION_PATH}/{quote(subscription_id, safe='')}/renew"
        return _subscription(await self._api("POST", path), "")

    async def check_account(self, numbers: Sequence[str]) -> AccountCheck:
        """The JWT user's extension name and the capabilities of `numbers`, which must all be
        numbers of that extension able to send SMS; raises CheckFailed naming the input
        RingCentral refused."""
        try:
            # A fresh grant, not a cached token: the check is of the credentials as they are now.
            self._token = await self._grant({"grant_type": JWT_GRANT, "assertion": self._jwt})
        except _Refusal as refused:
            raise CheckFailed(_grant_field(refused), refused.reason) from None
        try:
            extension = await self._api("GET", EXTENSION_PATH)
            records = await self._phone_numbers()
        except _Refusal as refused:
            # 403: the app lacks the ReadAccounts permission these reads need.
            if refused.status != 403:
                raise
            raise CheckFailed("client_id", refused.reason) from None
        features: dict[str, set[str]] = {}
        for record in records:
            number = _str(record.get("phoneNumber"))
            features.setdefault(number, set()).update(
                feature for feature in _list(record.get("features")) if isinstance(feature, str)
            )
        held = []
        for index, raw in enumerate(numbers):
            field = f"numbers.{index}"
            try:
                number = _e164(raw, field)
            except ValueError:
                raise CheckFailed(field, f"{raw} is not an E.164 phone number") from None
            if number not in features:
                raise CheckFailed(field, f"{raw} is not a number of this RingCentral extension")
            if SMS_SENDER not in features[number]:
                raise CheckFailed(field, f"{raw} cannot send SMS (no {SMS_SENDER} feature)")
            held.append(NumberCapabilities(number, sms=True, voice=CALLER_ID in features[number]))
        return AccountCheck(name=_str(extension.get("name")), numbers=tuple(held))

    async def _phone_numbers(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        page = 1
        while True:
            query = f"?perPage={PHONE_NUMBER_PAGE_SIZE}&page={page}"
            body = await self._api("GET", PHONE_NUMBER_PATH + query)
            records += [
                record for record in _list(body.get("records")) if isinstance(record, dict)
            ]
            paging = body.get("paging")
            pages = paging.get("totalPages") if isinstance(paging, dict) else None
            if not isinstance(pages, int) or page >= pages:
                return records
            page += 1

    async def _api(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        token = await self._access_token()
        response = await self._call(method, path, body, token.access)
        if response.status == 401:
            self._invalidate(token)
            token = await self._access_token()
            response = await self._call(method, path, body, token.access)
        return self._result(f"ringcentral {method} {path}", response)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, access: str
    ) -> Answer:
        headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
        return await self._request(method, path, headers=headers, json_body=body)

    async def _access_token(self) -> _Token:
        async with self._token_lock:
            now = self._clock.now()
            token = self._token
            if token is not None and now < token.expires_at - TOKEN_MARGIN:
                return token
            fresh = None
            if token is not None and token.refresh and now < token.refresh_expires_at:
                try:
                    fresh = await self._grant(
                        {"grant_type": "refresh_token", "refresh_token": token.refresh}
                    )
                except ProviderError as exc:
                    if exc.code != UNAUTHORIZED:
                        raise
            if fresh is None:
                fresh = await self._grant({"grant_type": JWT_GRANT, "assertion": self._jwt})
            self._token = fresh
            return fresh

    def _invalidate(self, token: _Token) -> None:
        # Only the token that was refused: another call may have fetched a new one meanwhile.
        # The refresh token stays usable.
        if self._token is token:
            self._token = dataclasses.replace(token, expires_at=self._clock.now())

    async def _grant(self, form: dict[str, str]) -> _Token:
        grant = form["grant_type"].rsplit(":", 1)[-1]
        try:
            response = await self._request(
                "POST",
                TOKEN_PATH,
                headers={"Authorization": self._basic, "Accept": "application/json"},
                data=form,
            )
        except ProviderError as exc:
            exc.in_doubt = False  # a token sends nothing to anyone: the send may be retried
            raise
        where = f"ringcentral token ({grant})"
        if response.status in (400, 401, 403):
            reason = _describe(response.text)
            raise _Refusal(
                f"{where}: HTTP {response.status}: {reason}",
                code=UNAUTHORIZED,
                status=response.status,
                reason=reason,
                error=_str((_json_object(response.text) or {}).get("error")),
            )
        body = self._result(where, response)
        access, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(access, str) or not _positive(expires_in):
            raise ProviderError(
                f"{where}: answer has no access token", retryable=False, code="BAD_RESPONSE"
            )
        now = self._clock.now()
        refresh = _str(body.get("refresh_token"))
        refresh_expires_in = body.get("refresh_token_expires_in")
        return _Token(
            access=access,
            expires_at=now + timedelta(seconds=expires_in),
            refresh=refresh,
            refresh_expires_at=(
                now + timedelta(seconds=refresh_expires_in)
                if _positive(refresh_expires_in)
                else datetime.max.replace(tzinfo=UTC)
            ),
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        json_body: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> Answer:
        return await exchange(
            self._http,
            method,
            self._api_url + path,
            f"ringcentral {method} {path}",
            client_timeout=self._timeout,
            headers=headers,
            json=json_body,
            data=data,
        )

    def _result(self, where: str, response: Answer) -> dict[str, Any]:
        status = response.status
        if 200 <= status < 300:
            body = _json_object(response.text)
            if body is None:
                raise ProviderError(
                    f"{where}: answer is not a JSON object", retryable=False, code="BAD_RESPONSE"
                )
            return body
        wait = _retry_after(response.retry_after, self._clock.now())
        reason = _describe(response.text)
        described = f"{where}: HTTP {status}: {reason}"
        if status == 429:
            raise ProviderError(described, retryable=True, code="THROTTLED", retry_after=wait)
        if status >= 500 or status == 408:
            raise ProviderError(described, retryable=True, code=f"HTTP_{status}", retry_after=wait)
        errors = _errors(_json_object(response.text))
        codes = {code for code, _ in errors}
        specific = [code for code, _ in errors if "-" in code]
        if codes & OPT_OUT_CODES:
            kind = OPTED_OUT
        elif codes & INVALID_RECIPIENT_CODES or any(
            code in PARAMETER_CODES and parameter.split(".")[0] == "to"
            for code, parameter in errors
        ):
            kind = INVALID_NUMBER
        elif status == 401:
            kind = UNAUTHORIZED
        else:
            kind = specific[0] if specific else f"HTTP_{status}"
        raise _Refusal(described, code=kind, status=status, reason=reason)


def needs_renewal(
    subscription: Subscription, now: datetime, margin: timedelta = timedelta(hours=24)
) -> bool:
    """True when the subscription expires within `margin` of `now` (or already has)."""
    return now >= subscription.expires_at - margin


def validation_token(headers: Mapping[str, str]) -> str | None:
    """The handshake's `Validation-Token`, which the route echoes in a 200 response header.

    RingCentral's handshake is a POST with this header and an empty body; older deliveries
    carry the verification token under the same name, so a request with a body is a delivery.
    """
    return _header(headers, VALIDATION_TOKEN_HEADER) or None


def verify_delivery(headers: Mapping[str, str], expected_token: str) -> bool:
    """True when the delivery carries the subscription's verification token."""
    if not expected_token:
        return False
    expected = expected_token.encode()
    # Newer deliveries name it Verification-Token, older ones Validation-Token.
    presented = (
        _header(headers, name) for name in (VERIFICATION_TOKEN_HEADER, VALIDATION_TOKEN_HEADER)
    )
    return any(
        hmac.compare_digest(expected, value.encode("utf-8", "replace"))
        for value in presented
        if value
    )


def parse_notification(body: Mapping[str, Any]) -> list[InboundMessage]:
    """The inbound SMS of an instant message-store notification; other events give []."""
    if not isinstance(body, Mapping):
        raise ValueError("notification: not an object")
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise ValueError("event: missing")
    if "/message-store/instant" not in event:
        return []
    message = body.get("body")
    if not isinstance(message, Mapping):
        raise ValueError("body: not an object")
    kind, direction = message.get("type"), message.get("direction")
    if not isinstance(kind, str):
        raise ValueError("body.type: missing")
    if not isinstance(direction, str):
        raise ValueError("body.direction: missing")
    if kind != "SMS" or direction != "Inbound":
        return []
    message_id = message.get("id")
    if isinstance(message_id, bool) or not isinstance(message_id, str | int) or message_id == "":
        raise ValueError("body.id: missing")
    sender = message.get("from")
    if not isinstance(sender, Mapping):
        raise ValueError("body.from: not an object")
    recipients = message.get("to")
    if not isinstance(recipients, list) or not recipients:
        raise ValueError("body.to: not a non-empty list")
    first = recipients[0]
    to = first.get("phoneNumber") if isinstance(first, Mapping) else None
    if not isinstance(to, str) or not to:
        raise ValueError("body.to[0].phoneNumber: missing")
    if len(to) > _MAX_NUMBER:
        raise ValueError(f"body.to[0].phoneNumber: longer than {_MAX_NUMBER} characters")
    if len(str(message_id)) > _MAX_ID:
        raise ValueError(f"body.id: longer than {_MAX_ID} characters")
    text = message.get("subject", "")
    if not isinstance(text, str):
        raise ValueError("body.subject: not a string")
    return [
        InboundMessage(
            provider="ringcentral",
            message_id=str(message_id),
            channel="sms",
            from_phone=_e164(sender.get("phoneNumber"), "body.from.phoneNumber"),
            to=to,
            text=text,
        )
    ]


def _grant_field(refused: _Refusal) -> str:
    """The input a refused JWT grant blames: by OAuth error, else by HTTP status."""
    if refused.error in _GRANT_FIELDS:
        return _GRANT_FIELDS[refused.error]
    return {401: "client_secret", 403: "client_id"}.get(refused.status, "jwt")


def _raise_for_delivery_error(message_id: str, code: str) -> None:
    where = f"ringcentral sms {message_id}: sending failed: {code or 'no error code'}"
    if code in OPT_OUT_CODES:
        raise ProviderError(where, retryable=False, code=OPTED_OUT)
    if code in INVALID_RECIPIENT_CODES:
        raise ProviderError(where, retryable=False, code=INVALID_NUMBER)


def _subscription(body: dict[str, Any], address: str) -> Subscription:
    subscription_id = body.get("id")
    expiration = body.get("expirationTime")
    delivery = body.get("deliveryMode")
    delivered_to = delivery.get("address") if isinstance(delivery, dict) else None
    try:
        expires_at = datetime.fromisoformat(str(expiration))
    except ValueError:
        expires_at = None
    if not isinstance(subscription_id, str) or expires_at is None or expires_at.tzinfo is None:
        raise ProviderError(
            "ringcentral subscription: answer has no id or expirationTime",
            retryable=False,
            code="BAD_RESPONSE",
        )
    return Subscription(
        id=subscription_id,
        expires_at=expires_at.astimezone(UTC),
        address=delivered_to if isinstance(delivered_to, str) else address,
    )


def _e164(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: missing")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{field}: {value!r} is not an international number") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{field}: {value!r} is not a possible number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value.strip()
    return ""


def _retry_after(value: str | None, now: datetime) -> float | None:
    # Retry-After is either delay-seconds or an HTTP date.
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _errors(body: dict[str, Any] | None) -> list[tuple[str, str]]:
    # (errorCode, parameterName) of the top-level error and of each entry of `errors`.
    if body is None:
        return []
    entries = [body, *(item for item in _list(body.get("errors")) if isinstance(item, dict))]
    return [
        (_str(entry.get("errorCode")), _str(entry.get("parameterName")))
        for entry in entries
        if entry.get("errorCode")
    ]


def _describe(text: str) -> str:
    body = _json_object(text)
    if body is None:
        return text[:200]
    parts = [
        f"{_str(item.get('errorCode'))} {_str(item.get('message'))}".strip()
        for item in _list(body.get("errors"))
        if isinstance(item, dict)
    ]
    if not parts:
        summary = body.get("message") or body.get("error_description") or body.get("error")
        parts = [_str(summary) or text[:200]]
    return "; ".join(parts)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
