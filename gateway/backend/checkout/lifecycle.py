"""Moving an order along: the one place an order's status changes, with the money, SMS,
events and counters that change with it."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway import metrics
from gateway.backend import activation, bills, boss, catalog, tv_events
from gateway.context import Gateway
from gateway.domain.errors import NotFound
from gateway.domain.money import Money
from gateway.domain.orders import Kind, Reason, Status, is_lapsed, next_status
from gateway.domain.times import iso
from gateway.payment import ledger
from gateway.store import outbox
from gateway.store.models import Order

__all__ = [
    "bill_still_due", "complete", "end", "expire_if_lapsed", "load",
    "looks_like_order_id", "move", "record_event",
]

log = logging.getLogger(__name__)


def record_event(session: Session, order: Order, now: datetime,
                 data: dict[str, Any] | None = None) -> None:
    tv_events.record(session, device_id=order.device_id, order_id=order.id, now=now,
                     event_type=tv_events.TvEvent.ORDER_STATUS, status=order.status,
                     reason=order.reason, data=data)
    metrics.count_order_status(session, order.status, order.channel, order.kind, order.reason)


def move(session: Session, order: Order, target: Status, now: datetime,
         reason: Reason | None = None, data: dict[str, Any] | None = None) -> None:
    order.status = next_status(order.status, target)
    order.reason = reason
    order.updated_at = now
    record_event(session, order, now, data)


def end(session: Session, order: Order, target: Status, reason: Reason, now: datetime) -> None:
    """Close a pending order without payment: release its hold, keep no live code."""
    move(session, order, target, now, reason)
    ledger.release(session, order.id, now)
    outbox.close_code_messages(session, order.id, now)


def complete(gw: Gateway, session: Session, order: Order, paid_from: str,
             now: datetime) -> None:
    """Mark a paid order paid, deliver what it bought and tell the viewer.

    The caller has moved the money in this transaction (and settled the bill of a bill order,
    ``bill_still_due``). A package or renewal starts or extends the entitlement on the TV; a
    recharge was credited to the device's balance by the payment. The operator's BOSS is told.
    """
    order.paid_from = paid_from
    move(session, order, Status.PAID, now)
    outbox.close_code_messages(session, order.id, now)
    paid = {"device_id": order.device_id, "order_id": order.id, "amount": order.amount,
            "currency": order.currency}
    if order.kind == Kind.RECHARGE:
        balance = ledger.balance(session, ledger.device_account(order.device_id))
        move(session, order, Status.ACTIVATED, now, data={"balance": balance})
        boss.record(session, boss.EventType.RECHARGE_COMPLETED, {**paid, "balance": balance}, now)
        log.info("order %s recharged device %s", order.id, order.device_id)
        return
    if order.kind == Kind.BILL:
        move(session, order, Status.ACTIVATED, now, data={"bill_id": order.bill_id})
        boss.record(session, boss.EventType.BILL_PAID, {**paid, "bill_id": order.bill_id}, now)
        if order.phone:
            paid_text = gw.texts.render(
                "bill_paid", amount=gw.texts.amount(Money(order.amount, order.currency)))
            outbox.queue_at_commit(session, to=order.phone, kind="confirmed", order_id=order.id,
                                   now=now, body=paid_text)
        log.info("order %s paid bill %s of device %s", order.id, order.bill_id, order.device_id)
        return
    with session.no_autoflush:  # an order in the session is written once, as activated
        package = catalog.get_package(session, order.package_id)
        active_until = activation.activate(session, order.device_id, package, now)
    move(session, order, Status.ACTIVATED, now,
         data={"package_id": package.id, "active_until": iso(active_until)})
    boss.record(session, boss.EventType.ENTITLEMENT_ACTIVATED,
                {**paid, "package_id": package.id, "kind": order.kind,
                 "active_until": active_until}, now)
    if order.phone:
        outbox.queue_at_commit(session, to=order.phone, kind="confirmed", order_id=order.id,
                               now=now, body=gw.texts.render("confirmed", package=package.name,
                                                             until=gw.texts.date(active_until)))
    log.info("order %s activated %s on device %s until %s", order.id, package.id,
             order.device_id, active_until.isoformat())


def bill_still_due(session: Session, order: Order, now: datetime) -> bool:
    """Settle the bill a bill order pays, before any money moves; if another order paid it
    first, fail this one (releasing its hold) and say no."""
    if order.kind != Kind.BILL or bills.settle(session, order.bill_id or "", order.id, now):
        return True
    end(session, order, Status.FAILED, Reason.BILL_ALREADY_PAID, now)
    log.info("order %s failed: its bill was paid by another order", order.id)
    return False


def expire_if_lapsed(session: Session, order: Order, now: datetime) -> bool:
    if not is_lapsed(order.status, order.expires_at, now):
        return False
    end(session, order, Status.EXPIRED, Reason.EXPIRED, now)
    log.info("order %s expired", order.id)
    return True


_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def looks_like_order_id(text: str) -> bool:
    """Whether ``text`` could name an order (anything else is no order, never a query)."""
    return _ORDER_ID.fullmatch(text) is not None


def load(session: Session, order_id: str, *, lock: bool = False) -> Order:
    order = None
    if looks_like_order_id(order_id):
        order = session.get(Order, order_id, with_for_update=lock, populate_existing=lock)
    if order is None:
        raise NotFound(f"no order {order_id}", code="order_not_found")
    return order
