"""Map a Shopify order payload (the webhook / REST shape) to the order fields ordertalk keeps.

Only ValueError, naming the malformed field, leaves parse_order: a bad payload never crashes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import phonenumbers

DEFAULT_COD_GATEWAYS = frozenset({"cash on delivery (cod)", "cash on delivery", "cod"})
NO_PHONE = "no phone on the order (shipping, billing, customer)"
NO_VALID_PHONE = "no valid phone on the order (shipping, billing, customer)"

# Phones whose E.164 form a process keeps: a customer's number comes in several fields of
# an order (shipping, billing, customer) and again with their next orders.
PHONES_KEPT = 4096
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class LineItem:
    """One line of an order."""

    title: str
    quantity: int
    price: str


@dataclass(frozen=True)
class CustomerData:
    """The order's Shopify customer."""

    shopify_customer_id: str
    name: str
    email: str
    phone: str | None
    sms_consent: str | None
    sms_consent_updated_at: datetime | None = None


@dataclass(frozen=True)
class OrderData:
    """An order as ordertalk needs it: ids, money, payment method, statuses, phone, items."""

    shopify_order_id: str
    name: str
    number: int
    total_amount: str
    currency: str
    gateways: list[str]
    payment_method: str
    financial_status: str
    fulfillment_status: str
    tags: list[str]
    phone: str | None
    phone_problem: str
    customer: CustomerData | None
    placed_at: datetime
    updated_at: datetime | None
    cancelled_at: datetime | None
    city: str
    items: list[LineItem]
    status_url: str = ""  # the customer's order status page


def parse_order(
    payload: dict[str, Any],
    *,
    default_region: str,
    cod_gateways: Collection[str] = DEFAULT_COD_GATEWAYS,
) -> OrderData:
    """Read an order payload; phones become E.164, read in `default_region` when local."""
    if not isinstance(payload, dict):
        raise ValueError("order: not a JSON object")
    shipping = _section(payload, "shipping_address")
    billing = _section(payload, "billing_address")
    customer = _section(payload, "customer")
    gateways = _strings(payload.get("payment_gateway_names"), "payment_gateway_names")
    phone, phone_problem = _order_phone(payload, shipping, billing, customer, default_region)
    return OrderData(
        shopify_order_id=str(_id(payload.get("id"), "id")),
        name=_required_text(payload.get("name"), "name"),
        number=_order_number(payload),
        total_amount=_money(payload.get("total_price"), "total_price"),
        currency=_currency(payload.get("currency")),
        gateways=gateways,
        payment_method=payment_method(gateways, cod_gateways),
        financial_status=_text(payload.get("financial_status"), "financial_status"),
        fulfillment_status=_text(payload.get("fulfillment_status"), "fulfillment_status"),
        tags=_tags(payload.get("tags")),
        phone=phone,
        phone_problem=phone_problem,
        customer=_customer(customer, default_region) if customer else None,
        placed_at=_time(payload.get("created_at"), "created_at"),
        updated_at=_optional_time(payload.get("updated_at"), "updated_at"),
        cancelled_at=_optional_time(payload.get("cancelled_at"), "cancelled_at"),
        city=_text(shipping.get("city"), "shipping_address.city"),
        items=_items(payload.get("line_items")),
        status_url=_web_url(payload.get("order_status_url")),
    )


def payment_method(gateways: Collection[str], cod_gateways: Collection[str]) -> str:
    """'cod' when any gateway is a cash-on-delivery one (case, spaces ignored), else 'prepaid'."""
    cod = {name.strip().lower() for name in cod_gateways}
    return "cod" if any(name.strip().lower() in cod for name in gateways) else "prepaid"


