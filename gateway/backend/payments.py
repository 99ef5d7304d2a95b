"""Use cases of an order: start it, confirm it by code, cancel it, expire it, read it.

Each use case is one SQL transaction in which the order's status, any money that moves with it
(``gateway.payment.ledger``) and any SMS it causes (``gateway.store.outbox``) change together.
Every entry point (TV API, inbound SMS, CLI, worker) calls these functions and nothing below
them."""

from __future__ import annotations

import base64
import logging
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import metrics, phones
from gateway.backend import activation, apps, bills, boss, catalog, tv_events
from gateway.context import Gateway
from gateway.domain import otp, tokens
from gateway.domain.errors import Conflict, InvalidInput, NotFound, RateLimited
from gateway.domain.money import Money
from gateway.domain.orders import (
    FINAL,
    PENDING,
    Channel,
    Kind,
    Reason,
    Status,
    is_lapsed,
    next_status,
)
from gateway.domain.sms import SmsStatus
from gateway.domain.texts import CODE_MASK
from gateway.domain.times import iso
from gateway.payment import ledger, wallets
from gateway.store import outbox
from gateway.store.db import insert_rows
from gateway.store.models import Order, Wallet
from gateway.store.redis_store import Limit

__all__ = [
    "CodeOutcome", "CodeResult", "cancel_order", "code_sms_undeliverable", "confirm_by_code",
    "expire_lapsed", "get_order", "order_by_token", "pay_on_page", "payment_url", "retry_order",
    "looks_like_order_id", "start_device_order", "start_order", "validate_device_id",
]

log = logging.getLogger(__name__)

_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_CODE_LOOKBACK = timedelta(days=1)  # how far back a reply may name a code, for a clear answer


def validate_device_id(device_id: object) -> str:
    """:raise InvalidInput: ``invalid_device_id``."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise InvalidInput("device_id must be 1-64 letters, digits or . _ : -",
                           code="invalid_device_id")
    return device_id


def _new_order_id() -> str:
    return "ord_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


# --- starting an order -----------------------------------------------------------------------


@dataclass(frozen=True)
class _OrderLimits:
    device: Limit  # orders per device per hour: a TV must not become an SMS pump
    interval: Limit  # one order per phone per interval, unless its last order has ended
    codes: Limit  # code SMS per phone per day

    def all(self) -> list[Limit]:
        return [self.device, self.interval, self.codes]


def _device_limit(gw: Gateway, device_id: str) -> Limit:
    return Limit("device_rate_limited", f"device:{device_id}:orders",
                 gw.settings.LIMIT_DEVICE_ORDERS_PER_HOUR, 3600)


def _limits(gw: Gateway, phone: str, device_id: str) -> _OrderLimits:
    s = gw.settings
    return _OrderLimits(
        _device_limit(gw, device_id),
        Limit("phone_rate_limited", f"phone:{phone}:interval", 1, s.LIMIT_PHONE_INTERVAL_SECONDS),
        Limit("phone_daily_limit", f"phone:{phone}:codes", s.LIMIT_PHONE_CODES_PER_DAY, 86400),
    )


_LIMIT_TEXT = {
    "device_rate_limited": "this device has placed too many orders in the last hour",
    "phone_rate_limited": "this phone has an order in progress; try again shortly",
    "phone_daily_limit": "this phone has received too many payment codes today",
}


def _acquire_limits(gw: Gateway, session: Session, limits: list[Limit], member: str,
                    interval: Limit | None = None) -> None:
    """Take a slot in every limit, or none (inside the order's transaction, whose session
    reads which orders have ended: a second connection per request could starve the pool).

    :raise RateLimited: naming the limit, with the seconds until it frees.
    """
    refusal = gw.limiter.acquire(limits, member, gw.clock())
    if refusal and refusal.limit is interval and _free_ended(gw, session, interval):
        refusal = gw.limiter.acquire(limits, member, gw.clock())
    if refusal:
        raise RateLimited(_LIMIT_TEXT[refusal.limit.code], code=refusal.limit.code,
                          retry_after=refusal.retry_after)


def _free_ended(gw: Gateway, session: Session, interval: Limit) -> bool:
    """Give back the interval slots of orders that have ended; say whether any was freed.

    A slot whose order is not (yet) in the database belongs to an order being created right
    now, and is kept.
    """
    members = gw.limiter.members(interval)
    ended = session.scalars(select(Order.id).where(
        Order.id.in_(members),
        or_(Order.status.in_(FINAL), Order.expires_at <= gw.clock()),
    )).all()
    for order_id in ended:
        gw.limiter.forget(interval, order_id)
    return bool(ended)


@dataclass(frozen=True)
class _Item:
    """What an order pays for: a package or an operator's bill."""

    kind: Kind
    amount: int
    currency: str
    name: str  # as the SMS names it
    package_id: str | None = None
    bill_id: str | None = None


