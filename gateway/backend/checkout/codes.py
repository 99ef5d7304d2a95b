"""An order's one-time code: its keyed digest, checking a reply against it, and a fresh code
that no other waiting order of the same phone would accept."""

from __future__ import annotations

import operator
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.domain import otp
from gateway.domain.orders import Status
from gateway.store.models import Order

__all__ = ["code_matches", "digest", "unique_code"]


_bound_to = operator.attrgetter(*otp.BOUND_TO)


def _binding(order: Order | Row[Any]) -> otp.CodeBinding:
    return otp.CodeBinding(*_bound_to(order))


def digest(gw: Gateway, order: Order, code: str) -> str:
    return otp.code_digest(gw.secret_key, code, _binding(order))


def code_matches(gw: Gateway, order: Order | Row[Any], code: str) -> bool:
    return order.code_hash is not None and otp.code_matches(
        gw.secret_key, code, order.code_hash, _binding(order))


# of other orders, only what a code's digest covers
_OTHERS_WAITING = (
    select(Order.code_hash, *(getattr(Order, column) for column in otp.BOUND_TO))
    .where(Order.phone == bindparam("phone"), Order.id != bindparam("order"),
           Order.status == Status.AWAITING_CODE))


def unique_code(gw: Gateway, session: Session, order: Order) -> str:
    """A fresh code that no other pending order of the same phone would accept."""
    others = session.execute(_OTHERS_WAITING, {"phone": order.phone, "order": order.id}).all()
    while True:
        code = otp.new_code()
        if not any(code_matches(gw, other, code) for other in others):
            return code
