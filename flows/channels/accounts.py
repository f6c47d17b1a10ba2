"""A shop's provider accounts: connect one (its own, checked live with the provider before
anything is stored, or the platform's configured one), list, remove, choose one per channel,
and keep them healthy (a refused credential marks the account rejected; its channel's work
waits and resumes once the account is fixed).

Which account carries a channel (seed 002's table, for every channel): the merchant's choice
when it still offers the channel, else the first connected account that offers it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.jobs import provider_failure
from flows.shops.settings import ExoPhone, FieldProblem, Phone
from providers.base import AccountCheck, CheckFailed, ProviderError
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob, Deferred, JobQueue, NewJob
from storage.models import Activity, Job, ProviderAccount, Shop

_LOGGER = logging.getLogger(__name__)

CHANNELS = ("voice", "sms", "whatsapp")
PROVIDERS = ("twilio", "exotel", "gupshup", "ringcentral")
# What each provider can carry at all; an account offers what its numbers allow.
OFFERS = {
    "twilio": ("voice", "sms", "whatsapp"),
    "exotel": ("voice", "sms"),
    "gupshup": ("whatsapp",),
    "ringcentral": ("sms",),
}
SHOP, PLATFORM = "shop", "platform"
ACTIVE, REJECTED = "active", "rejected"
CHECK_JOB = "accounts.check"
CHECK_EVERY = timedelta(days=1)
# Work for a rejected account looks again this often (and at once when it is fixed).
REJECTED_WAIT_SECONDS = 300.0


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TwilioAccount(_Input):
    provider: Literal["twilio"]
    account_sid: Annotated[str, Field(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token: SecretStr
    # The numbers it calls and sends SMS from (the first voice number is the caller id).
    numbers: Annotated[list[Phone], Field(min_length=1, max_length=20)]
    whatsapp_number: Phone = ""


class ExotelAccount(_Input):
    provider: Literal["exotel"]
    account_sid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    api_key: Annotated[str, Field(min_length=1, max_length=128)]
    api_token: SecretStr
    subdomain: Literal["api.exotel.com", "api.in.exotel.com"] = "api.exotel.com"
    # ExoPhones: the caller id of calls and the number of missed calls.
    numbers: Annotated[list[ExoPhone], Field(min_length=1, max_length=20)]


class GupshupAccount(_Input):
    provider: Literal["gupshup"]
    api_key: SecretStr
    app_name: Annotated[str, Field(min_length=1, max_length=128)]
    whatsapp_number: Annotated[Phone, Field(min_length=1)]


class RingCentralAccount(_Input):
    provider: Literal["ringcentral"]
    client_id: Annotated[str, Field(min_length=1, max_length=128)]
    client_secret: SecretStr
    jwt: SecretStr
    sms_number: Annotated[Phone, Field(min_length=1)]


class PlatformAccount(_Input):
    provider: Literal["twilio", "exotel", "gupshup", "ringcentral"]
    platform: Literal[True]


OwnAccount = Annotated[
    TwilioAccount | ExotelAccount | GupshupAccount | RingCentralAccount,
    Field(discriminator="provider"),
]
_OWN = TypeAdapter(OwnAccount)
_SECRET_FIELDS = {
    "twilio": ("auth_token",),
    "exotel": ("api_token",),
    "gupshup": ("api_key",),
    "ringcentral": ("client_secret", "jwt"),
}


class AccountError(ValueError):
    """A connection was refused; `problems` name the fields (nothing was stored)."""

    def __init__(self, problems: list[FieldProblem], status: int = 422) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems
        self.status = status


class AccountWaiting(Exception):
    """The channel's account was refused by its provider: the work waits until it is fixed."""

    def __init__(self, account_id: int) -> None:
        super().__init__(waiting_reason(account_id))
        self.account_id = account_id

    def deferral(self) -> Deferred:
        return Deferred(REJECTED_WAIT_SECONDS, waiting_reason(self.account_id))


class Clients(Protocol):
    """Builds provider clients (main.py knows the concrete classes)."""

    def for_account(self, provider: str, details: dict[str, Any], secrets: dict[str, Any]) -> Any:
        """A client for a shop's own account."""
        ...

    def platform(self, provider: str) -> Any:
        """The platform's configured client, or None."""
        ...