def _item(session: Session, device_id: str, *, package_id: object, bill_id: object,
          amount: object = None) -> _Item:
    """:raise InvalidInput, NotFound, Conflict: no such package or outstanding bill."""
    if bill_id is None:
        package = catalog.get_package(session, package_id)
        return _Item(Kind.PACKAGE, package.price, package.currency, package.name,
                     package_id=package.id)
    if package_id is not None:
        raise InvalidInput("give package_id or bill_id, not both", code="invalid_order")
    bill = bills.get_bill(session, bill_id, device_id)
    if amount is not None and amount != bill.amount:
        raise Conflict(f"a bill is paid in full: amount must be {bill.amount}",
                       code="partial_payment_refused", amount=bill.amount)
    return _Item(Kind.BILL, bill.amount, bill.currency, bill.description, bill_id=bill.id)


def start_order(gw: Gateway, *, device_id: object, phone: object, package_id: object = None,
                bill_id: object = None, amount: object = None, retry_of: str | None = None,
                app_id: str | None = None) -> Order:
    """Create an order for the device (a package, or an outstanding bill paid in full) and ask
    the phone to pay it.

    Bound phone: hold the price on the wallet (else its linked card) and send a code SMS.
    Unbound phone: send a payment-link SMS. Neither source covers the price: the order fails
    at once with ``insufficient_funds``. Either way the order also has a payment page, which
    the TV may show as a QR code. ``retry_of``: the ended order this one tries again.
    ``app_id``: the TV app asking, whose device it must be or become (``apps.claim_device``).

    :raise InvalidInput: bad device id or phone, ``unknown_package``.
    :raise NotFound: ``device_not_found``, ``bill_not_found``.
    :raise Conflict: ``bill_already_paid``, ``partial_payment_refused``.
    :raise RateLimited: a per-device or per-phone limit is exhausted.
    """
    device_id = validate_device_id(device_id)
    e164 = phones.parse(phone, gw.settings.PHONE_COUNTRIES)
    order_id = _new_order_id()
    limits = _limits(gw, e164, device_id)
    try:
        with gw.db.transaction() as session:  # one transaction: each costs a round of commits
            now = gw.clock()
            if app_id is None:
                activation.ensure_device(session, device_id, now)
            else:
                apps.claim_device(session, app_id, device_id, now)
            item = _item(session, device_id, package_id=package_id, bill_id=bill_id,
                         amount=amount)
            # only now: another app's device or an unknown item uses up no limit
            _acquire_limits(gw, session, limits.all(), order_id, interval=limits.interval)
            wallet = wallets.bound_wallet(session, e164, lock=True)
            order = _new_order(gw, session, order_id, item, device_id, phone=e164,
                               wallet_id=wallet.id if wallet else None, retry_of=retry_of,
                               now=now)
            if wallet is not None:
                _request_code(gw, session, order, item.name, wallet, now)
            else:
                _send_link(gw, session, order, item.name, now)
            _write_state(session, order)
    except BaseException:
        for limit in limits.all():
            gw.limiter.forget(limit, order_id)
        raise
    if order.status != Status.AWAITING_CODE:  # no code SMS went out: give its daily slot back
        gw.limiter.forget(limits.codes, order_id)
    log.info("order %s for device %s: %s %s", order.id, device_id, order.status,
             order.reason or "")
    return order


