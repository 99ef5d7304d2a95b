"""Reading, retrying, cancelling and expiring orders."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.backend.checkout.lifecycle import end, expire_if_lapsed, load
from gateway.backend.checkout.start import start_device_order, start_order
from gateway.context import Gateway
from gateway.domain.errors import Conflict
from gateway.domain.orders import PENDING, Kind, Reason, Status, is_lapsed
from gateway.store.models import Order

__all__ = ["cancel_order", "expire_lapsed", "get_order", "retry_order"]

log = logging.getLogger(__name__)


def get_order(gw: Gateway, order_id: str) -> Order:
    """The order as it stands now: one whose code or link has lapsed is expired first.

    :raise NotFound: ``order_not_found``.
    """
    with gw.db.read() as session:
        order = load(session, order_id)
    if is_lapsed(order.status, order.expires_at, gw.clock()):
        with gw.db.transaction() as session:
            order = load(session, order_id, lock=True)
            expire_if_lapsed(session, order, gw.clock())
    return order


_RETRYABLE = (Status.FAILED, Status.EXPIRED, Status.CANCELLED)


def retry_order(gw: Gateway, order_id: str) -> Order:
    """Try an ended, unpaid order again (CN104008477A claims 2 and 6): a new order for the
    same item, device and phone, with a new code or link, under the same limits, and linked to
    the first by ``retry_of``. An order is retried at most once.

    :raise NotFound: ``order_not_found``.
    :raise Conflict: ``order_not_retryable`` (pending or paid), ``order_already_retried``.
    """
    first = get_order(gw, order_id)
    if first.status not in _RETRYABLE:
        raise Conflict(f"order is {first.status}: only a failed, expired or cancelled order "
                       f"can be retried", code="order_not_retryable", order_status=first.status)
    _refuse_second_retry(gw, first.id)
    try:
        if first.phone is not None:
            return start_order(gw, device_id=first.device_id, phone=first.phone,
                               package_id=first.package_id, bill_id=first.bill_id,
                               retry_of=first.id)
        return start_device_order(gw, device_id=first.device_id, kind=first.kind,
                                  package_id=first.package_id, bill_id=first.bill_id,
                                  amount=first.amount if first.kind == Kind.RECHARGE else None,
                                  retry_of=first.id)
    except IntegrityError:  # another retry of the same order committed first
        _refuse_second_retry(gw, first.id)
        raise


def _refuse_second_retry(gw: Gateway, order_id: str) -> None:
    with gw.db.read() as session:
        retry = session.scalar(select(Order.id).where(Order.retry_of == order_id))
    if retry is not None:
        raise Conflict(f"order was already retried as {retry}", code="order_already_retried",
                       retry_order_id=retry)


def cancel_order(gw: Gateway, order_id: str) -> Order:
    """Cancel a pending order and release its hold.

    :raise NotFound: ``order_not_found``.
    :raise Conflict: ``order_not_pending`` when it is already paid, failed or over.
    """
    with gw.db.transaction() as session:
        order = load(session, order_id, lock=True)
        now = gw.clock()
        expire_if_lapsed(session, order, now)
        cancelled = Status(order.status).pending
        if cancelled:
            end(session, order, Status.CANCELLED, Reason.CANCELLED, now)
    if not cancelled:
        raise Conflict(f"order is {order.status} and can no longer be cancelled",
                       code="order_not_pending", order_status=order.status)
    log.info("order %s cancelled", order.id)
    return order


def expire_lapsed(gw: Gateway, batch: int = 100) -> int:
    """Expire pending orders whose code or link has run out; return how many."""
    now = gw.clock()
    with gw.db.read() as session:
        due = session.scalars(
            select(Order.id)
            .where(Order.status.in_(PENDING), Order.expires_at <= now)
            .order_by(Order.expires_at)
            .limit(batch)
        ).all()
    expired = 0
    for order_id in due:
        try:
            with gw.db.transaction() as session:
                expired += expire_if_lapsed(session, load(session, order_id, lock=True), now)
        except Exception:  # one order that cannot expire must not keep the others' holds
            log.exception("could not expire order %s", order_id)
    return expired
