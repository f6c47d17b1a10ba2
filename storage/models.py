"""SQLAlchemy models: every record the product keeps, one table each.

Times are UTC (`UTCDateTime`) and always come from the injected clock, never from the
database server. Phone numbers are E.164 strings. Money is a decimal string with its ISO
currency. Provider credentials are stored only as ciphertext (see `storage.crypto`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    orm_insert_sentinel,
)

from storage.types import Json, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: Json,
        list[Any]: Json,
    }


def shop_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    country: Mapped[str] = mapped_column(String(2), default="")
    phone: Mapped[str] = mapped_column(String(20), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    status: Mapped[str] = mapped_column(String(32), default="partially_installed")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet ciphertext of a JSON document of the shop's secrets (Shopify token).
    credentials: Mapped[str] = mapped_column(Text, default="")
    # Fernet ciphertext of the API secret key of the custom app whose token the shop gave:
    # Shopify signs that app's webhooks with it. "" for the platform's own app.
    app_secret: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The account the merchant chose per channel ({"voice": account id, ...}); a channel
    # without a choice uses its first connected account.
    channels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    api_key_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    # A one-time code the merchant sends the bot to link a chat; stored hashed.
    bot_link_code_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    bot_link_expires_at: Mapped[datetime | None]
    # Orders updated up to this time are known (reconciliation resumes from here).
    orders_synced_at: Mapped[datetime | None]
    # Orders that reconciliation found but no webhook had delivered, since the last alert.
    missed_webhooks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ProviderAccount(Base):
    """A provider account a shop sends and calls through: its own (credentials checked live
    and sealed) or the platform's configured one (no credentials here)."""

    __tablename__ = "provider_accounts"
    __table_args__ = (
        UniqueConstraint("shop_id", "provider", "owner"),
        # A callback names the account it comes from (Twilio's AccountSid).
        Index(None, "provider", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    provider: Mapped[str] = mapped_column(String(32))  # twilio | exotel | gupshup | ringcentral
    owner: Mapped[str] = mapped_column(String(16))  # shop | platform
    # The provider's id of the account (account SID, app name, client id; "" for platform).
    external_id: Mapped[str] = mapped_column(String(128), default="")
    # What may be shown: account id, subdomain, app name, numbers and their capabilities.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet ciphertext of the account's secrets ("" for the platform's).
    secrets: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | rejected
    status_reason: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[datetime | None]
    connected_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("shop_id", "phone"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    phone: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    shopify_customer_id: Mapped[str | None] = mapped_column(String(64))
    sms_consent: Mapped[str] = mapped_column(String(16), default="unknown")
    whatsapp_consent: Mapped[str] = mapped_column(String(16), default="unknown")
    consent_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "shopify_order_id"),
        Index(None, "shop_id", "placed_at"),
        # A missed call or a reply finds the customer's pending orders by phone.
        Index(None, "shop_id", "phone"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL")
    )
    shopify_order_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(20), default="")
    total_amount: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(16))  # cod | prepaid
    gateways: Mapped[list[Any]] = mapped_column(default=list)
    financial_status: Mapped[str] = mapped_column(String(32), default="")
    fulfillment_status: Mapped[str] = mapped_column(String(32), default="")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    verification_status: Mapped[str] = mapped_column(String(32), default="none")
    skip_reason: Mapped[str] = mapped_column(String(255), default="")
    # Shown on the customer's verification page.
    city: Mapped[str] = mapped_column(String(128), default="")
    items: Mapped[list[Any]] = mapped_column(default=list)  # [{title, quantity, price}]
    # Shopify's order status page, which notifications link to.
    status_url: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    cancelled_at: Mapped[datetime | None]
    placed_at: Mapped[datetime]
    shopify_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    _sentinel: Mapped[int | None] = orm_insert_sentinel()


