"""Writes one inbox batch, receipts and jobs, in as few round trips as the database allows.

The intake's hot path, so it speaks to the driver directly with hand-written SQL instead of
going through an ORM session (whose per-statement and per-row work cost more than the
database's). Each new job is placed in the queue by its shop's turn (`storage.jobs.places`),
from one read of the queue's head and of the batch's shops' latest due jobs. PostgreSQL: that
read, then one statement, so one round trip and one implicit transaction, that expands the
batch from arrays, inserts the receipts, queues a job for each receipt that was new, upserts
the keyword consents those new receipts carry and sends the workers' NOTIFY. SQLite: one
transaction on the shared connection, the receipts expanded from one JSON parameter, the
places read, the jobs and the consents each inserted by one `executemany`, and committed
with `synchronous=FULL`: the deliveries are acknowledged once it returns, so it must survive
a power loss (PostgreSQL's commits always do).
Values are encoded by SQLAlchemy's own column types, so rows read back like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import JOBS_CHANNEL, SQLITE_SYNCHRONOUS, Database
from storage.jobs.places import Key, place
from storage.types import Json, UTCDateTime, json_text


@dataclass(frozen=True)
class ConsentWrite:
    """A compliance keyword's effect, written with its delivery's receipt when that is new:
    `phone` is opted in or out of `channel` on `line` (see LineConsent)."""

    line: str
    phone: str
    channel: str
    state: str
    reference: str


@dataclass(frozen=True)
class Delivery:
    """A provider's webhook delivery, as the intake hands it in."""

    provider: str
    delivery_id: str
    event_id: str | None
    topic: str
    triggered_at: datetime | None
    job_kind: str
    job_payload: dict[str, Any]
    # The shop, by domain or by id; neither when the provider's account is the platform's.
    shop_domain: str | None = None
    shop_id: int | None = None
    # Accept the delivery even if no known shop is named (privacy topics, platform accounts).
    allow_unknown_shop: bool = False
    consent: ConsentWrite | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.delivery_id)


@dataclass(frozen=True)
class ShopDelivery:
    """A delivery to record, with its shop resolved (None: a platform or privacy delivery)."""

    delivery: Delivery
    shop_id: int | None

    @property
    def job_payload(self) -> dict[str, Any]:
        return {**self.delivery.job_payload, "shop_id": self.shop_id}


# A job's idempotency key is "<provider>:<delivery id>": a delivery queues one job, ever.
# One statement cannot upsert a row twice, so of the new receipts' consents for one (line,
# phone, channel) only the batch's last is written; an older batch committing later (several
# writers) does not overwrite a newer consent.
_PG_STORE = f"""
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::text[], $8::jsonb[], $11::text[], $12::text[],
                         $13::text[], $14::text[], $15::text[], $16::timestamptz[])
        WITH ORDINALITY
        AS b(provider, shop_id, delivery_id, event_id, topic, triggered_at, kind, payload,
             line, phone, channel, state, reference, due_at, ord)
), stored AS (
    INSERT INTO webhook_receipts
        (provider, shop_id, delivery_id, event_id, topic, triggered_at, received_at)
    SELECT provider, shop_id, delivery_id, event_id, topic, triggered_at, $9 FROM batch
    ON CONFLICT DO NOTHING
    RETURNING provider, delivery_id
), queued AS (
    INSERT INTO jobs (kind, payload, shop_id, idempotency_key, due_at, max_attempts, created_at)
    SELECT b.kind, b.payload, b.shop_id, b.provider || ':' || b.delivery_id, b.due_at, $10, $9
    FROM batch b JOIN stored s USING (provider, delivery_id)
    ON CONFLICT (idempotency_key) DO NOTHING
), consented AS (
    INSERT INTO line_consents (line, phone, channel, state, reference, updated_at)
    SELECT DISTINCT ON (b.line, b.phone, b.channel)
           b.line, b.phone, b.channel, b.state, b.reference, $9
    FROM batch b JOIN stored s USING (provider, delivery_id)
    WHERE b.line IS NOT NULL
    ORDER BY b.line, b.phone, b.channel, b.ord DESC
    ON CONFLICT (line, phone, channel) DO UPDATE
    SET state = EXCLUDED.state, reference = EXCLUDED.reference,
        updated_at = EXCLUDED.updated_at
    WHERE line_consents.updated_at <= EXCLUDED.updated_at
)
SELECT provider, delivery_id, pg_notify('{JOBS_CHANNEL}', '') FROM stored
"""

