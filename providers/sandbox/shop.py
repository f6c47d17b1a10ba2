"""The demo shop in the sandbox: its accounts (all of them fakes), the WhatsApp templates its
Gupshup app holds, and the merchant's side in its Shopify: orders created, marked along their
journey (packed, shipped, out for delivery, delivered, failed delivery) and cancelled.

Each marking reaches our app as the party that would report it: Shopify's signed webhooks for
what a Shopify fulfillment records (shipped: fulfillments/create, orders/fulfilled and
orders/updated; out for delivery, delivered and a failure without a reason: fulfillments/update
with its `shipment_status`), and the carrier's (or fulfilment platform's) shipment webhook for
what Shopify has no place for: packed, before any fulfillment exists, and a failed delivery with
the carrier's reason."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clock import Clock
from providers.sandbox.orders import (
    is_cod,
    new_fulfillment,
    new_order,
    sample_shipment,
    shop_time,
)
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

STORE_URL = f"https://{SHOP_DOMAIN}/"

Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]
Report = Callable[[dict[str, Any]], Awaitable[None]]

# The markings of an order's journey, and who reports each to our app.
PACKED, SHIPPED, OUT_FOR_DELIVERY, DELIVERED, FAILED = (
    "packed",
    "shipped",
    "out_for_delivery",
    "delivered",
    "failed_delivery",
)
SHOPIFY, CARRIER = "shopify", "carrier"


@dataclass(frozen=True)
class DemoTemplate:
    """An APPROVED WhatsApp template of the demo's Gupshup app for one journey event, with
    the token the merchant maps to each of its variables ({{1}} first)."""

    event: str
    template_id: str
    element_name: str
    text: str
    params: tuple[str, ...]
    buttons: tuple[dict[str, str], ...] = ()

    def json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "template_id": self.template_id,
            "name": self.element_name,
            "params": list(self.params),
        }


_TALK = {"type": "QUICK_REPLY", "text": "Talk to us"}
_STORE = {"type": "URL", "text": "Visit the store", "url": STORE_URL}
DEMO_TEMPLATES = (
    DemoTemplate(
        "order_confirmed",
        "5d0c8a3e-1f6b-4f0e-9a51-0c1e7a2b9d01",
        "demo_order_confirmed",
        "Hi {{1}}, your {{2}} order {{3}} of {{4}} is confirmed. We will tell you when it ships.",
        ("firstname", "shop", "ordername", "orderamount"),
        (_STORE,),
    ),
    DemoTemplate(
        PACKED,
        "5d0c8a3e-1f6b-4f0e-9a51-0c1e7a2b9d02",
        "demo_order_packed",
        "Hi {{1}}, your {{2}} order {{3}} is packed and will be on its way soon.",
        ("firstname", "shop", "ordername"),
        (_TALK,),
    ),
    DemoTemplate(
        SHIPPED,
        "5d0c8a3e-1f6b-4f0e-9a51-0c1e7a2b9d03",
        "demo_order_shipped",
        "Hi {{1}}, your {{2}} order {{3}} has shipped with {{4}} (AWB {{5}}). Track it at {{6}}",
        ("firstname", "shop", "ordername", "carrier", "awb", "trackingurl"),
        (_TALK, _STORE),
    ),
    DemoTemplate(
        OUT_FOR_DELIVERY,
        "5d0c8a3e-1f6b-4f0e-9a51-0c1e7a2b9d04",
        "demo_out_for_delivery",
        "Hi {{1}}, your {{2}} order {{3}} is out for delivery today. "
        "Please keep your phone reachable.",
        ("firstname", "shop", "ordername"),
        (_TALK,),
    ),
    DemoTemplate(
        DELIVERED,
        "5d0c8a3e-1f6b-4f0e-9a51-0c1e7a2b9d05",
        "demo_order_delivered",
        "Hi {{1}}, your {{2}} order {{3}} has been delivered. Thank you for shopping with us!",
        ("firstname", "shop", "ordername"),
        ({"type": "QUICK_REPLY", "text": "Report a problem"}, _STORE),
    ),
    DemoTemplate(
        FAILED,
        "5d0c8a3e-1f6b-4f0e-9a51-0c1e7a2b9d06",
        "demo_delivery_failed",
        "Hi {{1}}, the courier could not deliver your {{2}} order {{3}}. "
        "Tap a button to tell us what to do.",
        ("firstname", "shop", "ordername"),
        ({"type": "QUICK_REPLY", "text": "Deliver again"}, _TALK),
    ),
)


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
        self,
        shopify: FakeShopify,
        clock: Clock,
        deliver: Deliver,
        report: Report,
        changed: Callable[[], None],
    ) -> None:
        self.shopify = shopify
        self.clock = clock
        self._deliver = deliver  # (topic, payload): the webhook to our app
        self._report = report  # a shipment event: the carrier's webhook to our app
        self._changed = changed
        self._order_phones: dict[int, str] = {}
        # Each order's markings, oldest first: {"status", "reported_by", "at"}.
        self._journeys: dict[int, list[dict[str, str]]] = {}
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

    async def pack(self, order_id: str) -> dict[str, Any]:
        """The warehouse packed the order: the fulfilment platform's shipment webhook (Shopify
        has no packed status before a fulfillment)."""
        order = self._markable(order_id, PACKED)
        self._mark(order, PACKED, CARRIER)
        await self._report(self._shipment_event(order, PACKED))
        return self.order_json(order)

    async def fulfil(
        self, order_id: str, shipment: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Ship the order (`shipment`: carrier, tracking_number, tracking_url; the sample's
        by default): fulfillments/create, orders/fulfilled, then orders/updated."""
        order = self._markable(order_id, SHIPPED)
        if order.get("fulfillments"):
            raise Conflict(f"order {order['name']} is fulfilled already")
        now = self.clock.now()
        fulfillment = new_fulfillment(order, self._next_id(), now, shipment)
        order["fulfillments"] = [fulfillment]
        order["fulfillment_status"] = "fulfilled"
        order["updated_at"] = shop_time(now)
        self._mark(order, SHIPPED, SHOPIFY)
        await self._deliver("fulfillments/create", fulfillment)
        await self._deliver("orders/fulfilled", order)
        await self._deliver("orders/updated", order)
        return self.order_json(order)

    async def out_for_delivery(self, order_id: str) -> dict[str, Any]:
        """The carrier's tracking in Shopify: fulfillments/update, out_for_delivery."""
        return await self._shipment_status(order_id, OUT_FOR_DELIVERY, "out_for_delivery")

    async def deliver(self, order_id: str) -> dict[str, Any]:
        """The carrier's tracking in Shopify: fulfillments/update, delivered."""
        return await self._shipment_status(order_id, DELIVERED, "delivered")

    async def fail_delivery(self, order_id: str, reason: str = "") -> dict[str, Any]:
        """The carrier could not deliver. With `reason`, the carrier's shipment webhook says
        why (Shopify's fulfillment has no field for it); without, Shopify's fulfillments/update
        with shipment_status failure."""
        if not reason:
            return await self._shipment_status(order_id, FAILED, "failure")
        order = self._markable(order_id, FAILED)
        self._shipped(order)
        self._mark(order, FAILED, CARRIER)
        await self._report(self._shipment_event(order, FAILED, reason))
        return self.order_json(order)

    async def _shipment_status(self, order_id: str, marking: str, status: str) -> dict[str, Any]:
        order = self._markable(order_id, marking)
        fulfillment = self._shipped(order)
        fulfillment["shipment_status"] = status
        fulfillment["updated_at"] = shop_time(self.clock.now())
        self._mark(order, marking, SHOPIFY)
        await self._deliver("fulfillments/update", fulfillment)
        return self.order_json(order)

    def _markable(self, order_id: str, marking: str) -> dict[str, Any]:
        """The order, which can take `marking` now: not cancelled, and not marked so last."""
        order = self._order(order_id)
        if order.get("cancelled_at"):
            raise Conflict(f"order {order['name']} is cancelled")
        journey = self._journeys.get(int(order["id"]), [])
        if journey and journey[-1]["status"] == marking:
            raise Conflict(f"order {order['name']} is marked {marking.replace('_', ' ')} already")
        return order

    def _shipped(self, order: dict[str, Any]) -> dict[str, Any]:
        if not order.get("fulfillments"):
            raise Conflict(f"order {order['name']} is not shipped: nothing is out for delivery")
        fulfillment: dict[str, Any] = order["fulfillments"][-1]
        return fulfillment

    def _mark(self, order: dict[str, Any], marking: str, reported_by: str) -> None:
        at = self.clock.now().isoformat()
        self._journeys.setdefault(int(order["id"]), []).append(
            {"status": marking, "reported_by": reported_by, "at": at}
        )
        self._changed()

    def _shipment_event(
        self, order: dict[str, Any], marking: str, reason: str = ""
    ) -> dict[str, Any]:
        """The shipment webhook's body, as the carrier posts it (its AWB once shipped)."""
        fulfillment = (order.get("fulfillments") or [{}])[-1]
        event = {"order": order["name"], "status": marking, "time": self.clock.now().isoformat()}
        for name, field in (
            ("awb", "tracking_number"),
            ("carrier", "tracking_company"),
            ("tracking_url", "tracking_url"),
        ):
            if fulfillment.get(field):
                event[name] = fulfillment[field]
        if reason:
            event["reason"] = reason
        return event

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
            "journey": list(self._journeys.get(order_id, [])),
            "shipment_sample": sample_shipment(order_id),
        }

    def _order(self, order_id: str) -> dict[str, Any]:
        try:
            return self.shopify.order(SHOP_DOMAIN, int(order_id))
        except (KeyError, ValueError):
            raise NotFound(f"no order {order_id}") from None