class Verification(Base):
    """One order's verification conversation: the flow's state row."""

    __tablename__ = "verifications"
    __table_args__ = (Index(None, "shop_id", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    method: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    next_action_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Message(Base):
    """An SMS or WhatsApp message, either way, with its delivery status and cost."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id"),
        Index(None, "shop_id", "created_at"),
        # A customer's reply finds the shops that wrote to the phone (conversations).
        Index(None, "to_phone", "channel", "direction"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(String(16))  # sms | whatsapp
    direction: Mapped[str] = mapped_column(String(8))  # out | in
    provider: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(16), default="platform")  # shop | platform
    to_phone: Mapped[str] = mapped_column(String(20))
    from_phone: Mapped[str] = mapped_column(String(32), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    template: Mapped[str] = mapped_column(String(128), default="")
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    # The job effect that produced an outbound message: a retried job finds it here.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="queued")
    error_code: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    encoding: Mapped[str] = mapped_column(String(8), default="")
    segments: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    # The merchant thread it belongs to: a customer's message for the merchant, or an answer.
    thread_id: Mapped[int | None] = mapped_column(
        ForeignKey("threads.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # A batch of new messages is one INSERT on SQLite too (see Activity).
    _sentinel: Mapped[int | None] = orm_insert_sentinel()


class Consent(Base):
    """Whether a shop may message a customer's phone on a channel (sms | whatsapp)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("shop_id", "phone", "channel"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    phone: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # opted_in | opted_out
    source: Mapped[str] = mapped_column(String(16))  # keyword | shopify | merchant | api
    updated_at: Mapped[datetime]


class LineConsent(Base):
    """A compliance keyword's effect, committed with the inbound message that carried it,
    before the provider is answered: on `line` "shop:{id}" when the callback names its shop,
    or "{provider}:platform" for a platform account's shared number (every shop sending from
    it). The send gate takes the most recent of these and the shop's `Consent`."""

    __tablename__ = "line_consents"
    __table_args__ = (UniqueConstraint("line", "phone", "channel"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # opted_in | opted_out
    # The inbound message that set it ("{provider}:{message id}").
    reference: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime]


class Thread(Base):
    """A shop's conversation with one customer phone on one channel, as the merchant sees it:
    the customer's messages no flow took, and the merchant's answers (messages.thread_id)."""

    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("shop_id", "phone", "channel"),
        Index(None, "shop_id", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL")
    )
    phone: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))  # sms | whatsapp
    status: Mapped[str] = mapped_column(String(16), default="unanswered")  # | answered
    # Why a flow handed the customer to the merchant ("" for a plain message).
    handed_over: Mapped[str] = mapped_column(String(64), default="")
    last_inbound_at: Mapped[datetime | None]
    last_outbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PendingChoice(Base):
    """A reply on a shared number that two or more shops await from the same phone: not
    guessed, held here (no shop sees it) while the customer is asked which order it is for."""

    __tablename__ = "pending_choices"
    __table_args__ = (Index(None, "line", "phone", "channel"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    # [{"shop_id", "order_id", "label"}] in the order the customer was offered them.
    options: Mapped[list[Any]] = mapped_column(default=list)
    held_text: Mapped[str] = mapped_column(Text, default="")
    held_button: Mapped[str] = mapped_column(String(255), default="")
    # The held inbound message ("{provider}:{message id}").
    reference: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]


class ConsentEvent(Base):
    """One change of a consent, kept for audit."""

    __tablename__ = "consent_events"
    __table_args__ = (Index(None, "shop_id", "phone", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    phone: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    # What caused it: the inbound message's id for a keyword.
    reference: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime]


class Call(Base):
    """A verification call: its status, the customer's input and its duration."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("provider", "provider_call_id"),
        Index(None, "shop_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(16), default="platform")
    provider_call_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    to_phone: Mapped[str] = mapped_column(String(20))
    from_phone: Mapped[str] = mapped_column(String(32), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(32), default="queued")
    input_digits: Mapped[str] = mapped_column(String(16), default="")
    duration_seconds: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class MissedCall(Base):
    __tablename__ = "missed_calls"
    __table_args__ = (
        UniqueConstraint("provider", "provider_call_id"),
        Index(None, "shop_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    provider: Mapped[str] = mapped_column(String(32))
    provider_call_id: Mapped[str] = mapped_column(String(128))
    from_phone: Mapped[str] = mapped_column(String(20))
    to_phone: Mapped[str] = mapped_column(String(32))
    matched_order_ids: Mapped[list[Any]] = mapped_column(default=list)
    received_at: Mapped[datetime]


class Activity(Base):
    """One line of an order's timeline: what happened and by which mode."""

    __tablename__ = "activities"
    __table_args__ = (Index(None, "order_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    # SQLite returns no inserted ids in a known order: this column lets a batch of new
    # orders (activities) be inserted by one statement there too (SQLAlchemy's sentinel).
    _sentinel: Mapped[int | None] = orm_insert_sentinel()


class CreditEntry(Base):
    """The credit ledger: every top-up and charge, with the balance after it."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index(None, "shop_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    delta: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class WebhookReceipt(Base):
    """A webhook delivery already accepted, so a repeated delivery does nothing."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        UniqueConstraint("provider", "delivery_id"),
        # Retries of one event may come with new delivery ids: the event is kept once.
        UniqueConstraint("provider", "topic", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64), default="")
    triggered_at: Mapped[datetime | None]
    received_at: Mapped[datetime]


class DataRequest(Base):
    """A customer's data, exported for the merchant when Shopify's customers/data_request
    arrives: the merchant passes it on to the customer."""

    __tablename__ = "data_requests"
    __table_args__ = (Index(None, "shop_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    # Shopify's id of the request (its `data_request.id`).
    shopify_request_id: Mapped[str] = mapped_column(String(64), default="")
    # Whom it is about, as the request named them (a later redaction finds the export).
    shopify_customer_id: Mapped[str] = mapped_column(String(64), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    phone: Mapped[str] = mapped_column(String(20), default="")
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]


class BotLink(Base):
    """A Telegram chat linked to a shop, with the role it acts in."""

    __tablename__ = "bot_links"
    __table_args__ = (UniqueConstraint("shop_id", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16), default="owner")
    # Who the chat is, as Telegram named its user when it linked (shown to the owner).
    name: Mapped[str] = mapped_column(String(128), default="", server_default="")
    alerts: Mapped[bool] = mapped_column(Boolean, default=True)
    # The agent's own phone (E.164), rung first by a click-to-call; "" until asked.
    phone: Mapped[str] = mapped_column(String(20), default="", server_default="")
    # When Telegram said the chat blocked the bot (403): its alerts are skipped.
    blocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class BotInvite(Base):
    """A one-time code that links a chat to a shop in a role: an agent's invitation from the
    owner, or the owner's code from shop creation once used (kept, so that a second use is
    told the code was used rather than wrong). Only the code's SHA-256 is stored."""

    __tablename__ = "bot_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = shop_fk()
    code_hash: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    invited_by: Mapped[int | None] = mapped_column(BigInteger)  # the owner's chat
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[int | None] = mapped_column(BigInteger)  # the chat it linked
    created_at: Mapped[datetime]


class BotLease(Base):
    """Who polls Telegram for a bot's updates (one process of many), until when, and the
    first update not yet handled, where the next holder resumes."""

    __tablename__ = "bot_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    next_update_id: Mapped[int] = mapped_column(BigInteger, default=0)


class BotState(Base):
    """The bot's conversation state (aiogram FSM) of one user in one chat, when no Redis is
    configured: the state's name and the data gathered so far."""

    __tablename__ = "bot_states"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class ProviderState(Base):
    """Small documents a provider integration keeps between runs (e.g. a subscription)."""

    __tablename__ = "provider_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime]


class Job(Base):
    """A durable job: an effect to perform or a timer to fire (see `storage.jobs`)."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim query reads only queued rows in due order: all of them, and each kind's.
        Index(
            "ix_jobs_queued_due",
            "due_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(
            "ix_jobs_queued_kind_due",
            "kind",
            "due_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # The intake places a shop's new job after its latest due one (storage.jobs.places).
        Index(
            "ix_jobs_queued_shop_kind_due",
            "shop_id",
            "kind",
            "due_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(
            "ix_jobs_running_lease",
            "locked_until",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index(
            "ix_jobs_done_finished",
            "finished_at",
            postgresql_where=text("status = 'done'"),
            sqlite_where=text("status = 'done'"),
        ),
        Index(
            "ix_jobs_dead_finished",
            "finished_at",
            postgresql_where=text("status = 'dead'"),
            sqlite_where=text("status = 'dead'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    shop_id: Mapped[int | None] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