# The queue's head and, for each (shop, kind), its latest job due by now (see places). On
# PostgreSQL as row comparisons, which only ix_jobs_queued_shop_kind_due can answer: with
# plain equalities the planner may walk the due-time index backwards, through the whole
# backlog when the shop has nothing queued.
_PG_PLACES = """
SELECT NULL::bigint, NULL::text, min(due_at) FROM jobs WHERE status = 'queued'
UNION ALL
SELECT p.shop_id, p.kind,
       (SELECT j.due_at FROM jobs j
        WHERE j.status = 'queued'
          AND (j.shop_id, j.kind, j.due_at) <= (p.shop_id, p.kind, $3)
          AND (j.shop_id, j.kind) >= (p.shop_id, p.kind)
        ORDER BY j.shop_id DESC, j.kind DESC, j.due_at DESC
        LIMIT 1)
FROM unnest($1::bigint[], $2::text[]) AS p(shop_id, kind)
"""
_SQLITE_PLACES = """
SELECT NULL, NULL, min(due_at) FROM jobs WHERE status = 'queued'
UNION ALL
SELECT json_extract(p.value, '$[0]'), json_extract(p.value, '$[1]'),
       (SELECT max(j.due_at) FROM jobs j
        WHERE j.status = 'queued' AND j.shop_id = json_extract(p.value, '$[0]')
          AND j.kind = json_extract(p.value, '$[1]') AND j.due_at <= ?)
FROM json_each(?) AS p
"""

# `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not a join.
_SQLITE_RECEIPTS = """
INSERT INTO webhook_receipts
    (provider, shop_id, delivery_id, event_id, topic, triggered_at, received_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), ?
FROM json_each(?) WHERE true
ON CONFLICT DO NOTHING
RETURNING provider, delivery_id
"""
_SQLITE_JOBS = """
INSERT INTO jobs (kind, payload, shop_id, idempotency_key, due_at, max_attempts, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idempotency_key) DO NOTHING
"""
_SQLITE_CONSENTS = """
INSERT INTO line_consents (line, phone, channel, state, reference, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (line, phone, channel) DO UPDATE
SET state = excluded.state, reference = excluded.reference, updated_at = excluded.updated_at
WHERE line_consents.updated_at <= excluded.updated_at
"""