@functools.lru_cache(maxsize=PHONES_KEPT)
def normalize_phone(raw: str, region: str | None) -> str | None:
    """The E.164 form of a free-form phone read in `region` (unless it says +country); or None."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _order_phone(
    payload: dict[str, Any],
    shipping: dict[str, Any],
    billing: dict[str, Any],
    customer: dict[str, Any],
    default_region: str,
) -> tuple[str | None, str]:
    default_address = _section(customer, "default_address", "customer.")
    candidates = [
        (shipping.get("phone"), shipping.get("country_code")),
        (billing.get("phone"), billing.get("country_code")),
        (payload.get("phone"), None),
        (customer.get("phone"), None),
        (default_address.get("phone"), default_address.get("country_code")),
    ]
    return _first_valid_phone(candidates, default_region)


def _first_valid_phone(
    candidates: list[tuple[Any, Any]], default_region: str
) -> tuple[str | None, str]:
    seen = False
    for raw, country in candidates:
        if not isinstance(raw, str) or not raw.strip():
            continue
        seen = True
        phone = normalize_phone(raw, _region(country, default_region))
        if phone:
            return phone, ""
    return None, NO_VALID_PHONE if seen else NO_PHONE


def _region(country: Any, default_region: str) -> str | None:
    if isinstance(country, str) and len(country.strip()) == 2 and country.strip().isalpha():
        return country.strip().upper()
    return default_region.upper() or None


def _customer(customer: dict[str, Any], default_region: str) -> CustomerData:
    default_address = _section(customer, "default_address", "customer.")
    first = _text(customer.get("first_name"), "customer.first_name")
    last = _text(customer.get("last_name"), "customer.last_name")
    consent = customer.get("sms_marketing_consent")
    phone, _ = _first_valid_phone(
        [
            (customer.get("phone"), None),
            (default_address.get("phone"), default_address.get("country_code")),
        ],
        default_region,
    )
    return CustomerData(
        shopify_customer_id=str(_id(customer.get("id"), "customer.id")),
        name=" ".join(part for part in (first.strip(), last.strip()) if part),
        email=_text(customer.get("email"), "customer.email"),
        phone=phone,
        sms_consent=_sms_consent(consent),
        sms_consent_updated_at=_optional_time(
            consent.get("consent_updated_at") if isinstance(consent, dict) else None,
            "customer.sms_marketing_consent.consent_updated_at",
        ),
    )


def _sms_consent(consent: Any) -> str | None:
    if consent is None:
        return None
    if not isinstance(consent, dict):
        raise ValueError("customer.sms_marketing_consent: not an object")
    state = _text(consent.get("state"), "customer.sms_marketing_consent.state")
    return state.lower() or None


def _items(value: Any) -> list[LineItem]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("line_items: not a list")
    return [_item(item, f"line_items[{index}]") for index, item in enumerate(value)]


def _item(item: Any, where: str) -> LineItem:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: not an object")
    quantity = item.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"{where}.quantity: not a count")
    return LineItem(
        title=_text(item.get("title"), f"{where}.title"),
        quantity=quantity,
        price=_money(item.get("price"), f"{where}.price"),
    )


def _section(payload: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{prefix}{key}: not an object")
    return value


def _id(value: Any, field: str) -> int:
    # Ids are 64-bit integers: an int or a digit string, never a float.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field}: not a positive integer id")
    return value


def _order_number(payload: dict[str, Any]) -> int:
    # order_number is what the name shows (#1001); number is only its offset (1).
    field = "order_number" if payload.get("order_number") is not None else "number"
    value = payload.get(field)
    if value is None:
        raise ValueError("order_number: missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: not an integer")
    return value


def _money(value: Any, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        raise ValueError(f"{field}: not a decimal amount")
    return value.strip()


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise ValueError("currency: not an ISO 4217 code")
    return value


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field}: not a string")
    return value


def _web_url(value: Any) -> str:
    # Optional: an unusable URL is left out, it never costs the order.
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value.strip()
    return ""


def _required_text(value: Any, field: str) -> str:
    text = _text(value, field).strip()
    if not text:
        raise ValueError(f"{field}: missing")
    return text


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{field}: not a list of strings")
    return list(value)


def _tags(value: Any) -> list[str]:
    # Webhooks send one comma-separated string; a list is accepted too.
    parts = value.split(",") if isinstance(value, str) else _strings(value, "tags")
    return [tag.strip() for tag in parts if tag.strip()]


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{field}: missing")
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{field}: not an ISO-8601 time") from None


def _optional_time(value: Any, field: str) -> datetime | None:
    return None if value is None else _time(value, field)
