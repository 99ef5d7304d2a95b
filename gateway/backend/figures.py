"""The figures of the operator dashboard, read from SQL for a window of time ending at ``now``.

Pure reads, one aggregate query per figure, the same SQL on SQLite and PostgreSQL: the order
funnel, why orders ended unpaid, SMS delivery by provider, orders per five minutes by outcome,
and the newest orders. An order belongs to the window by its ``created_at``, an SMS by its own.
A pending order whose code or link has lapsed counts as ``expired``, as the API shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from gateway import phones
from gateway.context import Gateway
from gateway.domain.errors import InvalidInput
from gateway.domain.money import Money
from gateway.domain.orders import PENDING, Reason, Status, is_lapsed
from gateway.domain.sms import SmsStatus
from gateway.store import outbox
from gateway.store.models import Order, OutboxMessage

__all__ = ["BUCKET_SECONDS", "OUTCOMES", "PROVIDERS", "WINDOWS", "Bucket", "Failure", "Figures",
           "FunnelStep", "ProviderDelivery", "RecentOrder", "for_window", "parse_minutes",
           "queue_ages", "read"]

WINDOWS = (15, 60, 360, 1440)  # minutes the page offers
BUCKET_SECONDS = 300
RECENT_ORDERS = 20
PROVIDERS = ("smpp", "twilio", "log")
# What became of an order, for the chart over time: paid (or activated), still waiting for
# the viewer, or ended unpaid with one of three statuses.
OUTCOMES = ("paid", "pending", "failed", "expired", "cancelled")
_PAID = (Status.PAID, Status.ACTIVATED)
# The provider took the message: it went out, whatever its receipt says later.
_SMS_SENT = (SmsStatus.SENT, SmsStatus.SUBMITTED, SmsStatus.DELIVERED, SmsStatus.UNDELIVERABLE)
# No final answer yet: waiting to be sent, being sent, or sent and waiting for its receipt.
_SMS_PENDING = (SmsStatus.QUEUED, SmsStatus.SENDING, SmsStatus.SUBMITTED)
_ORDER_SMS = ("code", "link")  # the SMS that asks the viewer to pay


@dataclass(frozen=True)
class FunnelStep:
    key: str  # created, sent, delivered, paid, activated
    label: str
    count: int
    share: float | None  # of the orders created; None when none were


@dataclass(frozen=True)
class Failure:
    reason: str
    status: str  # the status an order ends in for this reason
    count: int
    share: float | None


@dataclass(frozen=True)
class ProviderDelivery:
    provider: str | None  # None: not handed to any provider (queued, or refused before)
    messages: int
    sent: int
    delivered: int
    undeliverable: int
    failed: int
    pending: int

    @property
    def rate(self) -> float | None:
        """Delivered among the messages with a final answer; None without any."""
        final = self.delivered + self.undeliverable + self.failed
        return self.delivered / final if final else None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    counts: dict[str, int]  # by outcome

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class RecentOrder:
    created_at: datetime
    id: str
    kind: str
    channel: str
    device_id: str
    phone: str | None  # masked
    amount: Money
    status: str
    reason: str | None


@dataclass(frozen=True)
class Figures:
    since: datetime
    now: datetime
    minutes: int
    funnel: list[FunnelStep]
    failures: list[Failure]
    providers: list[ProviderDelivery]
    buckets: list[Bucket]
    recent: list[RecentOrder]


def parse_minutes(raw: str | None, default: int = 60) -> int:
    """The window asked for with ``?minutes=``.

    :raise InvalidInput: ``invalid_field`` for anything but one of ``WINDOWS``.
    """
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and int(raw) in WINDOWS:
        return int(raw)
    raise InvalidInput(f"minutes must be one of {', '.join(map(str, WINDOWS))}",
                       code="invalid_field", field="minutes")


def queue_ages(gw: Gateway) -> dict[str, float]:
    """Seconds the oldest SMS not sent yet has waited, by the SMPP connection it waits for
    (``none``: not routed to one yet)."""
    return outbox.waiting(gw.db, gw.clock())[1]


def for_window(gw: Gateway, minutes: int) -> Figures:
    """Everything the dashboard shows for the last ``minutes``."""
    with gw.db.read() as session:
        return read(session, gw.clock(), minutes)


def read(session: Session, now: datetime, minutes: int) -> Figures:
    """Everything the dashboard shows for the ``minutes`` up to ``now``."""
    since = now - timedelta(minutes=minutes)
    funnel = _funnel(session, since, now)
    created = funnel[0].count
    return Figures(since=since, now=now, minutes=minutes, funnel=funnel,
                   failures=_failures(session, since, now, created),
                   providers=_providers(session, since, now),
                   buckets=_buckets(session, since, now), recent=_recent(session, since, now))


# --- the queries -------------------------------------------------------------------------------


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _share(count: int, of: int) -> float | None:
    return count / of if of else None


def _created_between(since: datetime, now: datetime) -> ColumnElement[bool]:
    return and_(Order.created_at >= since, Order.created_at <= now)


def _lapsed(now: datetime) -> ColumnElement[bool]:
    return and_(Order.status.in_(PENDING), Order.expires_at <= now)


def _order_sms_in(statuses: tuple[str, ...]) -> ColumnElement[bool]:
    return exists().where(OutboxMessage.order_id == Order.id,
                          OutboxMessage.kind.in_(_ORDER_SMS),
                          OutboxMessage.status.in_(statuses))


_STEPS = (("created", "Created"), ("sent", "Code or link sent"), ("delivered", "Delivered"),
          ("paid", "Confirmed (paid)"), ("activated", "Activated"))


def _funnel(session: Session, since: datetime, now: datetime) -> list[FunnelStep]:
    """Each step counts the orders that reached it or a later one. An order without a phone
    (the TV shows its QR code) has nothing to send and counts as sent and delivered; a paid
    order counts as delivered whatever its receipt says (its viewer had the code or link)."""
    paid = Order.status.in_(_PAID)
    shown_on_tv = Order.phone.is_(None)
    row = session.execute(
        select(func.count(),
               _count_if(or_(shown_on_tv, paid, _order_sms_in(_SMS_SENT))),
               _count_if(or_(shown_on_tv, paid, _order_sms_in((SmsStatus.DELIVERED,)))),
               _count_if(paid),
               _count_if(Order.status == Status.ACTIVATED))
        .where(_created_between(since, now))
    ).one()
    counts = [int(value) for value in row]
    return [FunnelStep(key, label, count, _share(count, counts[0]))
            for (key, label), count in zip(_STEPS, counts, strict=True)]


_ENDS_IN = {Reason.INSUFFICIENT_FUNDS: Status.FAILED, Reason.TOO_MANY_ATTEMPTS: Status.FAILED,
            Reason.SMS_UNDELIVERABLE: Status.FAILED, Reason.BILL_ALREADY_PAID: Status.FAILED,
            Reason.EXPIRED: Status.EXPIRED, Reason.CANCELLED: Status.CANCELLED}


def _failures(session: Session, since: datetime, now: datetime,
              created: int) -> list[Failure]:
    """Orders of the window that ended unpaid, by reason (every reason, zeros included)."""
    reason = case((_lapsed(now), literal(Reason.EXPIRED.value)), else_=Order.reason)
    ended = or_(Order.status.in_((Status.FAILED, Status.EXPIRED, Status.CANCELLED)),
                _lapsed(now))
    ended_orders = select(reason.label("reason")).where(
        _created_between(since, now), ended).subquery()
    counted: dict[str, int] = dict(session.execute(
        select(ended_orders.c.reason, func.count()).group_by(ended_orders.c.reason)
    ).all())
    return [Failure(reason.value, status.value, counted.get(reason.value, 0),
                    _share(counted.get(reason.value, 0), created))
            for reason, status in _ENDS_IN.items()]


def _providers(session: Session, since: datetime, now: datetime) -> list[ProviderDelivery]:
    """Every SMS of the window (codes, links, confirmations, replies...) by the provider that
    carried it; the three providers always, messages that no provider took only when any."""
    status = OutboxMessage.status
    rows = session.execute(
        select(OutboxMessage.provider, func.count(), _count_if(status.in_(_SMS_SENT)),
               _count_if(status == SmsStatus.DELIVERED),
               _count_if(status == SmsStatus.UNDELIVERABLE),
               _count_if(status == SmsStatus.FAILED), _count_if(status.in_(_SMS_PENDING)))
        .where(OutboxMessage.created_at >= since, OutboxMessage.created_at <= now)
        .group_by(OutboxMessage.provider)
    ).all()
    found = {row[0]: ProviderDelivery(row[0], *(int(value) for value in row[1:]))
             for row in rows}
    known = [found.get(name) or ProviderDelivery(name, 0, 0, 0, 0, 0, 0) for name in PROVIDERS]
    others = sorted((name for name in found if name not in PROVIDERS),
                    key=lambda name: (name is None, name or ""))
    return known + [found[name] for name in others]


def _epoch_seconds(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a naive-UTC column (SQLite: an integer already)."""
    seconds = extract("epoch", column)
    return cast(func.floor(seconds), BigInteger) if dialect == "postgresql" else seconds


