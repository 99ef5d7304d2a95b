"""Confirming an order by the code the phone sent back."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway.backend import activation, tv_events
from gateway.backend.checkout.codes import code_matches
from gateway.backend.checkout.lifecycle import bill_still_due, complete, end, expire_if_lapsed, load
from gateway.context import Gateway
from gateway.domain import replies
from gateway.domain.orders import Reason, Status
from gateway.domain.replies import CodeOutcome, CodeResult
from gateway.payment import ledger
from gateway.store.db import one_of, padded
from gateway.store.models import Order
from gateway.store.orders import OrderBook

__all__ = ["code_sms_undeliverable", "confirm_codes"]

log = logging.getLogger(__name__)

_CODE_LOOKBACK = timedelta(days=1)  # how far back a reply may name a code, for a clear answer


_CODE_CANDIDATES = (select(Order)
                    .where(one_of(Order.phone, "phones"),
                           Order.code_hash.is_not(None), Order.created_at >= bindparam("since"))
                    .order_by(Order.id).with_for_update())


def confirm_codes(gw: Gateway, session: Session, replies: Sequence[tuple[str, str]],
                  now: datetime) -> list[CodeResult]:
    """Apply codes phones sent, each ``(phone, code)`` in the order given, inside the caller's
    transaction; return what each did.

    A right code pays and activates its order; a wrong one counts against every order of the
    phone still waiting for a code, and fails those that run out of tries. The replies share
    their statements where they can: one read of every phone's orders, one lock of the accounts
    those orders hold money on, and one write per kind of change to the orders. A phone's later
    reply sees what its earlier one did. The phones' orders are taken out of the session: the
    caller must not hold changes to them in it.
    """
    book = OrderBook(session)
    candidates = book.load_locked(_CODE_CANDIDATES, {
        "phones": padded(sorted({phone for phone, _ in replies})),
        "since": now - _CODE_LOOKBACK})
    orders_of: defaultdict[str, list[Order]] = defaultdict(list)
    for order in candidates:
        orders_of[order.phone or ""].append(order)
    ledger.lock_accounts(session, held_by=[o.id for o in candidates])
    activation.prepare(session, [(o.device_id, o.package_id) for o in candidates
                                 if o.status == Status.AWAITING_CODE and o.package_id])
    results = [_apply_code(gw, session, orders_of[phone], code, now) for phone, code in replies]
    book.write()
    return results


def _apply_code(gw: Gateway, session: Session, candidates: Sequence[Order], code: str,
                now: datetime) -> CodeResult:
    """Carry out what the reply rule decides (``gateway.domain.replies``); the caller has
    locked the accounts the candidates hold money on."""
    limit = gw.settings.CODE_MAX_ATTEMPTS
    decision = replies.decide([replies.CodeOrder(o.id, o.status, o.expires_at, o.code_attempts,
                                                 code_matches(gw, o, code))
                               for o in candidates], now, limit)
    by_id = {o.id: o for o in candidates}
    for order_id in decision.expire:
        end(session, by_id[order_id], Status.EXPIRED, Reason.EXPIRED, now)
    if decision.confirm is not None:
        order = by_id[decision.confirm]
        if not bill_still_due(session, order, now):
            return replies.CodeResult(CodeOutcome.CLOSED, order.id)
        hold = ledger.capture(session, order.id, now)
        complete(gw, session, order, hold.account_id, now)
    for wrong in decision.wrong:
        order = by_id[wrong.order_id]
        order.code_attempts = wrong.attempts
        if wrong.fails:
            end(session, order, Status.FAILED, Reason.TOO_MANY_ATTEMPTS, now)
        else:
            tv_events.record(session, device_id=order.device_id, order_id=order.id, now=now,
                             event_type=tv_events.TvEvent.WRONG_CODE,
                             data={"tries_left": wrong.tries_left})
    return decision.result


def code_sms_undeliverable(session: Session, order_id: str, now: datetime) -> None:
    """The code SMS cannot reach the phone: fail the order so the TV can offer its QR code."""
    order = load(session, order_id, lock=True)
    if expire_if_lapsed(session, order, now):  # too late anyway: it expired
        return
    if order.status == Status.AWAITING_CODE:
        end(session, order, Status.FAILED, Reason.SMS_UNDELIVERABLE, now)
        log.info("order %s failed: its code SMS is undeliverable", order.id)