def start_device_order(gw: Gateway, *, device_id: object, kind: object,
                       package_id: object = None, bill_id: object = None, amount: object = None,
                       currency: object = None, retry_of: str | None = None) -> Order:
    """A phone-less order whose payment page the TV shows as a QR code (CN105681837).

    ``renewal`` extends a package on the device; ``recharge`` tops up the device's
    stored-value balance by ``amount`` minor units of ``CURRENCY``; ``bill`` pays an
    outstanding bill of the device in full.

    :raise InvalidInput: bad device id, kind, package, bill, amount or currency.
    :raise RateLimited: ``device_rate_limited``.
    """
    device_id = validate_device_id(device_id)
    settings = gw.settings
    if kind == Kind.BILL and bill_id is None:
        raise InvalidInput("a bill code needs bill_id", code="missing_field")
    if kind == Kind.RENEWAL:
        with gw.db.read() as session:
            item = replace(_item(session, device_id, package_id=package_id, bill_id=None),
                           kind=Kind.RENEWAL)
    elif kind == Kind.BILL:
        with gw.db.read() as session:
            item = _item(session, device_id, package_id=None, bill_id=bill_id, amount=amount)
    elif kind == Kind.RECHARGE:
        if type(amount) is not int or not 0 < amount <= settings.RECHARGE_MAX_AMOUNT:
            raise InvalidInput(f"amount must be a whole number of minor units from 1 to "
                               f"{settings.RECHARGE_MAX_AMOUNT}", code="invalid_amount")
        if currency not in (None, settings.CURRENCY):
            raise InvalidInput(f"a device balance is kept in {settings.CURRENCY}",
                               code="invalid_currency")
        item = _Item(Kind.RECHARGE, amount, settings.CURRENCY, "")
    else:
        raise InvalidInput("kind must be renewal, recharge or bill", code="invalid_kind")
    order_id = _new_order_id()
    device_limit = _device_limit(gw, device_id)
    try:
        with gw.db.transaction() as session:
            now = gw.clock()
            activation.ensure_device(session, device_id, now)
            _acquire_limits(gw, session, [device_limit], order_id)
            order = _new_order(gw, session, order_id, item, device_id, retry_of=retry_of,
                               now=now)
            order.expires_at = now + timedelta(seconds=settings.WAP_LINK_TTL_SECONDS)
            _move(session, order, Status.AWAITING_WAP, now)
            _write_state(session, order)
    except BaseException:
        gw.limiter.forget(device_limit, order_id)
        raise
    log.info("order %s for device %s: %s by QR code", order.id, device_id, kind)
    return order


def _new_order(gw: Gateway, session: Session, order_id: str, item: _Item, device_id: str, *,
               now: datetime, phone: str | None = None, wallet_id: str | None = None,
               retry_of: str | None = None) -> Order:
    """Write a new order (``created``) as plain SQL and return it as an object outside the
    session: its creator changes it in hand and writes the end state with ``_write_state``.
    (The unit of work cost more Python than the order's two statements.)"""
    row = {
        "id": order_id, "kind": item.kind, "device_id": device_id,
        "package_id": item.package_id, "bill_id": item.bill_id, "phone": phone,
        "retry_of": retry_of, "wallet_id": wallet_id,
        "channel": Channel.SMS_CODE if wallet_id else Channel.WAP, "status": Status.CREATED,
        "reason": None, "amount": item.amount, "currency": item.currency, "code_hash": None,
        "code_attempts": 0, "paid_from": None, "expires_at": None,
        "link_token_hash": tokens.token_hash(tokens.link_token(gw.secret_key, order_id)),
        "created_at": now, "updated_at": now,
    }
    insert_rows(session, Order, row)
    order = Order(**row)
    _record_event(session, order, now)
    return order