def _buckets(session: Session, since: datetime, now: datetime) -> list[Bucket]:
    """Orders of the window per five minutes of the clock (10:00, 10:05, ...) by outcome."""
    dialect = session.get_bind().dialect.name
    outcome = case((Order.status.in_(_PAID), literal("paid")),
                   (_lapsed(now), literal("expired")),
                   (Order.status.in_((*PENDING, Status.CREATED)), literal("pending")),
                   else_=Order.status)
    orders = select((_epoch_seconds(Order.created_at, dialect) // BUCKET_SECONDS)
                    .label("bucket"), outcome.label("outcome")) \
        .where(_created_between(since, now)).subquery()
    counted: dict[int, dict[str, int]] = {}
    for bucket, name, count in session.execute(
            select(orders.c.bucket, orders.c.outcome, func.count())
            .group_by(orders.c.bucket, orders.c.outcome)):
        counted.setdefault(int(bucket), {})[name] = count
    first = int(since.timestamp()) // BUCKET_SECONDS
    last = int(now.timestamp()) // BUCKET_SECONDS
    return [Bucket(datetime.fromtimestamp(n * BUCKET_SECONDS, since.tzinfo),
                   {name: counted.get(n, {}).get(name, 0) for name in OUTCOMES})
            for n in range(first, last + 1)]


def _recent(session: Session, since: datetime, now: datetime) -> list[RecentOrder]:
    rows = session.scalars(
        select(Order).where(_created_between(since, now))
        .order_by(Order.created_at.desc(), Order.id.desc()).limit(RECENT_ORDERS)
    ).all()
    recent = []
    for order in rows:
        lapsed = is_lapsed(order.status, order.expires_at, now)
        recent.append(RecentOrder(
            created_at=order.created_at, id=order.id, kind=order.kind, channel=order.channel,
            device_id=order.device_id, phone=phones.mask(order.phone),
            amount=Money(order.amount, order.currency),
            status=Status.EXPIRED if lapsed else order.status,
            reason=Reason.EXPIRED if lapsed else order.reason))
    return recent
