"""The demo shop in the sandbox: its accounts (all of them fakes), and the merchant's side in
its Shopify: orders created, fulfilled, failed in delivery and cancelled, each announced to our
app by the signed webhook Shopify would send."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from clock import Clock
from providers.sandbox.orders import is_cod, new_fulfillment, new_order, shop_time
from providers.sandbox.phones import e164
from providers.sandbox.shopify import FakeShopify

SHOP_DOMAIN = "demo-store.myshopify.com"
SHOP_NAME = "Demo Store"
SHOP_PHONE = "+918040001234"
SHOP_TOKEN = "shpat_sandbox_demo_store"
APP_KEY = "sandbox-app-key"
APP_SECRET = "sandbox-app-secret"
CALLER_ID = "08047110000"  # the ExoPhone the verification calls come from
FLOW_ID = "214512"  # the merchant's Exotel call flow (Gather, then Passthru to us)
EXOPHONE = "08047112345"  # the ExoPhone customers give a missed call to
TWILIO_NUMBER = "+918047113000"  # the number of the shop's Twilio account (calls and SMS)
SENDER_ID = "DEMOSH"
DEFAULT_CUSTOMER = "Asha Rao"

Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]


class WorldError(Exception):
    """An action the world cannot take; `status` is the HTTP status that says why."""

    status = 409
    code = "conflict"


class NotFound(WorldError):
    status = 404
    code = "not_found"


class Conflict(WorldError):
    pass


class ShopSide:
    """The merchant's actions in the demo shop's (fake) Shopify."""

    def __init__(
        self, shopify: FakeShopify, clock: Clock, deliver: Deliver, changed: Callable[[], None]
    ) -> None:
        self.shopify = shopify
        self.clock = clock
        self._deliver = deliver  # (topic, payload): the webhook to our app
        self._changed = changed
        self._order_phones: dict[int, str] = {}
        self._customers: dict[str, int] = {}
        self._numbers = itertools.count(1001)
        self._last_id = 0

    def install(self) -> None:
        """Open the demo shop with the app installed (its access token is SHOP_TOKEN)."""
        self.shopify.add_shop(
            SHOP_DOMAIN, SHOP_TOKEN, name=SHOP_NAME, phone=SHOP_PHONE, email=f"owner@{SHOP_DOMAIN}"
        )

    def continue_numbering(self, last_number: int) -> None:
        """Number new orders after `last_number` (orders kept in the database from before)."""
        self._numbers = itertools.count(max(last_number + 1, 1001))

    def _next_id(self) -> int:
        # Time-based, like Shopify's: unique across restarts of the sandbox.
        self._last_id = max(self._last_id + 1, int(self.clock.now().timestamp() * 1000))
        return self._last_id

    async def create_order(
        self, *, phone: str, amount: Decimal, payment: str, customer: str = ""
    ) -> dict[str, Any]:
        """A new order, announced to our app by orders/create."""
        number = e164(phone)
        if number is None:
            raise ValueError(f"not a phone number: {phone!r}")
        order_id = self._next_id()
        customer_id = self._customers.setdefault(number, 7_000_000_000_000 + order_id)
        payload = new_order(
            order_id=order_id,
            number=next(self._numbers),
            now=self.clock.now(),
            phone=number,
            amount=amount,
            payment=payment,
            customer_name=customer or DEFAULT_CUSTOMER,
            customer_id=customer_id,
        )
        order = self.shopify.add_order(SHOP_DOMAIN, payload)
        self._order_phones[int(order["id"])] = number
        self._changed()
        await self._deliver("orders/create", order)
        return self.order_json(order)

    async def fulfil(self, order_id: str) -> dict[str, Any]:
        """Ship the order: fulfillments/create, then orders/updated."""
        order = self._order(order_id)
        if order.get("cancelled_at"):
            raise Conflict(f"order {order['name']} is cancelled")
        if order.get("fulfillments"):
            raise Conflict(f"order {order['name']} is fulfilled already")
        now = self.clock.now()
        fulfillment = new_fulfillment(order, self._next_id(), now)
        order["fulfillments"] = [fulfillment]
        order["fulfillment_status"] = "fulfilled"
        order["updated_at"] = shop_time(now)
        self._changed()
        await self._deliver("fulfillments/create", fulfillment)
        await self._deliver("orders/updated", order)
        return self.order_json(order)

    async def fail_delivery(self, order_id: str) -> dict[str, Any]:
        """The carrier could not deliver: fulfillments/update with shipment_status failure."""
        order = self._order(order_id)
        if not order.get("fulfillments"):
            raise Conflict(f"order {order['name']} is not fulfilled: nothing is out for delivery")
        fulfillment = order["fulfillments"][-1]
        if fulfillment.get("shipment_status") == "failure":
            raise Conflict(f"the delivery of order {order['name']} has failed already")
        fulfillment["shipment_status"] = "failure"
        fulfillment["updated_at"] = shop_time(self.clock.now())
        self._changed()
        await self._deliver("fulfillments/update", fulfillment)
        return self.order_json(order)

    async def cancel(self, order_id: str) -> dict[str, Any]:
        """The merchant cancels the order in Shopify: orders/cancelled."""
        order = self._order(order_id)
        if order.get("cancelled_at"):
            raise Conflict(f"order {order['name']} is cancelled already")
        stamp = shop_time(self.clock.now())
        order["cancelled_at"] = order["updated_at"] = stamp
        order["cancel_reason"] = "customer"
        if order.get("financial_status") in ("pending", "authorized"):
            order["financial_status"] = "voided"
        self._changed()
        await self._deliver("orders/cancelled", order)
        return self.order_json(order)

    def orders(self) -> list[dict[str, Any]]:
        """The shop's orders, oldest first, as Shopify holds them (no verification status)."""
        return [self.order_json(order) for order in self.shopify.orders(SHOP_DOMAIN)]

    def order_json(self, order: dict[str, Any]) -> dict[str, Any]:
        order_id = int(order["id"])
        return {
            "id": str(order_id),
            "name": order.get("name"),
            "phone": self._order_phones.get(order_id, ""),
            "amount": order.get("total_price"),
            "currency": order.get("currency"),
            "payment": "cod" if is_cod(order) else "prepaid",
            "tags": self.shopify.tags(SHOP_DOMAIN, order_id),
            "cancelled": bool(order.get("cancelled_at")),
            "fulfillment_status": order.get("fulfillment_status"),
        }

    def _order(self, order_id: str) -> dict[str, Any]:
        try:
            return self.shopify.order(SHOP_DOMAIN, int(order_id))
        except (KeyError, ValueError):
            raise NotFound(f"no order {order_id}") from None
