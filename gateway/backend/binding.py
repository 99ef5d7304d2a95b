"""Binding a phone to a wallet from a payment page, once the phone has shown it is there.

Whoever pays an unbound phone's link may ask to bind the phone to the wallet that paid, for SMS
confirmation next time. The phone is bound only when the 6-digit code sent to it is typed on
the order's page: paying someone's link does not make their phone confirm your payments, nor
theirs yours.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime

import redis
from sqlalchemy.orm import Session

from gateway import phones
from gateway.context import Gateway
from gateway.domain import otp
from gateway.domain.errors import Conflict, NotFound
from gateway.domain.texts import CODE_MASK
from gateway.payment import wallets
from gateway.store import outbox

__all__ = ["confirm", "offer", "pending_phone"]

log = logging.getLogger(__name__)

_SECONDS = 600
_TRIES = 5


def _digest(gw: Gateway, order_id: str, wallet_id: str, code: str) -> str:
    return otp.code_digest(gw.secret_key, code, otp.CodeBinding(f"bind:{order_id}", 0, "",
                                                                 wallet_id))


def offer(gw: Gateway, session: Session, order_id: str, phone: str, wallet_id: str,
          now: datetime) -> Callable[[], None]:
    """In the paying transaction: send the phone a code that binds it to the wallet. Returns
    what to call once the payment has committed: the code is remembered in Redis then, so that
    Redis failing can never undo a payment (the code would then lapse unused)."""
    code = otp.new_code()
    values = {"minutes": _SECONDS // 60}
    outbox.queue(session, to=phone, kind="bind", now=now,
                 body=gw.texts.render("bind_code", code=code, **values),
                 redacted_body=gw.texts.render("bind_code", code=CODE_MASK, **values))
    digest = _digest(gw, order_id, wallet_id, code)

    def remember() -> None:
        try:
            gw.pending_bindings.offer(order_id, phone, wallet_id, digest, now, _SECONDS)
        except redis.RedisError:
            log.warning("order %s: Redis is down; its binding code cannot be used", order_id)

    return remember


def pending_phone(gw: Gateway, order_id: str) -> str | None:
    """The phone of the order's binding waiting for its code, masked; None if none waits."""
    found = gw.pending_bindings.pending(order_id, gw.clock())
    return phones.mask(found["phone"]) if found else None


def confirm(gw: Gateway, order_id: str, code: str) -> bool:
    """Bind the phone when ``code`` is the one sent to it; say whether it is now bound to the
    wallet (False: another wallet bound it meanwhile).

    :raise NotFound: ``binding_not_found`` (none asked, lapsed, or its tries used up).
    :raise Conflict: ``wrong_code`` with ``tries_left``.
    """
    # The try is counted first, atomically, and the count outlives the binding: requests sent
    # at once get five guesses between them, not five each.
    tries = gw.pending_bindings.tried(order_id, _SECONDS)
    found = gw.pending_bindings.pending(order_id, gw.clock())
    if found is None or tries > _TRIES:
        raise NotFound("no binding waits for a code", code="binding_not_found")
    digits = otp.code_in_reply(code) or ""
    if not secrets.compare_digest(_digest(gw, order_id, found["wallet"], digits),
                                  found["digest"]):
        if tries == _TRIES:  # the last try: the binding is over
            gw.pending_bindings.drop(order_id)
            raise NotFound("no binding waits for a code", code="binding_not_found")
        raise Conflict("the code is not right", code="wrong_code", tries_left=_TRIES - tries)
    with gw.db.transaction() as session:
        bound = wallets.bind_phone(session, found["phone"], found["wallet"], gw.clock())
    gw.pending_bindings.drop(order_id)
    log.info("%s bound to wallet %s on a payment page", phones.mask(found["phone"]),
             found["wallet"])
    return bound