@dataclass(frozen=True)
class PlatformOffer:
    """What the platform's configured account of one provider offers shops."""

    provider: str
    channels: tuple[str, ...]
    numbers: tuple[str, ...]  # its senders / numbers, for display


AnyAccount = PlatformAccount | TwilioAccount | ExotelAccount | GupshupAccount | RingCentralAccount


def parse(body: Any) -> AnyAccount:
    """The connect request's body as one of the input models, or AccountError."""
    if not isinstance(body, dict):
        raise AccountError([FieldProblem("body", "must be a JSON object")])
    if body.get("provider") not in PROVIDERS:
        raise AccountError([FieldProblem("provider", f"must be one of {', '.join(PROVIDERS)}")])
    model: Any = PlatformAccount if body.get("platform") is True else _OWN
    try:
        return (
            model.model_validate(body) if model is PlatformAccount else _OWN.validate_python(body)
        )
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = [str(part) for part in error["loc"] if str(part) not in PROVIDERS]
            message = error["msg"]
            if error["type"] == "value_error":
                message = str(error["ctx"]["error"])
            problems.append(FieldProblem(".".join(loc) or "body", message))
        raise AccountError(problems) from None


def _checked_numbers(account: Any) -> list[tuple[str, str]]:
    """(field, number) pairs a live check must confirm, in the order asked. A WhatsApp sender
    is not a phone number resource of the account, so no provider can confirm it here."""
    if isinstance(account, TwilioAccount | ExotelAccount):
        return [(f"numbers.{i}", n) for i, n in enumerate(account.numbers)]
    if isinstance(account, GupshupAccount):
        return [("whatsapp_number", account.whatsapp_number)]
    return [("sms_number", account.sms_number)]


def _split(account: Any, check: AccountCheck) -> tuple[dict[str, Any], dict[str, str]]:
    """The account's shown details and its secrets."""
    data = account.model_dump(mode="json", exclude={"provider"})
    secrets = {
        name: getattr(account, name).get_secret_value()
        for name in _SECRET_FIELDS[account.provider]
    }
    for name in secrets:
        data.pop(name)
    numbers = [{"number": n.number, "sms": n.sms, "voice": n.voice} for n in check.numbers]
    if isinstance(account, TwilioAccount | ExotelAccount):
        data["numbers"] = numbers[: len(account.numbers)]
    return data | {"name": check.name}, secrets


async def check_live(clients: Clients, account: Any) -> AccountCheck:
    """Ask the provider whether the account and its numbers are what the merchant says;
    AccountError (422, the field and the provider's reason; 502 if it cannot answer)."""
    pairs = _checked_numbers(account)
    details = account.model_dump(mode="json", exclude={"provider"})
    secrets = {n: getattr(account, n).get_secret_value() for n in _SECRET_FIELDS[account.provider]}
    client = clients.for_account(account.provider, details, secrets)
    try:
        return await client.check_account([number for _field, number in pairs])
    except CheckFailed as exc:
        field = exc.field
        if field.startswith("numbers."):
            index = int(field.split(".")[1])
            field = pairs[index][0] if index < len(pairs) else field
        raise AccountError([FieldProblem(field, str(exc))]) from None
    except ProviderError as exc:
        raise AccountError(
            [FieldProblem("provider", f"{account.provider} did not answer the check: {exc}")],
            status=502,
        ) from None


def offered_channels(account: ProviderAccount) -> tuple[str, ...]:
    """The channels this connected account can carry (decided when it was connected)."""
    return tuple(account.details.get("channels", ()))


def _channels(provider: str, details: dict[str, Any]) -> list[str]:
    """What a shop's own account offers, from what the live check found of its numbers."""
    numbers = details.get("numbers", [])
    has = {
        "voice": any(n.get("voice") for n in numbers),
        "sms": any(n.get("sms") for n in numbers),
        "whatsapp": bool(details.get("whatsapp_number")),
    }
    if provider == "exotel":
        has["sms"] = True  # Exotel sends from a sender id (DLT header), not from a number
    if provider in ("gupshup", "ringcentral"):
        return list(OFFERS[provider])
    return [channel for channel in OFFERS[provider] if has[channel]]


