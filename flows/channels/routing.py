"""Which provider account carries a shop's message or call.

The shop's own Exotel account (from its settings, seed 000) comes first; otherwise the
platform's accounts from the configuration: SMS by Twilio, Exotel, then RingCentral;
WhatsApp by Gupshup, then Twilio; calls by Twilio (our own IVR), then Exotel (the shop's
call flow). The account used is recorded on every message and call: it is billed differently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows.channels.callback_urls import CallbackUrls
from flows.channels.messaging import NoRoute, Route
from flows.shops import config as shop_config
from flows.shops.settings import ShopSettings
from settings import Settings
from storage.crypto import SecretBox
from storage.models import Shop


@dataclass(frozen=True)
class VoiceRoute:
    """Where a verification call goes: the caller, the caller id, and where it reports."""

    provider: str
    account: str  # shop | platform
    client: Any  # a VoiceCaller
    caller_id: str
    per_second: float
    flow_id: str = ""  # Exotel: the call flow with the verification's passthru applets
    answer_url: str = ""  # Twilio: our IVR's TwiML
    status_callback: str = ""

    @property
    def rate_key(self) -> str:
        return f"{self.provider}:{self.account}:calls"


@dataclass(frozen=True)
class PlatformClients:
    """The platform's configured provider clients (None when not configured)."""

    twilio: Any = None
    exotel: Any = None
    gupshup: Any = None
    ringcentral: Any = None


class ProviderRouter:
    def __init__(
        self,
        settings: Settings,
        box: SecretBox,
        urls: CallbackUrls,
        platform: PlatformClients,
        shop_exotel: Callable[[Any], Any],
    ) -> None:
        self.providers = settings.providers
        self.box = box
        self.urls = urls
        self.platform = platform
        self.shop_exotel = shop_exotel  # builds an Exotel client from a shop's credentials

    def __call__(self, shop: Shop, channel: str) -> Route:
        if channel == "sms":
            return self.sms(shop)
        if channel == "whatsapp":
            return self.whatsapp()
        raise NoRoute(f"unknown channel {channel!r}")

    def sms(self, shop: Shop) -> Route:
        credentials = shop_config.load(shop, self.box).credentials
        if credentials.account_sid and credentials.api_key and credentials.api_token:
            return Route(
                "exotel",
                "shop",
                self.shop_exotel(credentials),
                "",
                self.providers.exotel.messages_per_second,
                self.urls.exotel(shop.id, "sms-status"),
            )
        p = self.platform
        if p.twilio is not None and self.providers.twilio.sms_from:
            return Route(
                "twilio",
                "platform",
                p.twilio,
                self.providers.twilio.sms_from,
                self.providers.twilio.messages_per_second,
                self.urls.twilio("status"),
            )
        if p.exotel is not None:
            return Route(
                "exotel",
                "platform",
                p.exotel,
                "",
                self.providers.exotel.messages_per_second,
                self.urls.exotel(shop.id, "sms-status"),
            )
        if p.ringcentral is not None and self.providers.ringcentral.sms_from:
            return Route(
                "ringcentral",
                "platform",
                p.ringcentral,
                self.providers.ringcentral.sms_from,
                self.providers.ringcentral.messages_per_second,
            )
        raise NoRoute("no SMS provider account is configured for this shop or the platform")

    def whatsapp(self) -> Route:
        p = self.platform
        if p.gupshup is not None:
            return Route(
                "gupshup",
                "platform",
                p.gupshup,
                self.providers.gupshup.source,
                self.providers.gupshup.messages_per_second,
            )
        if p.twilio is not None and self.providers.twilio.whatsapp_from:
            return Route(
                "twilio",
                "platform",
                p.twilio,
                self.providers.twilio.whatsapp_from,
                self.providers.twilio.messages_per_second,
                self.urls.twilio("status"),
            )
        raise NoRoute("no WhatsApp provider account is configured for the platform")

    def voice(self, shop: Shop, settings: ShopSettings) -> VoiceRoute:
        ivr = settings.ivr
        credentials = settings.credentials
        if (
            credentials.account_sid
            and credentials.api_key.get_secret_value()
            and credentials.api_token.get_secret_value()
            and ivr.flow_id
        ):
            return VoiceRoute(
                "exotel",
                "shop",
                self.shop_exotel(credentials),
                ivr.caller_id,
                self.providers.exotel.calls_per_second,
                flow_id=ivr.flow_id,
                status_callback=self.urls.exotel(shop.id, "call-status"),
            )
        p = self.platform
        caller_id = ivr.caller_id or self.providers.twilio.sms_from
        if p.twilio is not None and caller_id:
            return VoiceRoute(
                "twilio",
                "platform",
                p.twilio,
                caller_id,
                self.providers.twilio.calls_per_second,
                answer_url=self.urls.twilio("voice"),
                status_callback=self.urls.twilio("voice/status"),
            )
        if p.exotel is not None and ivr.flow_id:
            return VoiceRoute(
                "exotel",
                "platform",
                p.exotel,
                ivr.caller_id,
                self.providers.exotel.calls_per_second,
                flow_id=ivr.flow_id,
                status_callback=self.urls.exotel(shop.id, "call-status"),
            )
        raise NoRoute("no voice account can call for this shop: set ivr.flow_id with Exotel")
