"""Paying an order on its payment page, from the signed-in wallet's balance or card."""

from __future__ import annotations

from sqlalchemy import select

from gateway.backend import binding
from gateway.backend.checkout.lifecycle import bill_still_due, complete, expire_if_lapsed, load
from gateway.backend.checkout.manage import get_order
from gateway.context import Gateway
from gateway.domain import tokens
from gateway.domain.errors import Conflict, InvalidInput, NotFound
from gateway.domain.orders import Kind, Status
from gateway.payment import ledger, wallets
from gateway.store.models import Order

__all__ = ["order_by_token", "pay_on_page"]


def order_by_token(gw: Gateway, token: str) -> Order:
    """The order a payment link names, as it stands now (expired first if it has lapsed).

    :raise NotFound: ``link_not_found``.
    """
    order_id = None
    if tokens.looks_like_token(token):
        with gw.db.read() as session:
            order_id = session.scalar(
                select(Order.id).where(Order.link_token_hash == tokens.token_hash(token)))
    if order_id is None:
        raise NotFound("no payment link like this", code="link_not_found")
    return get_order(gw, order_id)


def pay_on_page(gw: Gateway, order_id: str, wallet_id: str, source: str, *,
                bind_phone: bool = False) -> Order:
    """Pay a pending order from the signed-in wallet's balance or linked card.

    A hold the order placed for its code SMS is released in the same transaction, so the order
    is paid once whichever way the viewer pays. An order that is no longer pending (paid in
    another tab or by SMS, expired, cancelled) is returned as it is, for the page to show.
    ``bind_phone`` sends the order's phone, if bound to no wallet, a code that binds it to the
    wallet for SMS confirmation next time (``gateway.backend.binding``).

    :raise InvalidInput: ``invalid_source`` (no such source in this wallet).
    :raise Conflict: ``insufficient_funds`` or ``currency_mismatch``; nothing changed.
    """
    remember_binding = None
    with gw.db.transaction() as session:
        order = load(session, order_id, lock=True)
        now = gw.clock()
        expire_if_lapsed(session, order, now)
        if not Status(order.status).pending:
            return order
        account = {s.kind: s for s in wallets.sources(session, wallet_id)}.get(source)
        if account is None:
            raise InvalidInput("this wallet has no such source of money", code="invalid_source")
        if account.currency != order.currency:
            raise Conflict(f"this order is paid in {order.currency}", code="currency_mismatch")
        if order.kind == Kind.RECHARGE:
            credit = ledger.device_account(order.device_id)
            ledger.open_account(session, credit, order.currency)
        else:
            credit = ledger.merchant_account(order.currency)
        ledger.lock_accounts(session, [account.account_id], held_by=[order.id])
        ledger.release(session, order.id, now)
        if not bill_still_due(session, order, now):
            return order
        try:
            ledger.charge(session, order.id, account.account_id, credit, order.amount,
                          order.currency, now)
        except ledger.InsufficientFunds:
            raise Conflict("this source does not hold enough to pay the order",
                           code="insufficient_funds") from None
        order.wallet_id = wallet_id
        complete(gw, session, order, account.account_id, now)
        if bind_phone and order.phone and wallets.bound_wallet(session, order.phone) is None:
            remember_binding = binding.offer(gw, session, order.id, order.phone, wallet_id, now)
    if remember_binding is not None:
        remember_binding()
    return order
