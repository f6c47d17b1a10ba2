"""Acting on a Shopify order: tag it, untag it, cancel it (refunding what was paid); and the
merchant's cancel and refund (of the whole order, or of chosen lines and/or an amount) with
seed 003's rules.

Each action is a durable job queued in the caller's transaction under a key per intention, so
one intention is done once however often it is asked for. The job calls Shopify, then records
the result on our order and its timeline. A transient Shopify failure is retried by the job
system; a permanent one (the order is gone from Shopify, the request refused) is recorded on
the timeline as `shopify_action_failed` and not retried.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.jobs import provider_failure
from flows.orders.reports import order_named
from providers.base import ProviderError
from providers.shopify.admin import OrderDetails, ShopifyAdmin, SuggestedRefund, line_item_gid
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, Order
from storage.shops import installed_shop

_LOGGER = logging.getLogger(__name__)

TAGS_JOB = "order.tags"
CANCEL_JOB = "order.cancel"
# Who or what asked for the action, as the timeline shows it.
MODES = frozenset({"ivr", "sms_link", "missed_call", "otp", "whatsapp", "merchant", "system"})
# Orders with money to give back when a cancel leaves the refund to us (refund=None).
PAID_STATUSES = frozenset({"paid", "partially_paid"})
_ALREADY_CANCELLED = "ALREADY_CANCELLED"  # ShopifyAdmin.cancel_order's code


async def queue_tags(
    session: AsyncSession,
    queue: JobQueue,
    order_id: int,
    shop_id: int,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    mode: str,
    key: str,
) -> bool:
    """Enqueue adding and removing tags of our order `order_id`; False if `key` was queued.

    `key` names the intention (say "verification:42:confirmed"): a second one is skipped.
    """
    added, removed = _clean(add), _clean(remove)
    if not added and not removed:
        raise ValueError("no tags to add or remove")
    payload = {"order_id": order_id, "add": added, "remove": removed, "mode": _mode(mode)}
    return await _enqueue(session, queue, TAGS_JOB, payload, shop_id, key)


async def queue_cancel(
    session: AsyncSession,
    queue: JobQueue,
    order_id: int,
    shop_id: int,
    *,
    mode: str,
    key: str,
    refund: bool | None = None,
    notify_customer: bool = False,
) -> bool:
    """Enqueue cancelling our order `order_id` in Shopify, restocking its items.

    `refund` None refunds only an order that is paid when the job runs (a cash-on-delivery
    order is not yet). Returns False if `key` was queued before.
    """
    payload = {
        "order_id": order_id,
        "mode": _mode(mode),
        "reason": "CUSTOMER",
        "restock": True,
        "notify_customer": notify_customer,
        "refund": refund,
    }
    return await _enqueue(session, queue, CANCEL_JOB, payload, shop_id, key)


async def _enqueue(
    session: AsyncSession,
    queue: JobQueue,
    kind: str,
    payload: dict[str, Any],
    shop_id: int,
    key: str,
) -> bool:
    job = NewJob(kind, payload, idempotency_key=f"{kind}:{key}", shop_id=shop_id)
    return await queue.enqueue(session, job) == 1


class OrderActions:
    """The TAGS_JOB and CANCEL_JOB handlers."""

    def __init__(self, db: Database, clock: Clock, box: SecretBox, shopify: ShopifyAdmin) -> None:
        self.db = db
        self.clock = clock
        self.box = box
        self.shopify = shopify

    async def handle_tags(self, job: ClaimedJob) -> None:
        """Remove, then add, the job's tags in Shopify, and the same on our order."""
        target = await self._target(job)
        if target is None:
            return
        order, domain, token = target
        steps = (
            ("tags_removed", job.payload["remove"], self.shopify.remove_tags, _without_tags),
            ("tags_added", job.payload["add"], self.shopify.add_tags, _with_tags),
        )
        done = []
        failure: ProviderError | None = None
        try:
            for kind, tags, call, change in steps:
                if tags:
                    await call(domain, token, order.shopify_order_id, tags)
                    done.append((kind, tags, change))
        except ProviderError as exc:
            failure = self._failure(job, exc)
        now = self.clock.now()
        async with self.db.transaction() as session:
            stored = await session.get(Order, order.id)
            if stored is not None:
                for kind, tags, change in done:
                    stored.tags = change(stored.tags, tags)
                    stored.updated_at = now
                    session.add(_activity(stored, kind, job, {"tags": tags}, now))
                _record_failure(session, stored, job, failure, now)
        _finish(failure)

    async def handle_cancel(self, job: ClaimedJob) -> None:
        """Cancel the order in Shopify (an order already cancelled counts as done)."""
        target = await self._target(job)
        if target is None:
            return
        order, domain, token = target
        payload = job.payload
        refund = payload["refund"]
        if refund is None:
            refund = order.financial_status in PAID_STATUSES
        detail: dict[str, Any] = {
            "reason": payload["reason"],
            "refund": refund,
            "restock": payload["restock"],
            "notify_customer": payload["notify_customer"],
        }
        failure: ProviderError | None = None
        try:
            await self.shopify.cancel_order(
                domain,
                token,
                order.shopify_order_id,
                reason=payload["reason"],
                refund=refund,
                restock=payload["restock"],
                notify_customer=payload["notify_customer"],
                staff_note=f"Cancelled through ordertalk ({payload['mode']})",
            )
        except ProviderError as exc:
            if exc.code == _ALREADY_CANCELLED:
                # Cancelled by the merchant, or by an earlier run that died before recording.
                detail = {"reason": payload["reason"], "already_cancelled": True}
            else:
                failure = self._failure(job, exc)
        now = self.clock.now()
        async with self.db.transaction() as session:
            stored = await session.get(Order, order.id)
            if stored is not None:
                if failure is None:
                    stored.cancelled_at = stored.cancelled_at or now
                    stored.updated_at = now
                    session.add(_activity(stored, "order_cancelled", job, detail, now))
                _record_failure(session, stored, job, failure, now)
        _finish(failure)

    async def _target(self, job: ClaimedJob) -> tuple[Order, str, str] | None:
        """The order, its shop's domain and access token; None when there is nothing to do."""
        async with self.db.sessions() as session:
            order = await session.get(Order, job.payload["order_id"])
        if order is None:
            _LOGGER.info("%s job %s: order %s is gone", job.kind, job.id, job.payload["order_id"])
            return None
        shop, token = await installed_shop(self.db, self.box, order.shop_id)
        if shop is None or not token:
            _LOGGER.info(
                "%s job %s: shop %s is uninstalled or has no token",
                job.kind,
                job.id,
                order.shop_id,
            )
            return None
        return order, shop.domain, token

    @staticmethod
    def _failure(job: ClaimedJob, exc: ProviderError) -> ProviderError:
        """`exc` if it is to be recorded; raises it for the job system while retries remain."""
        if exc.retryable and job.attempts < job.max_attempts:
            raise provider_failure(exc) from exc
        return exc


