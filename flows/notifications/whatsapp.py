"""Whether a WhatsApp notification's template can be used now, asked live of the shop's
WhatsApp account (seed 002): it must be APPROVED there, and the platform's account also needs
the merchant's acceptance of its per-message charge. Answers are kept a few minutes per
account and template, so a flood of notifications asks Gupshup once, and a template paused
at Gupshup is seen within minutes (its notifications then fall back to SMS)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import PLATFORM, AccountWaiting
from flows.channels.messaging import NoRoute
from providers.base import ProviderError
from storage.models import Shop

APPROVED = "APPROVED"
REMEMBERED = timedelta(minutes=5)
CHARGE_NOT_ACCEPTED = (
    "the platform's WhatsApp account charges per message: the merchant has not accepted it"
)


@dataclass(frozen=True)
class TemplateState:
    """`problem` is "" when the template can be sent; else why not (the provider's status)."""

    account: str  # shop | platform | "" (none)
    status: str
    text: str = ""
    problem: str = ""


class TemplateChecks:
    def __init__(self, router: Any, clock: Clock) -> None:
        self.router = router  # ProviderRouter: the route of the shop's WhatsApp channel
        self.clock = clock
        self._seen: dict[tuple[int, str], tuple[datetime, TemplateState]] = {}

    async def check(
        self, session: AsyncSession, shop: Shop, template_id: str, charge_accepted: bool
    ) -> TemplateState:
        """The template's state; a provider that cannot answer now raises (the job retries)."""
        try:
            route = await self.router(session, shop, "whatsapp")
        except (NoRoute, AccountWaiting) as exc:
            return TemplateState("", "NO_ROUTE", problem=str(exc))
        if route.account == PLATFORM and not charge_accepted:
            return TemplateState(route.account, "CHARGE_NOT_ACCEPTED", problem=CHARGE_NOT_ACCEPTED)
        key = (route.account_id, template_id)
        now = self.clock.now()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < REMEMBERED:
            return seen[1]
        state = await template_state(route.client, template_id, route.account)
        self._seen[key] = (now, state)
        return state


async def template_state(client: Any, template_id: str, account: str) -> TemplateState:
    """Ask the provider; a refusal (no such template) is a state, an outage raises."""
    try:
        found = await client.template(template_id)
    except ProviderError as exc:
        if exc.retryable:
            raise
        return TemplateState(account, exc.code or "NOT_FOUND", problem=str(exc))
    status = found.status.upper()
    if status != APPROVED:
        problem = f"the template {template_id} is {status} at the provider, not APPROVED"
        return TemplateState(account, status, found.text, problem)
    return TemplateState(account, status, found.text)