# What changes on an order once written; ``_write_state`` writes it from an object in hand.
_STATE = ("status", "reason", "code_hash", "code_attempts", "paid_from", "expires_at",
          "updated_at")
_WRITE_STATE = (update(Order).where(Order.id == bindparam("order"))
                .values({name: bindparam(name) for name in _STATE}))


def _state(order: Order) -> dict[str, Any]:
    return {name: getattr(order, name) for name in _STATE}


def _write_state(session: Session, order: Order) -> None:
    """Write the state of an order object outside the session (``_new_order``,
    ``confirm_by_code``): the hot paths change orders in hand and write each once."""
    session.connection().execute(_WRITE_STATE, {"order": order.id, **_state(order)})


def _request_code(gw: Gateway, session: Session, order: Order, item_name: str,
                  wallet: Wallet, now: datetime) -> None:
    sources = wallets.funding_sources(session, wallet)
    source = ledger.place_hold(session, order.id, sources, order.amount, order.currency, now)
    if source is None:
        _move(session, order, Status.FAILED, now, Reason.INSUFFICIENT_FUNDS)
        return
    ttl = gw.settings.CODE_TTL_SECONDS
    code = _unique_code(gw, session, order)
    order.code_hash = _digest(gw, order, code)
    order.expires_at = now + timedelta(seconds=ttl)
    _move(session, order, Status.AWAITING_CODE, now, data={"phone": phones.mask(order.phone)})
    texts = gw.texts
    paying = wallets.describe_source(session, source)
    card = paying.card
    values = {
        "source": texts.source(paying.kind, bank=card.bank if card else "",
                               last4=card.last4 if card else ""),
        "package": item_name, "amount": texts.amount(Money(order.amount, order.currency)),
        "minutes": math.ceil(ttl / 60),
    }
    queued = outbox.queue(session, to=order.phone or "", kind="code", order_id=order.id,
                          now=now, body=texts.render("code", code=code, **values),
                          redacted_body=texts.render("code", code=CODE_MASK, **values),
                          expires_at=order.expires_at)
    if queued.status == SmsStatus.FAILED:  # the phone opted out of our SMS
        _end(session, order, Status.FAILED, Reason.SMS_UNDELIVERABLE, now)


def _send_link(gw: Gateway, session: Session, order: Order, item_name: str,
               now: datetime) -> None:
    ttl = gw.settings.WAP_LINK_TTL_SECONDS
    order.expires_at = now + timedelta(seconds=ttl)
    _move(session, order, Status.AWAITING_WAP, now, data={"phone": phones.mask(order.phone)})
    texts = gw.texts
    values = {"package": item_name, "amount": texts.amount(Money(order.amount, order.currency)),
              "minutes": math.ceil(ttl / 60)}
    url = payment_url(gw, order)
    outbox.queue(session, to=order.phone or "", kind="link", order_id=order.id, now=now,
                 body=texts.render("link", url=url, **values),
                 redacted_body=texts.render("link", url=url.rsplit("/", 1)[0] + "/…", **values),
                 expires_at=order.expires_at)


def payment_url(gw: Gateway, order: Order) -> str:
    """The order's payment page, as sent by SMS and shown in its QR code."""
    return tokens.payment_url(gw.settings.PUBLIC_BASE_URL,
                              tokens.link_token(gw.secret_key, order.id))


def _digest(gw: Gateway, order: Order, code: str) -> str:
    return otp.code_digest(gw.secret_key, code, order_id=order.id, amount=order.amount,
                           currency=order.currency, package_id=order.package_id or "")


def _code_matches(gw: Gateway, order: Order | Row[Any], code: str) -> bool:
    return order.code_hash is not None and otp.code_matches(
        gw.secret_key, code, order.code_hash, order_id=order.id, amount=order.amount,
        currency=order.currency, package_id=order.package_id or "")