def _record_failure(
    session: AsyncSession,
    order: Order,
    job: ClaimedJob,
    failure: ProviderError | None,
    now: datetime,
) -> None:
    if failure is None:
        return
    _LOGGER.warning("%s job %s for order %s failed: %s", job.kind, job.id, order.id, failure)
    detail = {"action": job.kind, "code": failure.code, "error": str(failure)[:500]}
    session.add(_activity(order, "shopify_action_failed", job, detail, now))


def _finish(failure: ProviderError | None) -> None:
    """A transient failure on the last attempt is on the timeline; the job still dies of it."""
    if failure is not None and failure.retryable:
        raise provider_failure(failure)


def _activity(
    order: Order, kind: str, job: ClaimedJob, detail: dict[str, Any], now: datetime
) -> Activity:
    return Activity(
        shop_id=order.shop_id,
        order_id=order.id,
        kind=kind,
        mode=job.payload["mode"],
        detail=detail,
        created_at=now,
    )


# Shopify treats tags that differ only in case as one tag.
def _with_tags(current: list[Any], tags: list[str]) -> list[Any]:
    merged = list(current)
    known = {str(tag).lower() for tag in merged}
    for tag in tags:
        if tag.lower() not in known:
            merged.append(tag)
            known.add(tag.lower())
    return merged


