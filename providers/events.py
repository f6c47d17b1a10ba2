"""Normalised inbound events: what a provider's webhook says happened, in one vocabulary.

Providers only translate raw requests into these; they never touch storage or flows. Every
event has a `dedup_key`, unique per provider, so a repeated callback is recognised. Its text
can be stored anywhere: a NUL character or a lone surrogate (which PostgreSQL and UTF-8
refuse) is a ValueError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class _Storable:
    def __post_init__(self) -> None:
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, str) and ("\x00" in value or not value.isascii()):
                _check_text(field.name, value)


def _check_text(name: str, value: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{name}: contains a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{name}: is not valid Unicode text") from None


@dataclass(frozen=True)
class InboundMessage(_Storable):
    provider: str
    message_id: str
    channel: str  # sms | whatsapp
    from_phone: str  # E.164
    to: str  # our number or sender, as the provider gave it
    text: str
    button: str = ""  # the pressed button's postback/payload, "" for typed text
    # STOP | START | HELP when the provider handled the keyword and answered it itself
    # (Twilio's Advanced Opt-Out), else "".
    opt_out_type: str = ""
    # Where it arrived, set by the web layer that accepted it: "shop:{id}" when the callback
    # names its shop, "{provider}:platform" on the platform's shared account.
    line: str = ""
    # When we accepted it (ISO 8601, UTC), set with `line`: a keyword's decision dates from
    # then, not from when its job ran.
    received_at: str = ""

    @property
    def dedup_key(self) -> str:
        return f"in:{self.message_id}"


@dataclass(frozen=True)
class MessageStatus(_Storable):
    provider: str
    message_id: str  # the id the provider gave when we sent it
    status: str  # queued | sent | delivered | read | failed | undelivered
    error_code: str = ""
    error: str = ""

    @property
    def dedup_key(self) -> str:
        return f"status:{self.message_id}:{self.status}"


@dataclass(frozen=True)
class CallStatus(_Storable):
    provider: str
    call_id: str
    status: str  # ringing | in-progress | completed | busy | no-answer | failed | canceled
    duration_seconds: int = 0
    reference: str = ""

    @property
    def dedup_key(self) -> str:
        return f"call:{self.call_id}:{self.status}"


@dataclass(frozen=True)
class KeypadInput(_Storable):
    provider: str
    call_id: str
    digits: str  # "" when the customer pressed nothing
    reference: str = ""

    @property
    def dedup_key(self) -> str:
        return f"keys:{self.call_id}:{self.digits}"


@dataclass(frozen=True)
class MissedCall(_Storable):
    provider: str
    call_id: str
    from_phone: str  # E.164
    to: str  # the missed-call number

    @property
    def dedup_key(self) -> str:
        return f"missed:{self.call_id}"


Event = InboundMessage | MessageStatus | CallStatus | KeypadInput | MissedCall
