"""Which provider account carries a shop's message or call, and how to reach it.

Each channel (voice, SMS, WhatsApp) is carried by the account `accounts.selected` names for
the shop: its own (Twilio, Exotel, Gupshup or RingCentral, credentials sealed) or the
platform's configured one it connected. Calls by Twilio run our own TwiML IVR; calls by
Exotel run the merchant's call flow. The account used is recorded on every message and call:
it is billed differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flows.channels.accounts import (
    PLATFORM,
    REJECTED,
    AccountWaiting,
    Clients,
    PlatformOffer,
    secrets_of,
    selected,
    shop_accounts,
)
from flows.channels.callback_urls import CallbackUrls
from flows.channels.messaging import NoRoute, Route
from flows.shops.settings import ShopSettings
from settings import Settings
from storage.crypto import SecretBox
from storage.models import ProviderAccount, Shop


@dataclass(frozen=True)
class VoiceRoute:
    """Where a verification call goes: the caller, the caller id, and where it reports."""

    provider: str
    account: str  # shop | platform
    client: Any  # a VoiceCaller
    caller_id: str
    per_second: float
    account_id: int
    flow_id: str = ""  # Exotel: the call flow with the verification's passthru applets
    answer_url: str = ""  # Twilio: our IVR's TwiML
    status_callback: str = ""

    @property
    def rate_key(self) -> str:
        return f"{self.provider}:{self.account}:{self.account_id}:calls"


def platform_offers(settings: Settings, configured: set[str]) -> dict[str, PlatformOffer]:
    """What the platform's configured accounts (`configured`: providers with a client) offer."""
    p = settings.providers
    found: dict[str, PlatformOffer] = {}
    if "twilio" in configured:
        channels = (("voice", "sms") if p.twilio.sms_from else ()) + (
            ("whatsapp",) if p.twilio.whatsapp_from else ()
        )
        numbers = tuple(n for n in (p.twilio.sms_from, p.twilio.whatsapp_from) if n)
        found["twilio"] = PlatformOffer("twilio", channels, numbers)
    if "exotel" in configured:
        found["exotel"] = PlatformOffer("exotel", ("voice", "sms"), ())
    if "gupshup" in configured:
        found["gupshup"] = PlatformOffer("gupshup", ("whatsapp",), (p.gupshup.source,))
    if "ringcentral" in configured and p.ringcentral.sms_from:
        found["ringcentral"] = PlatformOffer("ringcentral", ("sms",), (p.ringcentral.sms_from,))
    return found


def _first(numbers: list[dict[str, Any]], capability: str) -> str:
    return next((n["number"] for n in numbers if n.get(capability)), "")


class ProviderRouter:
    def __init__(
        self,
        settings: Settings,
        box: SecretBox,
        urls: CallbackUrls,
        clients: Clients,
        offers: dict[str, PlatformOffer],
    ) -> None:
        self.providers = settings.providers
        self.box = box
        self.urls = urls
        self.clients = clients
        self.offers = offers

    async def account(
        self, session: AsyncSession, shop: Shop, channel: str, via: str = ""
    ) -> ProviderAccount:
        """The account carrying `channel` for the shop; with `via` (a provider), the shop's
        account of that provider offering the channel when it has one: an answer goes back
        through the provider the customer wrote to, even when another carries the channel."""
        accounts = await shop_accounts(session, shop.id)
        account = selected(shop, accounts, channel)
        if via and (account is None or account.provider != via):
            account = (
                selected(shop, [a for a in accounts if a.provider == via], channel) or account
            )
        if account is None:
            raise NoRoute(f"no {channel} account is connected for this shop")
        if account.status == REJECTED:
            raise AccountWaiting(account.id)
        return account

    def _client(self, account: ProviderAccount) -> Any:
        if account.owner == PLATFORM:
            client = self.clients.platform(account.provider)
            if client is None:
                raise NoRoute(f"the platform's {account.provider} account is not configured")
            return client
        return self.clients.for_account(
            account.provider, account.details, secrets_of(account, self.box)
        )

    async def __call__(
        self, session: AsyncSession, shop: Shop, channel: str, via: str = ""
    ) -> Route:
        """The route of a message on `channel` ("sms" or "whatsapp"), through the provider
        `via` names when the shop has an account of it offering the channel."""
        account = await self.account(session, shop, channel, via)
        provider, owner, details = account.provider, account.owner, account.details
        own = owner != PLATFORM
        config = getattr(self.providers, provider)
        callback, sender_ids = "", False
        if provider == "twilio":
            callback = self.urls.twilio("status")
            if channel == "whatsapp":
                sender = details.get("whatsapp_number") if own else config.whatsapp_from
            else:
                sender = _first(details.get("numbers", []), "sms") if own else config.sms_from
        elif provider == "exotel":
            sender, callback = "", self.urls.exotel(shop.id, "sms-status")
            sender_ids = True
        elif provider == "gupshup":
            sender = details.get("whatsapp_number") if own else config.source
        else:
            sender = details.get("sms_number") if own else config.sms_from
        return Route(
            provider,
            owner,
            self._client(account),
            sender or "",
            config.messages_per_second,
            callback,
            account.id,
            sender_ids,
        )

    async def voice(self, session: AsyncSession, shop: Shop, settings: ShopSettings) -> VoiceRoute:
        account = await self.account(session, shop, "voice")
        ivr = settings.ivr
        numbers = account.details.get("numbers", [])
        if account.provider == "exotel":
            if not ivr.flow_id:
                raise NoRoute("calls through Exotel need ivr.flow_id (the merchant's call flow)")
            return VoiceRoute(
                "exotel",
                account.owner,
                self._client(account),
                ivr.caller_id or _first(numbers, "voice"),
                self.providers.exotel.calls_per_second,
                account.id,
                flow_id=ivr.flow_id,
                status_callback=self.urls.exotel(shop.id, "call-status"),
            )
        if account.owner == PLATFORM:
            caller_id = ivr.caller_id or self.providers.twilio.sms_from
        else:
            # The status flags a caller id that is not the account's; calls use its own then.
            voice_numbers = [n["number"] for n in numbers if n.get("voice")]
            caller_id = ivr.caller_id if ivr.caller_id in voice_numbers else voice_numbers[0]
        return VoiceRoute(
            "twilio",
            account.owner,
            self._client(account),
            caller_id,
            self.providers.twilio.calls_per_second,
            account.id,
            answer_url=self.urls.twilio("voice"),
            status_callback=self.urls.twilio("voice/status"),
        )