# the columns a code digest covers, not whole orders
_OTHERS_WAITING = (
    select(Order.id, Order.code_hash, Order.amount, Order.currency, Order.package_id)
    .where(Order.phone == bindparam("phone"), Order.id != bindparam("order"),
           Order.status == Status.AWAITING_CODE))


def _unique_code(gw: Gateway, session: Session, order: Order) -> str:
    """A fresh code that no other pending order of the same phone would accept."""
    others = session.execute(_OTHERS_WAITING, {"phone": order.phone, "order": order.id}).all()
    while True:
        code = otp.new_code()
        if not any(_code_matches(gw, other, code) for other in others):
            return code


# --- moving an order along -----------------------------------------------------------------


def _record_event(session: Session, order: Order, now: datetime,
                  data: dict[str, Any] | None = None) -> None:
    tv_events.record(session, device_id=order.device_id, order_id=order.id, now=now,
                     event_type=tv_events.EventType.ORDER_STATUS, status=order.status,
                     reason=order.reason, data=data)
    metrics.count_order_status(session, order.status, order.channel, order.kind, order.reason)


def _move(session: Session, order: Order, target: Status, now: datetime,
          reason: Reason | None = None, data: dict[str, Any] | None = None) -> None:
    order.status = next_status(order.status, target)
    order.reason = reason
    order.updated_at = now
    _record_event(session, order, now, data)


def _end(session: Session, order: Order, target: Status, reason: Reason, now: datetime) -> None:
    """Close a pending order without payment: release its hold, keep no live code."""
    _move(session, order, target, now, reason)
    ledger.release(session, order.id, now)
    outbox.close_code_messages(session, order.id, now)


def _complete(gw: Gateway, session: Session, order: Order, paid_from: str,
              now: datetime) -> None:
    """Mark a paid order paid, deliver what it bought and tell the viewer.

    The caller has moved the money in this transaction (and settled the bill of a bill order,
    ``_bill_still_due``). A package or renewal starts or extends the entitlement on the TV; a
    recharge was credited to the device's balance by the payment. The operator's BOSS is told.
    """
    order.paid_from = paid_from
    _move(session, order, Status.PAID, now)
    outbox.close_code_messages(session, order.id, now)
    paid = {"device_id": order.device_id, "order_id": order.id, "amount": order.amount,
            "currency": order.currency}
    if order.kind == Kind.RECHARGE:
        balance = ledger.balance(session, ledger.device_account(order.device_id))
        _move(session, order, Status.ACTIVATED, now, data={"balance": balance})
        boss.record(session, boss.EventType.RECHARGE_COMPLETED, {**paid, "balance": balance}, now)
        log.info("order %s recharged device %s", order.id, order.device_id)
        return
    if order.kind == Kind.BILL:
        _move(session, order, Status.ACTIVATED, now, data={"bill_id": order.bill_id})
        boss.record(session, boss.EventType.BILL_PAID, {**paid, "bill_id": order.bill_id}, now)
        if order.phone:
            outbox.queue(session, to=order.phone, kind="confirmed", order_id=order.id, now=now,
                         body=gw.texts.render("bill_paid", amount=gw.texts.amount(
                             Money(order.amount, order.currency))))
        log.info("order %s paid bill %s of device %s", order.id, order.bill_id, order.device_id)
        return
    with session.no_autoflush:  # an order in the session is written once, as activated
        package = catalog.get_package(session, order.package_id)
        active_until = activation.activate(session, order.device_id, package, now)
    _move(session, order, Status.ACTIVATED, now,
          data={"package_id": package.id, "active_until": iso(active_until)})
    boss.record(session, boss.EventType.ENTITLEMENT_ACTIVATED,
                {**paid, "package_id": package.id, "kind": order.kind,
                 "active_until": active_until}, now)
    if order.phone:
        outbox.queue(session, to=order.phone, kind="confirmed", order_id=order.id, now=now,
                     body=gw.texts.render("confirmed", package=package.name,
                                          until=gw.texts.date(active_until)))
    log.info("order %s activated %s on device %s until %s", order.id, package.id,
             order.device_id, active_until.isoformat())