def _without_tags(current: list[Any], tags: list[str]) -> list[Any]:
    gone = {tag.lower() for tag in tags}
    return [tag for tag in current if str(tag).lower() not in gone]


def _clean(tags: Iterable[str]) -> list[str]:
    return [tag.strip() for tag in tags if tag.strip()]


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {sorted(MODES)}")
    return mode


# The merchant's own actions (seed 003): cancel and refund, asked for in the bot or the admin
# API, carried out at once (the merchant waits for Shopify's answer) and put on the timeline
# with mode "merchant" and who asked.

CANCEL_REASONS = ("CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER")
# Money was taken, and not all of it given back.
REFUNDABLE_STATUSES = frozenset({"paid", "partially_paid", "partially_refunded"})
# Shipped to the customer, in whole or in part: our orders record no delivery events, so a
# fulfilment is taken as the goods being with the customer.
DELIVERED_STATUSES = frozenset({"fulfilled", "partial"})


class ActionRefused(ValueError):
    """Seed 003's rules refuse the action; `field` names the input, `message` the rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ActionFailed(RuntimeError):
    """Shopify refused or failed the action (recorded on the order's timeline)."""


@dataclass(frozen=True)
class RefundLine:
    """A line of the order to refund, by Shopify's line item id (numeric or gid), and how
    many of it."""

    line_item_id: str
    quantity: int


@dataclass(frozen=True)
class RefundedLine:
    """A line the refund covers, as Shopify names it."""

    line_item_id: str
    title: str
    quantity: int


@dataclass(frozen=True)
class Plan:
    """What one merchant request does to an order; the summary shown before confirming."""

    cancel: bool
    refund: bool
    reason: str
    amount: str
    currency: str
    restock: bool
    notify_customer: bool = False
    # A partial refund: part of what was paid, for these lines (if any), the order kept;
    # `refunded_before` is what Shopify had refunded of the order when it was planned.
    partial: bool = False
    lines: tuple[RefundedLine, ...] = ()
    refunded_before: str = ""

    def summary(self, name: str) -> str:
        if self.cancel and self.refund:
            what = f"Cancel {name} and refund {self.amount} {self.currency}"
        elif self.cancel:
            what = f"Cancel {name} without refund"
        else:
            what = f"Refund {self.amount} {self.currency} of {name}"
        if self.lines:
            what += " for " + ", ".join(f"{line.quantity} × {line.title}" for line in self.lines)
        details = [f"reason {self.reason}"]
        if self.cancel:
            details.append("items restocked" if self.restock else "items not restocked")
        details.append("customer notified" if self.notify_customer else "customer not notified")
        return f"{what} ({', '.join(details)})."


@dataclass(frozen=True)
class Done:
    """An action Shopify carried out, and the order's statuses it reported afterwards."""

    plan: Plan
    financial_status: str
    cancelled: bool


def plan_cancel(
    order: Order,
    *,
    reason: str,
    refund: bool | None = None,
    restock: bool = True,
    notify_customer: bool = False,
) -> Plan:
    """Seed 003's cancel: the whole order, only if not delivered, for one of Shopify's reasons;
    a paid order is refunded in the same step unless `refund` is False, an unpaid one never."""
    if order.cancelled_at is not None:
        raise ActionRefused("name", "the order is cancelled already")
    if order.fulfillment_status in DELIVERED_STATUSES:
        raise ActionRefused(
            "name",
            "a delivered order is not cancelled (only orders not delivered are); "
            "refund it once the return arrived",
        )
    if reason not in CANCEL_REASONS:
        raise ActionRefused("reason", f"must be one of: {', '.join(CANCEL_REASONS)}")
    paid = order.financial_status in REFUNDABLE_STATUSES
    if refund and not paid:
        raise ActionRefused(
            "refund", "an unpaid order is cancelled without refund: there is nothing to refund"
        )
    return Plan(
        cancel=True,
        refund=paid if refund is None else refund,
        reason=reason,
        amount=order.total_amount,
        currency=order.currency,
        restock=restock,
        notify_customer=notify_customer,
    )


def plan_refund(
    order: Order,
    *,
    returned: bool = False,
    no_return: bool = False,
    reason: str = "CUSTOMER",
    notify_customer: bool = False,
) -> Plan:
    """Seed 003's refund: only a paid order. Delivered: once the return arrived (`returned`),
    or without a return when the merchant says so (`no_return`). Paid and not delivered: the
    order is cancelled and refunded in one step."""
    delivered = check_refundable(order, returned=returned, no_return=no_return)
    if not delivered and order.cancelled_at is None:
        return plan_cancel(order, reason=reason, refund=True, notify_customer=notify_customer)
    if order.financial_status == "partially_refunded":
        raise ActionRefused(
            "amount",
            f"part of {order.name} is refunded already, so its total is more than is left; "
            "refund the rest as a partial refund (an amount)",
        )
    if reason not in CANCEL_REASONS:
        raise ActionRefused("reason", f"must be one of: {', '.join(CANCEL_REASONS)}")
    return Plan(
        cancel=False,
        refund=True,
        reason=reason,
        amount=order.total_amount,
        currency=order.currency,
        restock=False,
        notify_customer=notify_customer,
    )


def check_refundable(order: Order, *, returned: bool = False, no_return: bool = False) -> bool:
    """Seed 003's refund rules: only a paid order; a delivered one once its return arrived,
    or without a return when the merchant says so. Returns whether it was delivered."""
    if order.financial_status not in REFUNDABLE_STATUSES:
        raise ActionRefused(
            "name",
            "only a paid order is refunded; an unpaid order is cancelled without refund",
        )
    delivered = order.fulfillment_status in DELIVERED_STATUSES
    if delivered and not (returned or no_return):
        raise ActionRefused(
            "returned",
            "a delivered order is refunded after its return arrived (returned) "
            "or without a return when you say so (no_return)",
        )
    return delivered


_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


def refund_lines(details: OrderDetails, lines: Sequence[RefundLine]) -> tuple[RefundedLine, ...]:
    """The order's lines `lines` name, each asked at most once and for no more than can still
    be refunded of it."""
    known = {item.id: item for item in details.line_items}
    chosen: list[RefundedLine] = []
    for index, line in enumerate(lines):
        where = f"line_items[{index}]"
        try:
            item = known.get(line_item_gid(line.line_item_id))
        except ValueError:
            item = None
        if item is None:
            raise ActionRefused(f"{where}.id", f"{line.line_item_id} is not a line of this order")
        if any(done.line_item_id == item.id for done in chosen):
            raise ActionRefused(f"{where}.id", f"{item.title} is listed twice")
        if not 1 <= line.quantity <= item.refundable:
            raise ActionRefused(
                f"{where}.quantity",
                f"{item.refundable} of {item.title} can still be refunded"
                if item.refundable
                else f"{item.title} is refunded already",
            )
        chosen.append(RefundedLine(item.id, item.title, line.quantity))
    return tuple(chosen)


def check_unchanged(order: Order, details: OrderDetails, refunded_before: str) -> None:
    """A partial refund confirmed from a summary made when `refunded_before` was refunded: a
    refund made since (a second tap on Confirm) refuses it."""
    if not (
        _AMOUNT.fullmatch(refunded_before)
        and Decimal(refunded_before) == Decimal(details.refunded)
    ):
        raise ActionRefused(
            "refunded_before",
            f"{details.refunded} {details.currency} of {order.name} is refunded now, not "
            f"{refunded_before}: it changed since the summary; look at it again",
        )


def plan_partial_refund(
    order: Order,
    details: OrderDetails,
    lines: tuple[RefundedLine, ...],
    suggestion: SuggestedRefund,
    *,
    amount: str | None,
    reason: str = "CUSTOMER",
    notify_customer: bool = False,
) -> Plan:
    """Refund part of a paid order, the order kept: `amount`, else what Shopify suggests for
    `lines`; never more than is left to refund (`check_refundable`'s rules come first)."""
    if not lines and amount is None:
        raise ActionRefused("line_items", "choose the lines and quantities, or an amount")
    if amount is not None and (not _AMOUNT.fullmatch(amount) or Decimal(amount) <= 0):
        raise ActionRefused("amount", "must be an amount such as 250 or 250.50")
    if reason not in CANCEL_REASONS:
        raise ActionRefused("reason", f"must be one of: {', '.join(CANCEL_REASONS)}")
    currency = suggestion.currency or order.currency
    left = Decimal(suggestion.maximum)
    total = Decimal(amount if amount is not None else suggestion.amount)
    field = "amount" if amount is not None else "line_items"
    if left <= 0:
        raise ActionRefused(field, f"nothing is left to refund of {order.name}")
    if total > left:
        raise ActionRefused(
            field,
            f"{total:.2f} {currency} is more than the {left:.2f} {currency} left to refund "
            f"of {order.name}",
        )
    if total <= 0:
        raise ActionRefused(field, "these lines come to nothing to refund; give an amount")
    return Plan(
        cancel=False,
        refund=True,
        reason=reason,
        amount=f"{total:.2f}",
        currency=currency,
        restock=False,
        notify_customer=notify_customer,
        partial=True,
        lines=lines,
        refunded_before=details.refunded,
    )


class MerchantOrders:
    """Cancel and refund as the merchant asks for them: the bot's and the admin API's one use
    case. `by` is who asked (a chat's user, or "api")."""

    def __init__(self, db: Database, clock: Clock, box: SecretBox, shopify: ShopifyAdmin) -> None:
        self.db = db
        self.clock = clock
        self.box = box
        self.shopify = shopify

    async def find(self, shop_id: int, name: str) -> Order | None:
        async with self.db.sessions() as session:
            return await session.scalar(
                select(Order)
                .where(Order.shop_id == shop_id, order_named(name))
                .order_by(Order.placed_at.desc(), Order.id.desc())
                .limit(1)
            )

    async def cancel(self, shop_id: int, name: str, *, by: str, **choices: Any) -> Done:
        """`plan_cancel`'s choices; ActionRefused, LookupError (no such order), ActionFailed."""
        order = await self._order(shop_id, name)
        return await self.carry_out(order, plan_cancel(order, **choices), by)

    async def refund(
        self,
        shop_id: int,
        name: str,
        *,
        by: str,
        line_items: Sequence[RefundLine] = (),
        amount: str | None = None,
        **choices: Any,
    ) -> Done:
        """`plan_refund`'s choices; with `line_items` and/or `amount`, a partial refund
        (`quote_refund`). ActionRefused, LookupError (no such order), ActionFailed."""
        order = await self._order(shop_id, name)
        if line_items or amount is not None:
            plan = await self.quote_refund(order, line_items=line_items, amount=amount, **choices)
        else:
            plan = plan_refund(order, **choices)
        return await self.carry_out(order, plan, by)

    async def quote_refund(
        self,
        order: Order,
        *,
        line_items: Sequence[RefundLine] = (),
        amount: str | None = None,
        returned: bool = False,
        no_return: bool = False,
        reason: str = "CUSTOMER",
        notify_customer: bool = False,
        refunded_before: str | None = None,
    ) -> Plan:
        """The partial refund of `line_items` and/or `amount`, checked against seed 003's
        rules and what Shopify says is left to refund (nothing is refunded yet); with
        `refunded_before`, only if nothing was refunded since (`check_unchanged`)."""
        check_refundable(order, returned=returned, no_return=no_return)
        domain, token = await self._connected(order)
        try:
            details = await self.shopify.order_details(domain, token, order.shopify_order_id)
            if details is None:
                raise ActionFailed(f"Shopify has no order {order.name} any more")
            if refunded_before is not None:
                check_unchanged(order, details, refunded_before)
            lines = refund_lines(details, line_items)
            suggestion = await self.shopify.suggest_refund(
                domain,
                token,
                order.shopify_order_id,
                [(line.line_item_id, line.quantity) for line in lines],
            )
        except ProviderError as exc:
            raise ActionFailed(f"Shopify did not answer: {exc}") from exc
        return plan_partial_refund(
            order,
            details,
            lines,
            suggestion,
            amount=amount,
            reason=reason,
            notify_customer=notify_customer,
        )

    async def details(self, order: Order) -> OrderDetails | None:
        """The order as Shopify holds it now; None when Shopify cannot say (not connected,
        unreachable, or the order is gone)."""
        try:
            domain, token = await self._connected(order)
            return await self.shopify.order_details(domain, token, order.shopify_order_id)
        except (ActionRefused, ProviderError) as exc:
            _LOGGER.info("order %s: no live details from Shopify (%s)", order.id, exc)
            return None

    async def _connected(self, order: Order) -> tuple[str, str]:
        shop, token = await installed_shop(self.db, self.box, order.shop_id)
        if shop is None or not token:
            raise ActionRefused("shop", "the shop is not connected to Shopify (no access token)")
        return shop.domain, token

    async def carry_out(self, order: Order, plan: Plan, by: str) -> Done:
        domain, token = await self._connected(order)
        note = f"{'Cancelled' if plan.cancel else 'Refunded'} by {by} through ordertalk"
        detail: dict[str, Any] = {
            "by": by,
            "reason": plan.reason,
            "refund": plan.refund,
            "amount": plan.amount if plan.refund else None,
            "currency": plan.currency,
        }
        if plan.partial:
            detail["partial"] = True
            detail["line_items"] = [
                {"title": line.title, "quantity": line.quantity} for line in plan.lines
            ]
        try:
            if plan.cancel:
                detail["restock"] = plan.restock
                await self.shopify.cancel_order(
                    domain,
                    token,
                    order.shopify_order_id,
                    reason=plan.reason,
                    refund=plan.refund,
                    restock=plan.restock,
                    notify_customer=plan.notify_customer,
                    staff_note=note,
                )
            else:
                detail["refund_id"] = await self.shopify.refund_order(
                    domain,
                    token,
                    order.shopify_order_id,
                    amount=plan.amount,
                    currency=plan.currency,
                    note=note,
                    notify=plan.notify_customer,
                    lines=[(line.line_item_id, line.quantity) for line in plan.lines],
                )
            after = await self.shopify.get_order(domain, token, order.shopify_order_id)
        except ProviderError as exc:
            await self._record(order, "shopify_action_failed", detail | {"error": str(exc)[:500]})
            raise ActionFailed(f"Shopify did not do it: {exc}") from exc
        financial = str((after or {}).get("financial_status") or order.financial_status)
        cancelled = plan.cancel or order.cancelled_at is not None
        detail["financial_status"] = financial
        kind = "order_cancelled" if plan.cancel else "order_refunded"
        await self._record(order, kind, detail, financial=financial, cancelled=plan.cancel)
        return Done(plan, financial, cancelled)

    async def _order(self, shop_id: int, name: str) -> Order:
        order = await self.find(shop_id, name)
        if order is None:
            raise LookupError(f"no order {name} in this shop")
        return order

    async def _record(
        self,
        order: Order,
        kind: str,
        detail: dict[str, Any],
        *,
        financial: str | None = None,
        cancelled: bool = False,
    ) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            stored = await session.get(Order, order.id)
            if stored is None:
                return
            if financial is not None:
                stored.financial_status = financial
            if cancelled:
                stored.cancelled_at = stored.cancelled_at or now
            stored.updated_at = now
            session.add(
                Activity(
                    shop_id=stored.shop_id,
                    order_id=stored.id,
                    kind=kind,
                    mode="merchant",
                    detail=detail,
                    created_at=now,
                )
            )
