"""What the customer does without a phone call: open the verification link and confirm,
cancel or ask for a callback, or enter (and ask again for) an OTP — on the hosted page or
from the checkout's post-purchase extension, for an order the extension's buyer placed.
Each answer is one event of the order's verification, in one transaction with the row
locked, so two concurrent entries count twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.verification.customer_keys import CustomerKeys
from flows.verification.flow import (
    CONFIRMED,
    PENDING,
    UNVERIFIED,
    Answer,
    OtpEntered,
    OtpResend,
    VState,
    options,
    otp_expired,
    otp_resend_wait,
)
from flows.verification.ivr import language_of
from flows.verification.runtime import Context, Verifier
from storage.db import Database
from storage.models import Customer, Order, Shop, Verification


@dataclass(frozen=True)
class PageView:
    """The order as its verification page shows it."""

    kind: str  # link | otp
    language: str
    shop_name: str
    order_name: str
    amount: str
    city: str
    items: tuple[tuple[str, int], ...]  # (title, quantity)
    status: str  # the verification status
    decided_by: str
    actions: tuple[str, ...]  # the buttons offered while the order awaits an answer
    contact_phone: str = ""  # the shop's, E.164; "" when the merchant gave none
    otp_length: int = 0
    otp_resend_wait: float = 0.0


@dataclass(frozen=True)
class OtpOutcome:
    """What became of an OTP entry or resend request."""

    result: str  # verified | wrong | locked | expired | already_verified | not_pending
    #              | resent | too_early | resend_limit
    attempts_left: int = 0
    retry_after: float = 0.0


class CustomerDesk:
    def __init__(self, db: Database, clock: Clock, verifier: Verifier, keys: CustomerKeys) -> None:
        self.db = db
        self.clock = clock
        self.verifier = verifier
        self.keys = keys

    async def view(self, token: str) -> PageView | None:
        """The page of a link token (TokenError when forged or expired; None when gone)."""
        claim = self.keys.read_link(token, self.clock.now())
        async with self.db.sessions() as session:
            ctx = await self.verifier.load(session, claim.verification_id)
            return None if ctx is None else self._page(ctx)

    async def act(self, token: str, action: str) -> PageView | None:
        """Press a button of the link page; on a decided order nothing changes."""
        claim = self.keys.read_link(token, self.clock.now())
        async with self.db.transaction() as session:
            ctx = await self.verifier.load(session, claim.verification_id)
            if ctx is None:
                return None
            if action in self._actions(ctx, ctx.state):
                await self.verifier.apply(session, ctx, Answer(action, "sms_link"))
            return self._page(ctx)

    async def enter_on_page(self, token: str, code: str) -> tuple[PageView, OtpOutcome] | None:
        claim = self.keys.read_link(token, self.clock.now())
        async with self.db.transaction() as session:
            ctx = await self.verifier.load(session, claim.verification_id)
            if ctx is None:
                return None
            outcome = await self._enter(session, ctx, code)
            return self._page(ctx), outcome

    async def resend_on_page(self, token: str) -> tuple[PageView, OtpOutcome] | None:
        claim = self.keys.read_link(token, self.clock.now())
        async with self.db.transaction() as session:
            ctx = await self.verifier.load(session, claim.verification_id)
            if ctx is None:
                return None
            outcome = await self._resend(session, ctx)
            return self._page(ctx), outcome

    async def enter(
        self, shop_domain: str, buyer: str, order_ref: str, code: str
    ) -> OtpOutcome | None:
        """An OTP from the checkout extension for an order `buyer` (Shopify's customer id)
        placed; None when the shop has no such order or it is another customer's."""
        async with self.db.transaction() as session:
            ctx = await self._by_order(session, shop_domain, buyer, order_ref)
            return None if ctx is None else await self._enter(session, ctx, code)

    async def resend(self, shop_domain: str, buyer: str, order_ref: str) -> OtpOutcome | None:
        async with self.db.transaction() as session:
            ctx = await self._by_order(session, shop_domain, buyer, order_ref)
            return None if ctx is None else await self._resend(session, ctx)

    async def _by_order(
        self, session: AsyncSession, shop_domain: str, buyer: str, order_ref: str
    ) -> Context | None:
        if not buyer:
            return None
        ref = order_ref.strip()
        verification_id = await session.scalar(
            select(Verification.id)
            .join(Order, Verification.order_id == Order.id)
            .join(Shop, Order.shop_id == Shop.id)
            .join(Customer, Order.customer_id == Customer.id)
            .where(
                Shop.domain == shop_domain.strip().lower(),
                Customer.shopify_customer_id == buyer,
                or_(
                    Order.shopify_order_id == ref,
                    Order.name == ref,
                    Order.name == f"#{ref.lstrip('#')}",
                ),
            )
            .limit(1)
        )
        return (
            None if verification_id is None else await self.verifier.load(session, verification_id)
        )

    async def _enter(self, session: AsyncSession, ctx: Context, code: str) -> OtpOutcome:
        before, now = ctx.state, self.clock.now()
        if before.status == CONFIRMED and before.decided_by == "otp":
            return OtpOutcome("already_verified")
        if "otp" not in before.methods:
            return OtpOutcome("not_pending")
        if before.status == UNVERIFIED:
            return OtpOutcome("locked")
        if before.status != PENDING:
            return OtpOutcome("not_pending")
        if otp_expired(before, now):
            return OtpOutcome("expired", self._attempts_left(ctx, before))
        code_hash = self.keys.otp_hash(ctx.row.id, code, before.otp_hash)
        after = await self.verifier.apply(session, ctx, OtpEntered(code_hash))
        if after.status == CONFIRMED:
            return OtpOutcome("verified")
        if after.status == UNVERIFIED:
            return OtpOutcome("locked")
        return OtpOutcome("wrong", self._attempts_left(ctx, after))

    async def _resend(self, session: AsyncSession, ctx: Context) -> OtpOutcome:
        before, now = ctx.state, self.clock.now()
        if "otp" not in before.methods or before.status != PENDING:
            return OtpOutcome("already_verified" if before.decided_by == "otp" else "not_pending")
        wait = otp_resend_wait(before, ctx.settings, now)
        if wait > 0:
            return OtpOutcome("too_early", retry_after=wait)
        issue = self.keys.new_otp(ctx.row.id, ctx.settings.otp.code_length)
        after = await self.verifier.apply(session, ctx, OtpResend(issue))
        if after.otp_resends == before.otp_resends:
            return OtpOutcome("resend_limit")
        return OtpOutcome("resent", retry_after=float(ctx.settings.otp.resend_after_seconds))

    def _attempts_left(self, ctx: Context, state: VState) -> int:
        return max(0, ctx.settings.otp.wrong_attempts_limit + 1 - state.otp_wrong)

    def _actions(self, ctx: Context, state: VState) -> tuple[str, ...]:
        if state.status not in (PENDING, UNVERIFIED) or "sms_link" not in state.methods:
            return ()
        return tuple(options("sms_link", ctx.settings))

    def _page(self, ctx: Context) -> PageView:
        state, order, settings = ctx.state, ctx.order, ctx.settings
        items: list[Any] = order.items or []
        return PageView(
            kind="otp" if "otp" in state.methods else "link",
            language=language_of(ctx.shop, settings),
            shop_name=ctx.shop.name or ctx.shop.domain,
            order_name=order.name,
            amount=self.verifier.amount(ctx),
            city=order.city,
            items=tuple((str(i.get("title", "")), int(i.get("quantity", 1))) for i in items),
            status=state.status,
            decided_by=state.decided_by,
            actions=self._actions(ctx, state),
            contact_phone=settings.contact_phone,
            otp_length=settings.otp.code_length,
            otp_resend_wait=otp_resend_wait(state, settings, self.clock.now()),
        )