def _bill_still_due(session: Session, order: Order, now: datetime) -> bool:
    """Settle the bill a bill order pays, before any money moves; if another order paid it
    first, fail this one (releasing its hold) and say no."""
    if order.kind != Kind.BILL or bills.settle(session, order.bill_id or "", order.id, now):
        return True
    _end(session, order, Status.FAILED, Reason.BILL_ALREADY_PAID, now)
    log.info("order %s failed: its bill was paid by another order", order.id)
    return False


# --- confirming by SMS code --------------------------------------------------------------------


class CodeOutcome(StrEnum):
    CONFIRMED = "confirmed"
    WRONG = "wrong_code"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    EXPIRED = "code_expired"
    ALREADY_USED = "code_used"
    CLOSED = "order_closed"
    NO_ORDER = "no_order"


@dataclass(frozen=True)
class CodeResult:
    outcome: CodeOutcome
    order_id: str | None = None
    tries_left: int | None = None


_CODE_CANDIDATES = (select(Order)
                    .where(Order.phone == bindparam("phone"), Order.code_hash.is_not(None),
                           Order.created_at >= bindparam("since"))
                    .order_by(Order.id).with_for_update())


def confirm_by_code(gw: Gateway, session: Session, phone: str, code: str,
                    now: datetime) -> CodeResult:
    """Apply a code the phone sent, inside the caller's transaction.

    A right code pays and activates its order; a wrong one counts against every order of the
    phone still waiting for a code, and fails those that run out of tries. The phone's orders
    are taken out of the session: the caller must not hold changes to them in it.
    """
    candidates = session.scalars(_CODE_CANDIDATES,
                                 {"phone": phone, "since": now - _CODE_LOOKBACK}).all()
    before = []
    for order in candidates:  # locked; changed in hand and written once, as in _new_order
        session.expunge(order)
        before.append(_state(order))
    result = _apply_code(gw, session, candidates, code, now)
    for order, state in zip(candidates, before, strict=True):
        if _state(order) != state:
            _write_state(session, order)
    return result


def _apply_code(gw: Gateway, session: Session, candidates: Sequence[Order], code: str,
                now: datetime) -> CodeResult:
    ledger.lock_accounts(session, held_by=[o.id for o in candidates])
    for order in candidates:
        if is_lapsed(order.status, order.expires_at, now):
            _end(session, order, Status.EXPIRED, Reason.EXPIRED, now)
    matches = sorted((o for o in candidates if _code_matches(gw, o, code)),
                     key=lambda o: o.status != Status.AWAITING_CODE)
    if matches:
        order = matches[0]
        if order.status == Status.AWAITING_CODE:
            if not _bill_still_due(session, order, now):
                return CodeResult(CodeOutcome.CLOSED, order.id)
            hold = ledger.capture(session, order.id, now)
            _complete(gw, session, order, hold.account_id, now)
            return CodeResult(CodeOutcome.CONFIRMED, order.id)
        outcome = {Status.EXPIRED: CodeOutcome.EXPIRED, Status.PAID: CodeOutcome.ALREADY_USED,
                   Status.ACTIVATED: CodeOutcome.ALREADY_USED}.get(Status(order.status),
                                                                   CodeOutcome.CLOSED)
        return CodeResult(outcome, order.id)
    waiting = [o for o in candidates if o.status == Status.AWAITING_CODE]
    if not waiting:
        return CodeResult(CodeOutcome.NO_ORDER)
    limit = gw.settings.CODE_MAX_ATTEMPTS
    for order in waiting:
        order.code_attempts += 1
        if order.code_attempts >= limit:
            _end(session, order, Status.FAILED, Reason.TOO_MANY_ATTEMPTS, now)
        else:
            tv_events.record(session, device_id=order.device_id, order_id=order.id, now=now,
                             event_type=tv_events.EventType.WRONG_CODE,
                             data={"tries_left": limit - order.code_attempts})
    still = [o for o in waiting if o.status == Status.AWAITING_CODE]
    if not still:
        return CodeResult(CodeOutcome.TOO_MANY_ATTEMPTS, waiting[-1].id)
    nearest = min(still, key=lambda o: limit - o.code_attempts)
    return CodeResult(CodeOutcome.WRONG, nearest.id, limit - nearest.code_attempts)


