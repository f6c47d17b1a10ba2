"""The merchant's use cases for provider accounts, shared by the admin API, the CLI and the
bot: connect (checked live first), list, remove, choose the account of a channel, read the
setup list; and what the send and call jobs do when a provider refuses an account.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from clock import Clock
from flows.channels import accounts
from flows.channels.accounts import (
    CHANNELS,
    CHECK_EVERY,
    PLATFORM,
    SHOP,
    AccountError,
    Clients,
    PlatformAccount,
    PlatformOffer,
    check_job,
    offered_channels,
    secrets_of,
    selected,
    shop_accounts,
)
from flows.channels.callback_urls import CallbackUrls
from flows.channels.ringcentral_subscription import check_now, subscriptions
from flows.channels.setup import setup_list
from flows.notifications.shipments import shipments_url
from flows.notifications.template_recheck import recheck_job
from flows.shops import config as shop_config
from flows.shops.settings import FieldProblem, template_variables
from providers.base import ProviderError
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import JobQueue
from storage.models import ProviderAccount, Shop


class AccountDesk:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        box: SecretBox,
        clock: Clock,
        clients: Clients,
        offers: dict[str, PlatformOffer],
        urls: CallbackUrls,
    ) -> None:
        self.db = db
        self.queue = queue
        self.box = box
        self.clock = clock
        self.clients = clients
        self.offers = offers
        self.urls = urls

    async def listing(self, shop_id: int) -> dict[str, Any]:
        """The shop's accounts, the account of each channel, and the platform's offers."""
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            rows = await shop_accounts(session, shop_id)
        assert shop is not None
        listed = setup_list(shop, shop_config.load(shop), rows, self.urls, [], {}, "")
        return {
            "accounts": [accounts.public(row) for row in rows],
            "channels": listed["channels"],
            "platform": [
                {"provider": offer.provider, "channels": list(offer.channels)}
                for offer in self.offers.values()
            ],
        }

    async def connect(self, shop_id: int, body: Any) -> dict[str, Any]:
        """Connect an account; AccountError names the field (nothing stored)."""
        account = accounts.parse(body)
        check = None
        if not isinstance(account, PlatformAccount):
            check = await accounts.check_live(self.clients, account)
        now = self.clock.now()
        async with self.db.transaction() as session:
            shop = await session.get(Shop, shop_id, with_for_update=True)
            assert shop is not None
            row = await accounts.connect(session, self.box, now, shop, account, check, self.offers)
            if row.owner == SHOP:
                await self.queue.enqueue(session, check_job(row.id, shop.id, now + CHECK_EVERY))
            if row.owner == SHOP and row.provider == "gupshup":
                # Its WhatsApp templates are re-checked hourly from now on.
                await self.queue.enqueue(session, recheck_job(shop.id, now, next_slot=False))
            if row.owner == SHOP and row.provider == "ringcentral":
                # Its inbound SMS come through a webhook subscription of its own.
                await self.queue.enqueue(session, check_now(now, row.id))
            await shop_config.refresh_status(session, shop, self.box)
            return accounts.public(row)

    async def heirs(self, shop_id: int, account_id: int) -> dict[str, dict[str, Any] | None]:
        """Per channel the account carries now, the account that carries it once it is removed
        (None: the channel is left without one)."""
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            rows = await shop_accounts(session, shop_id)
        assert shop is not None
        left = [row for row in rows if row.id != account_id]
        found = {}
        for channel in CHANNELS:
            carrier = selected(shop, rows, channel)
            if carrier is not None and carrier.id == account_id:
                heir = selected(shop, left, channel)
                found[channel] = accounts.public(heir) if heir else None
        return found

    async def remove(self, shop_id: int, account_id: int) -> bool:
        async with self.db.transaction() as session:
            shop = await session.get(Shop, shop_id, with_for_update=True)
            row = await self._account(session, shop_id, account_id)
            if shop is None or row is None:
                return False
            await session.delete(row)
            await session.flush()
            await shop_config.refresh_status(session, shop, self.box)
        return True

    async def choose(self, shop_id: int, choices: Any) -> dict[str, Any]:
        """Set the account of one or more channels ({"voice": account id, ...})."""
        if not isinstance(choices, dict) or not choices:
            raise AccountError([FieldProblem("body", "must map a channel to an account id")])
        async with self.db.transaction() as session:
            shop = await session.get(Shop, shop_id, with_for_update=True)
            assert shop is not None
            rows = {row.id: row for row in await shop_accounts(session, shop_id)}
            problems = []
            for channel, account_id in choices.items():
                row = rows.get(account_id) if type(account_id) is int else None
                if channel not in CHANNELS:
                    problems.append(FieldProblem(channel, "must be voice, sms or whatsapp"))
                elif row is None:
                    problems.append(FieldProblem(channel, "must be the id of a connected account"))
                elif channel not in offered_channels(row):
                    problems.append(
                        FieldProblem(channel, f"the {row.provider} account cannot carry {channel}")
                    )
            if problems:
                raise AccountError(problems)
            shop.channels = {**(shop.channels or {}), **choices}
            shop.updated_at = self.clock.now()
            await shop_config.refresh_status(session, shop, self.box)
        return (await self.listing(shop_id))["channels"]

    async def setup(self, shop_id: int) -> dict[str, Any]:
        """What to paste where, per account, and what is still missing."""
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            assert shop is not None
            rows = await shop_accounts(session, shop_id)
            problems = await shop_config.problems(session, shop, self.box)
            live = await subscriptions(
                session, [r.id for r in rows if r.provider == "ringcentral" and r.owner == SHOP]
            )
        shipments = shipments_url(self.urls.public_url, self.urls.signing_key, shop_id)
        return setup_list(shop, shop_config.load(shop), rows, self.urls, problems, live, shipments)

    async def template_variables(self, shop_id: int, template_id: str) -> int | None:
        """How many variables a WhatsApp template of the shop's WhatsApp account has; None
        when no account can tell (none connected, the provider unreachable, no such
        template)."""
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            assert shop is not None
            account = selected(shop, await shop_accounts(session, shop_id), "whatsapp")
        if account is None:
            return None
        if account.owner == PLATFORM:
            client = self.clients.platform(account.provider)
        else:
            secrets = secrets_of(account, self.box)
            client = self.clients.for_account(account.provider, account.details, secrets)
        if client is None:
            return None
        try:
            found = await client.template(template_id)
        except ProviderError:
            return None
        return template_variables(found.text)

    async def rejected(self, account_id: int, reason: str) -> None:
        """A provider refused the account mid-run: mark it, alert, and update the shop."""
        async with self.db.transaction() as session:
            await accounts.reject(session, account_id, reason, self.clock.now())
            await self.refresh(session, account_id)

    async def refresh(self, session: Any, account_id: int) -> None:
        row = await session.get(ProviderAccount, account_id)
        shop = await session.get(Shop, row.shop_id, with_for_update=True) if row else None
        if shop is not None:
            await shop_config.refresh_status(session, shop, self.box)

    async def _account(self, session: Any, shop_id: int, account_id: int) -> Any:
        return await session.scalar(
            select(ProviderAccount).where(
                ProviderAccount.id == account_id, ProviderAccount.shop_id == shop_id
            )
        )
