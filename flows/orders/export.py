"""The merchant's reports as CSV files: one row per report row, with the columns the admin
API's JSON gives (times in UTC, ISO 8601)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from flows.orders.reports import OrderRef
from storage.models import Call, Message, MissedCall, Order

ORDER_COLUMNS = (
    "name",
    "placed_at",
    "phone",
    "total_amount",
    "currency",
    "payment_method",
    "verification_status",
    "financial_status",
    "fulfillment_status",
)
CALL_COLUMNS = (
    "created_at",
    "order",
    "to_phone",
    "from_phone",
    "provider",
    "status",
    "attempt",
    "input_digits",
    "duration_seconds",
)
MESSAGE_COLUMNS = (
    "created_at",
    "order",
    "channel",
    "direction",
    "to_phone",
    "from_phone",
    "status",
    "body",
)
MISSED_CALL_COLUMNS = ("received_at", "from_phone", "to_phone", "orders")


def orders_csv(orders: Iterable[Order]) -> bytes:
    return _csv(ORDER_COLUMNS, ([_cell(getattr(o, c)) for c in ORDER_COLUMNS] for o in orders))


def calls_csv(rows: Iterable[tuple[Call, OrderRef | None]]) -> bytes:
    return _csv(CALL_COLUMNS, (_with_order(call, ref, CALL_COLUMNS) for call, ref in rows))


def messages_csv(rows: Iterable[tuple[Message, OrderRef | None]]) -> bytes:
    return _csv(MESSAGE_COLUMNS, (_with_order(m, ref, MESSAGE_COLUMNS) for m, ref in rows))


def missed_calls_csv(rows: Iterable[tuple[MissedCall, list[OrderRef]]]) -> bytes:
    return _csv(
        MISSED_CALL_COLUMNS,
        (
            [
                _cell(call.received_at),
                call.from_phone,
                call.to_phone,
                " ".join(ref.name for ref in refs),
            ]
            for call, refs in rows
        ),
    )


def _with_order(row: Any, ref: OrderRef | None, columns: Sequence[str]) -> list[str]:
    return [
        (ref.name if ref else "") if column == "order" else _cell(getattr(row, column))
        for column in columns
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _csv(columns: Sequence[str], rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().encode()
