"""The merchant's use case for WhatsApp notifications, shared by the admin API and the bot:
enable an event's notification (its template checked live with the shop's WhatsApp account:
APPROVED, its variables all mapped, the platform's charge accepted) or disable it, and the
same check for a whole settings document that newly enables one (seed 002)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from clock import Clock
from flows.notifications import preview
from flows.notifications.events import EVENTS
from flows.notifications.templates import fill_whatsapp
from flows.notifications.whatsapp import TemplateChecks, TemplateState
from flows.shops import config as shop_config
from flows.shops.settings import (
    SettingsError,
    ShopSettings,
    WhatsAppNotice,
    template_variables,
    validate_settings,
)
from storage.crypto import SecretBox
from storage.db import Database
from storage.models import Shop

# Why an enabling is refused; each names the field of the choice to change.
INVALID = "invalid"
REQUIRED = "template_required"
NO_ACCOUNT = "no_whatsapp_account"
CHARGE = "charge_not_accepted"
NOT_USABLE = "template_not_usable"
MISMATCH = "template_mismatch"
CHARGE_FIELD = "accept_charge"


@dataclass(frozen=True)
class WhatsAppChoice:
    """An event's WhatsApp notification as the merchant sets it."""

    active: bool
    template_id: str = ""
    params: tuple[str, ...] = ()  # the token of each template variable, {{1}} first
    fallback_to_sms: bool = True
    accept_charge: bool = False  # the platform account's per-message charge


class Refused(ValueError):
    """The notification cannot be enabled: `code`, the choice's `field` to change, and the
    provider's status of the template when it is the reason."""

    def __init__(self, code: str, message: str, field: str = "", provider_status: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.provider_status = provider_status
        self.event = ""

    def at(self, event: str) -> Refused:
        self.event = event
        return self

    def document_field(self) -> str:
        """The refused field's path in the settings document ("" when none is to blame)."""
        if self.field == CHARGE_FIELD:
            return "notifications.whatsapp_charge_accepted"
        if self.field:
            return f"notifications.events.{self.event}.whatsapp.{self.field}"
        return ""


@dataclass(frozen=True)
class Chosen:
    settings: ShopSettings
    template: TemplateState | None  # None when disabled
    preview: str  # the template's text with the sample values


Router = Callable[..., Awaitable[Any]]  # flows.channels.routing.ProviderRouter


class WhatsAppNotices:
    def __init__(self, db: Database, box: SecretBox, clock: Clock, router: Router) -> None:
        self.db = db
        self.box = box
        self.clock = clock
        self.router = router

    async def choose(self, shop_id: int, event: str, choice: WhatsAppChoice) -> Chosen:
        """Enable or disable `event`'s notification and save it: Refused, or SettingsError
        (nothing saved); a provider that cannot answer raises ProviderError."""
        if event not in EVENTS:
            raise ValueError(f"no journey event {event!r}")
        shop = await self._shop(shop_id)
        document = shop_config.stored(shop).document()
        notifications = document["notifications"]
        accepted = notifications["whatsapp_charge_accepted"] or choice.accept_charge
        template_id = choice.template_id.strip()
        notice = _notice(choice, template_id)
        checks = TemplateChecks(self.router, self.clock)  # asked now, not remembered
        state = await self._usable(checks, shop, notice, accepted) if choice.active else None
        notifications["whatsapp_charge_accepted"] = accepted
        notifications["events"][event]["whatsapp"] = notice.model_dump(mode="json")
        saved = await shop_config.save(self.db, self.box, self.clock, shop_id, document)
        filled = ""
        if state is not None:
            values = preview.values_for_preview(None)
            filled = fill_whatsapp(state.text, [values.get(token, "") for token in notice.params])
        return Chosen(saved, state, filled)

    async def check_document(self, shop_id: int, document: Any) -> None:
        """Refused (with its event) when `document` newly enables a WhatsApp notification
        that cannot be used; a document the settings' rules refuse is left to them."""
        shop = await self._shop(shop_id)
        try:
            after = validate_settings(document, country=shop.country).notifications
        except SettingsError:
            return
        before = shop_config.stored(shop).notifications
        checks = TemplateChecks(self.router, self.clock)  # one answer per template
        for event in EVENTS:
            notice = after.notice(event).whatsapp
            if notice.active and _changed(before.notice(event).whatsapp, notice):
                try:
                    await self._usable(checks, shop, notice, after.whatsapp_charge_accepted)
                except Refused as refused:
                    raise refused.at(event) from None

    async def _shop(self, shop_id: int) -> Shop:
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            assert shop is not None
            return shop

    async def _usable(
        self, checks: TemplateChecks, shop: Shop, notice: WhatsAppNotice, charge_accepted: bool
    ) -> TemplateState:
        if not notice.template_id:
            raise Refused(REQUIRED, "required to enable", "template_id")
        async with self.db.sessions() as session:
            state = await checks.check(session, shop, notice.template_id, charge_accepted)
        if state.status == "NO_ROUTE":
            raise Refused(NO_ACCOUNT, state.problem)
        if state.status == "CHARGE_NOT_ACCEPTED":
            raise Refused(CHARGE, state.problem, CHARGE_FIELD)
        if state.problem:
            raise Refused(NOT_USABLE, state.problem, "template_id", state.status)
        variables = template_variables(state.text)
        if variables != len(notice.params):
            message = (
                f"the template {notice.template_id} has {variables} variable(s) and "
                f"{len(notice.params)} are mapped: map each of its variables, in order, to a token"
            )
            raise Refused(MISMATCH, message, "params")
        return state


def _notice(choice: WhatsAppChoice, template_id: str) -> WhatsAppNotice:
    """The choice as the settings document holds it; Refused naming a value it refuses."""
    try:
        return WhatsAppNotice.model_validate(
            {
                "active": choice.active,
                "template_id": template_id,
                "params": list(choice.params),
                "fallback_to_sms": choice.fallback_to_sms,
            }
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "body"
        raise Refused(INVALID, f"{field}: {error['msg']}", field) from None


def _changed(before: WhatsAppNotice, after: WhatsAppNotice) -> bool:
    return (
        not before.active
        or before.template_id != after.template_id
        or before.params != after.params
    )
