"""The SQL tables, as SQLAlchemy models: the one description of every column.

Money tables: ``accounts`` holds the balance of every customer-side account (wallet, linked
card) under a ``CHECK (balance >= 0)``; ``journal_entries`` and ``postings`` are the
double-entry ledger; system accounts (holds in flight, merchant revenue, external funding) are
never updated in place, their balance is the sum of their postings, so no payment waits on a
shared hot row. Only ``gateway.payment.ledger`` writes these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Account", "Base", "Bill", "BossEvent", "Card", "Device", "Entitlement", "Hold",
    "JournalEntry", "Order", "OrderEvent", "OutboxMessage", "Package", "Pairing", "PairingCode",
    "PhoneBinding", "Posting", "SmsOptOut", "SmsPart", "UTCDateTime", "Wallet",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; naive UTC in the column, on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    if TYPE_CHECKING:
        # Every model here maps a Table, which the Core statements of the hot paths use;
        # SQLAlchemy declares the attribute as any FromClause.
        __table__: ClassVar[Table]

    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    type_annotation_map = {datetime: UTCDateTime, int: Integer, str: String(255)}


# --- catalogue and customers --------------------------------------------------------------


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (CheckConstraint("price > 0", name="price_positive"),
                      CheckConstraint("period_days > 0", name="period_positive"))
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period_days: Mapped[int]


class Wallet(Base):
    __tablename__ = "wallets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    password_hash: Mapped[str]
    created_at: Mapped[datetime]
    # Wrong payment passwords on the payment page in a row, and the lock they lead to. Kept
    # here, not in Redis, so that losing Redis cannot reset them.
    # wrong page passwords in a row; at WAP_PASSWORD_LOCK_AFTER its page payments stop
    web_failed_attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class Card(Base):
    """The bank card linked to a wallet; its balance lives in ``accounts`` as ``card:<wallet>``."""

    __tablename__ = "cards"
    wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"), primary_key=True)
    bank: Mapped[str] = mapped_column(String(64))
    last4: Mapped[str] = mapped_column(String(4))


class PhoneBinding(Base):
    __tablename__ = "phone_bindings"
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)  # E.164
    wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"), index=True)
    created_at: Mapped[datetime]


class TvApp(Base):
    """A TV app of an operator (or an admin tool) that calls the API with keys of its own."""

    __tablename__ = "apps"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # "tv" or "admin"
    created_at: Mapped[datetime]


class ApiKey(Base):
    """A key of an app: ``<id>.<secret>`` is given out once; only the secret's SHA-256 is kept."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    # The TV app that first used the device: no other app may read it or order for it.
    app_id: Mapped[str | None] = mapped_column(ForeignKey("apps.id"))


