"""What every provider shares: the typed error that tells the job system whether to retry,
the requests and receipts of outbound messages and calls, the sender protocols, and the live
check of an account a merchant connects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    """A provider refused or failed a request.

    `retryable` errors (5xx, timeouts, throttling) are retried by the job system, after
    `retry_after` seconds when the provider said how long to wait; the others (invalid number,
    opted out, order already cancelled) are recorded with `code` and not retried.

    `in_doubt`: the request went out and no answer came back (a timeout or a dropped
    connection after sending), so the provider may have acted on it. Reads may be retried;
    a send must not be: none of our providers takes an idempotency key for a message or a
    call, so a second request could reach the customer twice.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str = "",
        retry_after: float | None = None,
        in_doubt: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after
        self.in_doubt = in_doubt


class CheckFailed(Exception):
    """A live check refused the account: `field` names the input at fault (e.g. "auth_token",
    "numbers.1"), the message is the provider's own reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# Codes of permanent failures the flows act on (ProviderError.code).
OPTED_OUT = "OPTED_OUT"  # the customer unsubscribed (Twilio 21610, Gupshup 1012)
INVALID_NUMBER = "INVALID_NUMBER"  # not a valid / reachable number for this channel
DND = "DND"  # India do-not-disturb: no call, fall back at once
TEMPLATE_NOT_APPROVED = "TEMPLATE_NOT_APPROVED"
# WhatsApp outside the customer's 24-hour service window (Twilio 63016; Gupshup 1005; Meta
# 131047, on-premises 470): only a template that WhatsApp takes as one may go.
OUTSIDE_SESSION_WINDOW = "OUTSIDE_SESSION_WINDOW"
UNAUTHORIZED = "UNAUTHORIZED"  # the account's credentials were refused


@dataclass(frozen=True)
class SmsRequest:
    to: str  # E.164
    body: str
    sender: str  # the from number or the sender id (DLT header)
    status_callback: str = ""  # where the provider reports delivery ("" = nowhere)
    unicode: bool = False  # UCS-2 body (providers.sms decides)
    dlt_entity_id: str = ""
    dlt_template_id: str = ""
    reference: str = ""  # echoed back by providers that support it (Exotel CustomField)


@dataclass(frozen=True)
class Button:
    postback: str  # what comes back when the customer presses it
    title: str  # at most 20 characters on WhatsApp


@dataclass(frozen=True)
class WhatsAppTemplate:
    to: str  # E.164
    template_id: str
    params: tuple[str, ...] = ()
    # Postback texts for the template's quick-reply buttons, in button order.
    postbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class WhatsAppButtons:
    """A session message (inside the 24 h window) with up to three quick-reply buttons."""

    to: str  # E.164
    text: str
    buttons: tuple[Button, ...] = ()
    header: str = ""
    reference: str = ""


@dataclass(frozen=True)
class TemplateInfo:
    template_id: str
    name: str
    status: str  # APPROVED | PENDING | REJECTED | PAUSED | DISABLED ...
    text: str
    language: str = ""


@dataclass(frozen=True)
class CallRequest:
    to: str  # E.164
    caller_id: str  # the number the customer sees
    answer_url: str = ""  # Twilio: our TwiML URL
    flow_id: str = ""  # Exotel: the merchant's call flow (app) id
    status_callback: str = ""
    reference: str = ""  # the order reference (Exotel CustomField)
    timeout_seconds: int = 30


@dataclass(frozen=True)
class SendReceipt:
    provider_message_id: str
    status: str  # the provider's first status, normalised (queued, sent, ...)


@dataclass(frozen=True)
class CallReceipt:
    provider_call_id: str
    status: str


class SmsSender(Protocol):
    name: str

    async def send_sms(self, request: SmsRequest) -> SendReceipt:
        """Hand one SMS to the provider; raises ProviderError."""
        ...


class WhatsAppSender(Protocol):
    name: str

    async def send_template(self, request: WhatsAppTemplate) -> SendReceipt:
        """Send an approved template message; raises ProviderError."""
        ...

    async def send_buttons(self, request: WhatsAppButtons) -> SendReceipt:
        """Send a session message with quick-reply buttons; raises ProviderError."""
        ...

    async def template(self, template_id: str) -> TemplateInfo:
        """Look up a template's approval status and text; raises ProviderError."""
        ...


class VoiceCaller(Protocol):
    name: str

    async def place_call(self, request: CallRequest) -> CallReceipt:
        """Start a verification call; raises ProviderError (code DND when refused for DND)."""
        ...


@dataclass(frozen=True)
class NumberCapabilities:
    # As the account holds it: E.164 (Twilio, RingCentral, Exotel ExoPhones) or the WhatsApp
    # number.
    number: str
    sms: bool
    voice: bool


@dataclass(frozen=True)
class AccountCheck:
    name: str  # the account's friendly name as the provider reports it ("" if none)
    numbers: tuple[NumberCapabilities, ...]  # the numbers asked about, in the order asked


class AccountVerifier(Protocol):
    name: str

    async def check_account(self, numbers: Sequence[str]) -> AccountCheck:
        """Verify the credentials and that the account holds `numbers`, live.

        Raises CheckFailed when the provider refuses them, ProviderError when it gives no
        verdict (retryable for 5xx answers, timeouts and throttling).
        """
        ...
