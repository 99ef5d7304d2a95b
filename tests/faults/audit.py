"""What must hold after the fault run, read from the database alone.

``audit(session)`` maps each property of issue 9 to what was found violating it (an empty list
when it holds). Nothing here asks a process, a log or Redis: only the rows are evidence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.backend.tv_events import TvEvent
from gateway.domain.orders import FINAL, Status
from gateway.domain.sms import SmsStatus
from gateway.payment import ledger
from gateway.store.models import (
    Entitlement,
    Hold,
    JournalEntry,
    Order,
    OrderEvent,
    OutboxMessage,
    Package,
    Posting,
)

__all__ = ["PROPERTIES", "audit"]

PROPERTIES = (
    "every order is in a final state",
    "postings sum to zero and no balance is negative",
    "captured holds and activated orders match one to one",
    "every SMS is sent, delivered or failed with a reason",
    "no code was accepted twice",
)


def audit(session: Session) -> dict[str, list[str]]:
    checks = (orders_final, money_balances, captures_match_activations, sms_concluded,
              codes_accepted_once)
    return {name: check(session) for name, check in zip(PROPERTIES, checks, strict=True)}


def orders_final(session: Session) -> list[str]:
    return [f"order {order_id} is {status}" for order_id, status in session.execute(
        select(Order.id, Order.status).where(Order.status.not_in(FINAL)))]


def money_balances(session: Session) -> list[str]:
    """Every entry balances, balances match postings, none is negative (``ledger.audit``)."""
    total = session.scalar(select(func.coalesce(func.sum(Posting.amount), 0)))
    return ledger.audit(session) + ([f"all postings sum to {total}"] if total else [])


def captures_match_activations(session: Session) -> list[str]:
    """A captured hold is its activated order's one payment, and an activated order has one;
    an ended order holds nothing, and the merchant has exactly what activated orders cost."""
    orders = {row.id: row for row in session.execute(
        select(Order.id, Order.status, Order.amount, Order.currency))}
    entries = Counter(tuple(row) for row in session.execute(
        select(JournalEntry.order_id, JournalEntry.kind).where(JournalEntry.order_id.is_not(None))))
    captured = dict(session.execute(  # order -> what its capture credited the merchant
        select(JournalEntry.order_id, Posting.amount)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .where(JournalEntry.kind == "capture", Posting.amount > 0)).all())
    problems = []
    holds = {hold.order_id: hold for hold in session.scalars(select(Hold))}
    for order_id, hold in holds.items():
        status = orders[order_id].status
        if hold.status == "held" and status in FINAL:
            problems.append(f"hold of {order_id} is still held, but the order is {status}")
        elif hold.status == "captured" and (status != Status.ACTIVATED
                                            or captured.get(order_id) != hold.amount):
            problems.append(f"hold of {order_id} was captured, but the order is {status} and "
                            f"its capture moved {captured.get(order_id)} of {hold.amount}")
    for order_id, order in orders.items():
        payments = entries[order_id, "capture"] + entries[order_id, "charge"]
        if order.status == Status.ACTIVATED and payments != 1:
            problems.append(f"activated order {order_id} was paid {payments} times")
        elif order.status != Status.ACTIVATED and payments:
            problems.append(f"order {order_id} is {order.status} but was paid")
        if entries[order_id, "capture"] and getattr(holds.get(order_id), "status",
                                                    None) != "captured":
            problems.append(f"order {order_id} has a capture but no captured hold")
    revenue: dict[str, int] = defaultdict(int)
    for order in orders.values():
        if order.status == Status.ACTIVATED:
            revenue[order.currency] += order.amount
    for currency, amount in revenue.items():
        merchant = ledger.balance(session, ledger.merchant_account(currency))
        if merchant != amount:
            problems.append(f"merchant holds {merchant} {currency}; activated orders cost "
                            f"{amount}")
    return problems


def sms_concluded(session: Session) -> list[str]:
    done = {SmsStatus.SENT, SmsStatus.DELIVERED}
    failed = {SmsStatus.FAILED, SmsStatus.UNDELIVERABLE}
    return [f"sms #{row.id} ({row.kind}) is {row.status}" + (" without a reason" * (
                row.status in failed)) for row in session.execute(
        select(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.status, OutboxMessage.error))
        if not (row.status in done or (row.status in failed and row.error))]


def codes_accepted_once(session: Session) -> list[str]:
    """Each order was paid and activated at most once (once if activated), told so by at
    most one SMS, and its TV got one period of its package per activation."""
    statuses = dict(session.execute(select(Order.id, Order.status)).all())
    moves = Counter(tuple(row) for row in session.execute(
        select(OrderEvent.order_id, OrderEvent.status)
        .where(OrderEvent.type == TvEvent.ORDER_STATUS,
               OrderEvent.status.in_([Status.PAID, Status.ACTIVATED]))))
    problems = [f"order {order_id} became {status} {count} times"
                for (order_id, status), count in moves.items() if count > 1]
    problems += [f"activated order {order_id} has {moves[order_id, Status.PAID]} paid events"
                 for order_id, status in statuses.items()
                 if status == Status.ACTIVATED and moves[order_id, Status.PAID] != 1]
    confirmations = Counter(session.scalars(
        select(OutboxMessage.order_id).where(OutboxMessage.kind == "confirmed")))
    problems += [f"order {order_id} was confirmed by {count} SMS"
                 for order_id, count in confirmations.items() if count > 1]
    activations: dict[tuple[str, str], list] = defaultdict(list)
    for device_id, package_id, at in session.execute(
            select(Order.device_id, Order.package_id, Order.updated_at)
            .where(Order.status == Status.ACTIVATED, Order.package_id.is_not(None))):
        activations[device_id, package_id].append(at)
    periods = dict(session.execute(select(Package.id, Package.period_days)).all())
    for entitlement in session.scalars(select(Entitlement)):
        times = activations.get((entitlement.device_id, entitlement.package_id), [])
        most = min(times, default=None)
        if most is not None:
            most += timedelta(days=periods[entitlement.package_id] * len(times))
        if most is None or entitlement.active_until > most:
            problems.append(f"device {entitlement.device_id} holds {entitlement.package_id} "
                            f"until {entitlement.active_until}, more than its "
                            f"{len(times)} activations bought")
    return problems