# --- money -----------------------------------------------------------------------------------


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_never_negative"),)
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # "wallet:w-1001", "holds:CNY"
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class JournalEntry(Base):
    """One balanced movement of money; at most one of each kind per order."""

    __tablename__ = "journal_entries"
    __table_args__ = (UniqueConstraint("order_id", "kind"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # fund, hold, capture, release
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime]


class Posting(Base):
    __tablename__ = "postings"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed; an entry's postings sum to zero


class Hold(Base):
    """Funds reserved for one order: captured or released exactly once."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('held', 'captured', 'released')", name="status_known"),
    )
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # held, captured, released
    created_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]


# --- orders and what they lead to ------------------------------------------------------------


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_phone_created", "phone", "created_at"),
        Index("ix_orders_status_expires", "status", "expires_at"),
        Index("ix_orders_device_created", "device_id", "created_at"),
        Index("ix_orders_created", "created_at"),  # the operator dashboard's window
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("kind IN ('package', 'renewal', 'recharge', 'bill')", name="kind_known"),
        CheckConstraint("(kind IN ('package', 'renewal')) = (package_id IS NOT NULL)",
                        name="package_for_package_kinds"),
        CheckConstraint("(kind = 'bill') = (bill_id IS NOT NULL)", name="bill_for_bill_kind"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # package, renewal, recharge, bill
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    package_id: Mapped[str | None] = mapped_column(ForeignKey("packages.id"))
    bill_id: Mapped[str | None] = mapped_column(ForeignKey("bills.id"), index=True)
    # The failed order this one tries again; at most one retry per order.
    retry_of: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    wallet_id: Mapped[str | None] = mapped_column(ForeignKey("wallets.id"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    code_attempts: Mapped[int] = mapped_column(default=0)
    link_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    paid_from: Mapped[str | None] = mapped_column(String(80))  # the account that paid
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class OrderEvent(Base):
    """What a TV is shown, in order: each status an order took (the audit trail), wrong codes,
    pairing changes. The source of the live event streams; ``id`` is their event id.
    """

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_device_id_id", "device_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    type: Mapped[str] = mapped_column(String(32), server_default="order.status")
    status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[str | None] = mapped_column(Text)  # JSON: what else the TV shows
    at: Mapped[datetime]


class Entitlement(Base):
    __tablename__ = "entitlements"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), primary_key=True)
    active_until: Mapped[datetime]
    updated_at: Mapped[datetime]


class BossEvent(Base):
    """A signed notification for the operator's BOSS, posted until it answers 2xx."""

    __tablename__ = "boss_events"
    __table_args__ = (Index("ix_boss_events_status_next", "status", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "evt_…", the receiver dedups
    type: Mapped[str] = mapped_column(String(40))  # entitlement.activated, recharge.completed, …
    body: Mapped[str] = mapped_column(Text)  # the exact JSON posted, the same on every attempt
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]  # a worker is posting it until then
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class Pairing(Base):
    """The phone a TV is paired with: it confirms the TV's orders without a typed number."""

    __tablename__ = "pairings"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # E.164
    created_at: Mapped[datetime]


class PairingCode(Base):
    """A short code a TV shows so that a phone can pair with it."""

    __tablename__ = "pairing_codes"
    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # Pairing on the page: the phone being confirmed and the digest of the code sent to it.
    phone: Mapped[str | None] = mapped_column(String(20))
    confirm_hash: Mapped[str | None] = mapped_column(String(64))
    confirm_attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class Bill(Base):
    """An outstanding fee the operator loaded for a device; paid in full by one order."""

    __tablename__ = "bills"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('outstanding', 'paid')", name="status_known"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the operator's reference
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    description: Mapped[str] = mapped_column(String(120))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(32))  # the order that paid it
    created_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """An SMS to send, written in the transaction of the change that needs it."""

    __tablename__ = "sms_outbox"
    __table_args__ = (Index("ix_sms_outbox_status_id", "status", "id"),
                      Index("ix_sms_outbox_created", "created_at"),
                      # the few whose body still holds a secret (gateway.store.outbox.redact_sent)
                      Index("ix_sms_outbox_unredacted", "id",
                            postgresql_where=text("body <> redacted_body"),
                            sqlite_where=text("body <> redacted_body")))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    to_phone: Mapped[str] = mapped_column(String(20), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    # the body with any secret (code, link, pairing code) masked: for logs, and the body itself
    # once the message has left the queue
    redacted_body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(16))
    # the SMPP connection it went by (SMPP_CONFIG's id, "default" without the file)
    connection: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]  # a code SMS is useless after its code lapses
    relay_ref: Mapped[str | None] = mapped_column(String(80))  # "<stream epoch>/<entry id>"
    parts: Mapped[int | None]  # SMS parts it was split into
    lease_until: Mapped[datetime | None]  # a worker owns a "sending" row until then
    # The provider's id of the whole message (Twilio's Message SID); SMPP parts have their own.
    provider_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    retry_at: Mapped[datetime | None]  # a provider asked us to wait (429, 5xx) until then


class SmsOptOut(Base):
    """A phone that unsubscribed (STOP): the service sends it nothing until it opts in again."""

    __tablename__ = "sms_opt_outs"
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)  # E.164
    source: Mapped[str] = mapped_column(String(32))  # how we learnt it, e.g. "twilio 21610"
    created_at: Mapped[datetime]


class SmsPart(Base):
    """One submitted part of an outbox message, known to its provider by ``message_id``."""

    __tablename__ = "sms_parts"
    __table_args__ = (
        # Not unique: an SMSC may reuse ids, and a part sent again after a crash gets a row of
        # its own; a receipt goes to the newest part with its id on its connection (two SMSCs
        # may give the same id).
        Index("ix_sms_parts_provider_connection_message_id", "provider", "connection",
              "message_id"),
        Index("ix_sms_parts_status_submitted", "status", "submitted_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("sms_outbox.id"), index=True)
    part: Mapped[int]
    total: Mapped[int]  # parts of its message: a delivered part of one settles the message
    provider: Mapped[str] = mapped_column(String(16))
    # the SMPP connection that carried it: its SMSC gave the message id
    connection: Mapped[str] = mapped_column(String(32), server_default="default")
    message_id: Mapped[str] = mapped_column(String(65))
    status: Mapped[str] = mapped_column(String(16))  # submitted, delivered, undeliverable
    error: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    queried_at: Mapped[datetime | None]
    queries: Mapped[int] = mapped_column(default=0)