class BatchStore:
    """Records deliveries and queues their jobs; returns the keys that were new."""

    def __init__(self, db: Database, max_attempts: int) -> None:
        self.db = db
        self.max_attempts = max_attempts
        dialect = db.engine.dialect
        time_type = UTCDateTime().dialect_impl(dialect)
        self._encode_time = time_type.bind_processor(dialect)
        self._decode_time = time_type.result_processor(dialect, None) or (lambda value: value)
        self._encode_json = Json.dialect_impl(dialect).bind_processor(dialect) or json_text

    async def write(self, deliveries: list[ShopDelivery], now: datetime) -> set[tuple[str, str]]:
        """Store in one transaction (all or nothing); `deliveries` must have distinct keys."""
        if not deliveries:
            return set()
        async with self.db.driver_connection(priority=True) as conn:
            if self.db.dialect == "postgresql":
                return await self._write_postgres(conn, deliveries, now)
            return await self._write_sqlite(conn, deliveries, now)

    async def _write_postgres(
        self, conn: Any, deliveries: list[ShopDelivery], now: datetime
    ) -> set[tuple[str, str]]:
        keys = _keys(deliveries)
        pairs = sorted({key for key in keys if key is not None})
        found = await conn.fetch(
            _PG_PLACES, [shop for shop, _ in pairs], [kind for _, kind in pairs], now
        )
        rows = await conn.fetch(
            _PG_STORE,
            [d.delivery.provider for d in deliveries],
            [d.shop_id for d in deliveries],
            [d.delivery.delivery_id for d in deliveries],
            [d.delivery.event_id for d in deliveries],
            [d.delivery.topic for d in deliveries],
            [d.delivery.triggered_at for d in deliveries],
            [d.delivery.job_kind for d in deliveries],
            [self._encode_json(d.job_payload) for d in deliveries],
            now,
            self.max_attempts,
            *_consent_columns(deliveries),
            self._places(keys, now, found),
        )
        return {(provider, delivery_id) for provider, delivery_id, _ in rows}

    async def _write_sqlite(
        self, conn: Any, deliveries: list[ShopDelivery], now: datetime
    ) -> set[tuple[str, str]]:
        encode_time = self._encode_time
        stamp = encode_time(now)
        receipts = json_text(
            [
                [
                    d.delivery.provider,
                    d.shop_id,
                    d.delivery.delivery_id,
                    d.delivery.event_id,
                    d.delivery.topic,
                    encode_time(d.delivery.triggered_at),
                ]
                for d in deliveries
            ]
        )
        # A failure leaves the transaction open (and FULL set): the connection is then
        # discarded, which rolls it back (see Database.driver_connection).
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("BEGIN IMMEDIATE")
        found = await conn.execute_fetchall(_SQLITE_RECEIPTS, (stamp, receipts))
        stored = {(provider, delivery_id) for provider, delivery_id in found}
        new = [d for d in deliveries if d.delivery.key in stored]
        keys = _keys(new)
        pairs = json_text(sorted({key for key in keys if key is not None}))
        heads = await conn.execute_fetchall(_SQLITE_PLACES, (stamp, pairs))
        jobs = [
            (
                d.delivery.job_kind,
                self._encode_json(d.job_payload),
                d.shop_id,
                f"{d.delivery.provider}:{d.delivery.delivery_id}",
                encode_time(due_at),
                self.max_attempts,
                stamp,
            )
            for d, due_at in zip(new, self._places(keys, now, heads), strict=True)
        ]
        if jobs:
            await conn.executemany(_SQLITE_JOBS, jobs)
        # The batch's last consent for a (line, phone, channel) is the one that stands.
        consents = {
            (c.line, c.phone, c.channel): (c.line, c.phone, c.channel, c.state, c.reference, stamp)
            for d in deliveries
            if (c := d.delivery.consent) is not None and d.delivery.key in stored
        }
        if consents:
            await conn.executemany(_SQLITE_CONSENTS, list(consents.values()))
        await conn.execute("COMMIT")
        await conn.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        return stored

    def _places(
        self, keys: list[Key | None], now: datetime, found: Iterable[Sequence[Any]]
    ) -> list[datetime]:
        """The new jobs' due times, from the rows of the places query."""
        head = None
        last: dict[Key, datetime | None] = {}
        for shop_id, kind, due_at in found:
            if shop_id is None:
                head = self._decode_time(due_at)
            else:
                last[(shop_id, kind)] = self._decode_time(due_at)
        return place(keys, now, head, last)


def _keys(deliveries: list[ShopDelivery]) -> list[Key | None]:
    return [None if d.shop_id is None else (d.shop_id, d.delivery.job_kind) for d in deliveries]


def _consent_columns(deliveries: list[ShopDelivery]) -> list[list[str | None]]:
    """The consent writes as five arrays (line, phone, channel, state, reference), with
    NULLs for the deliveries that carry none."""
    columns: list[list[str | None]] = [[], [], [], [], []]
    for d in deliveries:
        c = d.delivery.consent
        values = (None,) * 5 if c is None else (c.line, c.phone, c.channel, c.state, c.reference)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