def selected(
    shop: Shop, accounts: Sequence[ProviderAccount], channel: str
) -> ProviderAccount | None:
    """The account that carries `channel` for the shop (None: the channel is unavailable)."""
    offering = sorted(
        (a for a in accounts if channel in offered_channels(a)),
        key=lambda a: (a.connected_at, a.id),
    )
    chosen = (shop.channels or {}).get(channel)
    return next((a for a in offering if a.id == chosen), offering[0] if offering else None)


async def shop_accounts(session: AsyncSession, shop_id: int) -> list[ProviderAccount]:
    rows = await session.scalars(
        select(ProviderAccount)
        .where(ProviderAccount.shop_id == shop_id)
        .order_by(ProviderAccount.connected_at, ProviderAccount.id)
    )
    return list(rows)


def public(account: ProviderAccount) -> dict[str, Any]:
    """An account as the merchant sees it: never a secret."""
    details = {k: v for k, v in account.details.items() if k != "channels"}
    return {
        "id": account.id,
        "provider": account.provider,
        "owner": account.owner,
        "status": account.status,
        "status_reason": account.status_reason,
        "channels": list(offered_channels(account)),
        "details": details,
        "connected_at": account.connected_at.isoformat(),
        "checked_at": account.checked_at.isoformat() if account.checked_at else None,
    }


async def connect(
    session: AsyncSession,
    box: SecretBox,
    now: datetime,
    shop: Shop,
    account: Any,
    check: AccountCheck | None,
    offers: dict[str, PlatformOffer],
) -> ProviderAccount:
    """Store a checked account (or the platform's, when offered); reconnecting the same
    provider replaces its credentials, keeps its place among the shop's accounts, turns it
    active and resumes the work that waited for it."""
    owner = PLATFORM if isinstance(account, PlatformAccount) else SHOP
    if owner == PLATFORM and account.provider not in offers:
        raise AccountError(
            [FieldProblem("provider", f"the platform has no {account.provider} account")]
        )
    row = await session.scalar(
        select(ProviderAccount).where(
            ProviderAccount.shop_id == shop.id,
            ProviderAccount.provider == account.provider,
            ProviderAccount.owner == owner,
        )
    )
    if owner == PLATFORM:
        offer = offers[account.provider]
        numbers = [{"number": number} for number in offer.numbers]
        details, secrets = {"channels": list(offer.channels), "numbers": numbers}, {}
    else:
        details, secrets = _split(account, check)
        details["channels"] = _channels(account.provider, details)
    if row is None:
        row = ProviderAccount(
            shop_id=shop.id, provider=account.provider, owner=owner, connected_at=now
        )
        session.add(row)
    row.details, row.secrets = details, box.seal(secrets) if secrets else ""
    row.external_id = _external_id(account)
    row.status, row.status_reason, row.checked_at, row.updated_at = ACTIVE, "", now, now
    await session.flush()
    await resume(session, row.id, now)
    session.add(
        Activity(
            shop_id=shop.id,
            kind="account_connected",
            mode=account.provider,
            detail={"account_id": row.id, "owner": owner},
            created_at=now,
        )
    )
    _LOGGER.info("shop %s connected its %s %s account", shop.id, owner, account.provider)
    return row


def _external_id(account: Any) -> str:
    for name in ("account_sid", "app_name", "client_id"):
        if hasattr(account, name):
            return getattr(account, name)
    return ""


def waiting_reason(account_id: int) -> str:
    """The jobs table's last_error of work that waits for a rejected account."""
    return f"waiting for account {account_id} (rejected)"


async def resume(session: AsyncSession, account_id: int, now: datetime) -> None:
    """Bring the work that waits for the account forward to now."""
    waiting = f"{Deferred.__name__}: {waiting_reason(account_id)}"  # as the worker records it
    await session.execute(
        update(Job).where(Job.status == "queued", Job.last_error == waiting).values(due_at=now)
    )