def code_sms_undeliverable(session: Session, order_id: str, now: datetime) -> None:
    """The code SMS cannot reach the phone: fail the order so the TV can offer its QR code."""
    order = _load(session, order_id, lock=True)
    if _expire_if_lapsed(session, order, now):  # too late anyway: it expired
        return
    if order.status == Status.AWAITING_CODE:
        _end(session, order, Status.FAILED, Reason.SMS_UNDELIVERABLE, now)
        log.info("order %s failed: its code SMS is undeliverable", order.id)


# --- paying on the payment page ----------------------------------------------------------------


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
    ``bind_phone`` binds the order's phone to the wallet for SMS confirmation next time.

    :raise InvalidInput: ``invalid_source`` (no such source in this wallet).
    :raise Conflict: ``insufficient_funds`` or ``currency_mismatch``; nothing changed.
    """
    with gw.db.transaction() as session:
        order = _load(session, order_id, lock=True)
        now = gw.clock()
        _expire_if_lapsed(session, order, now)
        if not Status(order.status).pending:
            return order
        account = {s.kind: s for s in wallets.source_balances(session, wallet_id)}.get(source)
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
        if not _bill_still_due(session, order, now):
            return order
        try:
            ledger.charge(session, order.id, account.account_id, credit, order.amount,
                          order.currency, now)
        except ledger.InsufficientFunds:
            raise Conflict("this source does not hold enough to pay the order",
                           code="insufficient_funds") from None
        order.wallet_id = wallet_id
        _complete(gw, session, order, account.account_id, now)
        if bind_phone and order.phone:
            wallets.bind_phone(session, order.phone, wallet_id, now)
    return order


# --- reading, cancelling, expiring -------------------------------------------------------------


def get_order(gw: Gateway, order_id: str) -> Order:
    """The order as it stands now: one whose code or link has lapsed is expired first.

    :raise NotFound: ``order_not_found``.
    """
    with gw.db.read() as session:
        order = _load(session, order_id)
    if is_lapsed(order.status, order.expires_at, gw.clock()):
        with gw.db.transaction() as session:
            order = _load(session, order_id, lock=True)
            _expire_if_lapsed(session, order, gw.clock())
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
        order = _load(session, order_id, lock=True)
        now = gw.clock()
        _expire_if_lapsed(session, order, now)
        cancelled = Status(order.status).pending
        if cancelled:
            _end(session, order, Status.CANCELLED, Reason.CANCELLED, now)
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
                expired += _expire_if_lapsed(session, _load(session, order_id, lock=True), now)
        except Exception:  # one order that cannot expire must not keep the others' holds
            log.exception("could not expire order %s", order_id)
    return expired


def _expire_if_lapsed(session: Session, order: Order, now: datetime) -> bool:
    if not is_lapsed(order.status, order.expires_at, now):
        return False
    _end(session, order, Status.EXPIRED, Reason.EXPIRED, now)
    log.info("order %s expired", order.id)
    return True


_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def looks_like_order_id(text: str) -> bool:
    """Whether ``text`` could name an order (anything else is no order, never a query)."""
    return _ORDER_ID.fullmatch(text) is not None


def _load(session: Session, order_id: str, *, lock: bool = False) -> Order:
    order = None
    if looks_like_order_id(order_id):
        order = session.get(Order, order_id, with_for_update=lock, populate_existing=lock)
    if order is None:
        raise NotFound(f"no order {order_id}", code="order_not_found")
    return order