async def reject(session: AsyncSession, account_id: int, reason: str, now: datetime) -> None:
    """The provider refused the account's credentials: mark it, and alert the merchant once."""
    account = await session.get(ProviderAccount, account_id, with_for_update=True)
    if account is None or account.status == REJECTED:
        return
    account.status, account.status_reason = REJECTED, reason[:1000]
    account.updated_at = account.checked_at = now
    session.add(
        Activity(
            shop_id=account.shop_id,
            kind="account_rejected",
            mode=account.provider,
            detail={"account_id": account.id, "owner": account.owner, "reason": reason[:500]},
            created_at=now,
        )
    )
    _LOGGER.warning(
        "shop %s: its %s %s account was refused: %s",
        account.shop_id,
        account.owner,
        account.provider,
        reason,
    )


async def shop_of_account(db: Database, account_id: int) -> int | None:
    """The shop that connected the account (None once it is removed)."""
    async with db.sessions() as session:
        account = await session.get(ProviderAccount, account_id)
    return account.shop_id if account is not None else None


async def own_secrets(
    db: Database, box: SecretBox, provider: str, external_id: str
) -> list[tuple[int, dict[str, Any]]]:
    """(shop, secrets) of every shop's own account with this provider id (Twilio's
    AccountSid): what a callback naming the account may be signed with."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(ProviderAccount).where(
                ProviderAccount.provider == provider,
                ProviderAccount.owner == SHOP,
                ProviderAccount.external_id == external_id,
            )
        )
        return [(row.shop_id, secrets_of(row, box)) for row in rows]


def secrets_of(account: ProviderAccount, box: SecretBox) -> dict[str, Any]:
    return box.open(account.secrets) if account.secrets else {}


def check_job(account_id: int, shop_id: int, due_at: datetime) -> NewJob:
    return NewJob(
        CHECK_JOB,
        {"account_id": account_id},
        due_at=due_at,
        idempotency_key=f"{CHECK_JOB}:{account_id}:{due_at.date().isoformat()}",
        shop_id=shop_id,
    )


class AccountChecker:
    """The daily CHECK_JOB: ask the provider again whether a shop's own account works."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        box: SecretBox,
        clients: Clients,
        clock: Clock,
        on_change: Callable[[AsyncSession, int], Awaitable[None]],
    ) -> None:
        self.db = db
        self.queue = queue
        self.box = box
        self.clients = clients
        self.clock = clock
        self.on_change = on_change  # (session, account id): recomputes the shop's status

    async def handle(self, job: ClaimedJob) -> None:
        async with self.db.sessions() as session:
            account = await session.get(ProviderAccount, job.payload["account_id"])
        if account is None or account.owner != SHOP:
            return
        client = self.clients.for_account(
            account.provider, account.details, secrets_of(account, self.box)
        )
        numbers = [n["number"] for n in _numbers_of(account)]
        failure = ""
        try:
            await client.check_account(numbers)
        except CheckFailed as exc:
            failure = f"{exc.field}: {exc}"
        except ProviderError as exc:
            if exc.retryable:
                raise provider_failure(exc) from exc
            failure = str(exc)
        now = self.clock.now()
        async with self.db.transaction() as session:
            account = await session.get(ProviderAccount, account.id, with_for_update=True)
            if account is None:
                return
            if failure:
                await reject(session, account.id, failure, now)
            elif account.status == REJECTED:
                account.status, account.status_reason = ACTIVE, ""
                await resume(session, account.id, now)
            account.checked_at = now
            await self.on_change(session, account.id)
            await self.queue.enqueue(
                session, check_job(account.id, account.shop_id, now + CHECK_EVERY)
            )


def _numbers_of(account: ProviderAccount) -> Iterable[dict[str, Any]]:
    details = account.details
    if account.provider in ("twilio", "exotel"):
        yield from details.get("numbers", [])
        if details.get("whatsapp_number"):
            yield {"number": details["whatsapp_number"]}
    elif account.provider == "gupshup":
        yield {"number": details.get("whatsapp_number", "")}
    else:
        yield {"number": details.get("sms_number", "")}
