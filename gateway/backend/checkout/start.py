"""Starting an order: a TV asks a phone to pay (a code SMS, or a payment link), or shows a
QR code of the payment page."""

from __future__ import annotations

import base64
import logging
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway import phones
from gateway.backend import activation, apps, bills, catalog, pumping
from gateway.backend.checkout.codes import digest, unique_code
from gateway.backend.checkout.lifecycle import move, record_event
from gateway.context import Gateway
from gateway.domain import funding, tokens
from gateway.domain.errors import Conflict, InvalidInput, RateLimited
from gateway.domain.money import Money
from gateway.domain.orders import FINAL, Channel, Kind, Reason, Status
from gateway.domain.texts import CODE_MASK
from gateway.payment import ledger, wallets
from gateway.store import outbox
from gateway.store.models import Order
from gateway.store.orders import OrderBook
from gateway.store.redis_store import Limit

__all__ = ["payment_url", "start_device_order", "start_order", "validate_device_id"]

log = logging.getLogger(__name__)

_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def validate_device_id(device_id: object) -> str:
    """:raise InvalidInput: ``invalid_device_id``."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise InvalidInput("device_id must be 1-64 letters, digits or . _ : -",
                           code="invalid_device_id")
    return device_id


def _new_order_id() -> str:
    return "ord_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


@dataclass(frozen=True)
class _OrderLimits:
    device: Limit  # orders per device per hour: a TV must not become an SMS pump
    interval: Limit  # one order per phone per interval, unless its last order has ended
    codes: Limit  # code SMS per phone per day
    sms: list[Limit]  # the app's SMS budgets, and the count of the number's prefix

    def all(self) -> list[Limit]:
        return [self.device, self.interval, self.codes, *self.sms]


def _device_limit(gw: Gateway, device_id: str) -> Limit:
    return Limit("device_rate_limited", f"device:{device_id}:orders",
                 gw.settings.LIMIT_DEVICE_ORDERS_PER_HOUR, 3600)


def _limits(gw: Gateway, phone: str, device_id: str, app_id: str | None) -> _OrderLimits:
    s = gw.settings
    return _OrderLimits(
        _device_limit(gw, device_id),
        Limit("phone_rate_limited", f"phone:{phone}:interval", 1, s.LIMIT_PHONE_INTERVAL_SECONDS),
        Limit("phone_daily_limit", f"phone:{phone}:codes", s.LIMIT_PHONE_CODES_PER_DAY, 86400),
        pumping.budget_limits(gw, app_id, phone),
    )


_LIMIT_TEXT = {
    "device_rate_limited": "this device has placed too many orders in the last hour",
    "phone_rate_limited": "this phone has an order in progress; try again shortly",
    "phone_daily_limit": "this phone has received too many payment codes today",
    "sms_budget_exhausted": "this TV app has sent as many SMS as its budget allows; try later",
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
    :raise RateLimited: a per-device or per-phone limit, or the app's SMS budget, is
        exhausted; ``sms_paused`` (``gateway.backend.pumping``).
    """
    device_id = validate_device_id(device_id)
    e164 = phones.parse(phone, gw.settings.PHONE_COUNTRIES)
    pumping.refuse_if_paused(gw, e164, gw.clock())
    order_id = _new_order_id()
    limits = _limits(gw, e164, device_id, app_id)
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
            payer = wallets.payer(session, e164)
            book = OrderBook(session)
            order = _new_order(gw, book, session, order_id, item, device_id, phone=e164,
                               wallet_id=payer.funding.wallet_id if payer else None,
                               retry_of=retry_of, now=now)
            if payer is not None:
                _request_code(gw, session, order, item.name, payer, now)
            else:
                _send_link(gw, session, order, item.name, now)
            book.write()
    except BaseException:
        for limit in limits.all():
            gw.limiter.forget(limit, order_id)
        raise
    if order.status != Status.AWAITING_CODE:  # no code SMS went out: give its daily slot back
        gw.limiter.forget(limits.codes, order_id)
    if order.status not in (Status.AWAITING_CODE, Status.AWAITING_WAP):  # nor any SMS
        for limit in limits.sms:
            gw.limiter.forget(limit, order_id)
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
            book = OrderBook(session)
            order = _new_order(gw, book, session, order_id, item, device_id, retry_of=retry_of,
                               now=now)
            order.expires_at = now + timedelta(seconds=settings.WAP_LINK_TTL_SECONDS)
            move(session, order, Status.AWAITING_WAP, now)
            book.write()
    except BaseException:
        gw.limiter.forget(device_limit, order_id)
        raise
    log.info("order %s for device %s: %s by QR code", order.id, device_id, kind)
    return order


def _new_order(gw: Gateway, book: OrderBook, session: Session, order_id: str, item: _Item,
               device_id: str, *, now: datetime, phone: str | None = None,
               wallet_id: str | None = None, retry_of: str | None = None) -> Order:
    """Write a new order (``created``) through ``book``, which keeps it outside the session:
    its creator changes it in hand and the book writes its end state."""
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
    order = book.insert(row)
    record_event(session, order, now)
    return order


def _hold_funds(session: Session, order: Order, sources: Sequence[funding.Source],
                now: datetime) -> funding.Source | None:
    """Hold the price on the source the funding rule chooses; if another payment took that
    money since it was read, ask the rule again without it."""
    left = list(sources)
    while (source := funding.choose(left, order.amount, order.currency)) is not None:
        if ledger.place_hold(session, order.id, source.account_id, order.amount, order.currency,
                             now):
            return source
        left.remove(source)
    return None


def _request_code(gw: Gateway, session: Session, order: Order, item_name: str,
                  payer: wallets.Payer, now: datetime) -> None:
    texts = gw.texts
    if payer.sms_opted_out:  # no code can reach the phone: hold nothing, fail at once
        move(session, order, Status.FAILED, now, Reason.SMS_UNDELIVERABLE)
        refused = _code_values(gw, order, item_name, next(iter(payer.funding.sources), None))
        outbox.queue_at_commit(session, to=order.phone or "", kind="code", order_id=order.id,
                               now=now, body=texts.render("code", code=CODE_MASK, **refused),
                               opted_out=True)
        return
    source = _hold_funds(session, order, payer.funding.sources, now)
    if source is None:
        move(session, order, Status.FAILED, now, Reason.INSUFFICIENT_FUNDS)
        return
    code = unique_code(gw, session, order)
    order.code_hash = digest(gw, order, code)
    order.expires_at = now + timedelta(seconds=gw.settings.CODE_TTL_SECONDS)
    move(session, order, Status.AWAITING_CODE, now, data={"phone": phones.mask(order.phone)})
    values = _code_values(gw, order, item_name, source)
    outbox.queue_at_commit(session, to=order.phone or "", kind="code", order_id=order.id,
                           now=now, body=texts.render("code", code=code, **values),
                           redacted_body=texts.render("code", code=CODE_MASK, **values),
                           expires_at=order.expires_at, opted_out=False)


def _code_values(gw: Gateway, order: Order, item_name: str,
                 source: funding.Source | None) -> dict[str, object]:
    """What a code SMS says besides the code."""
    texts = gw.texts
    return {
        "source": texts.source(source.kind, bank=source.bank, last4=source.last4)
        if source else "",
        "package": item_name, "amount": texts.amount(Money(order.amount, order.currency)),
        "minutes": math.ceil(gw.settings.CODE_TTL_SECONDS / 60),
    }


def _send_link(gw: Gateway, session: Session, order: Order, item_name: str,
               now: datetime) -> None:
    ttl = gw.settings.WAP_LINK_TTL_SECONDS
    order.expires_at = now + timedelta(seconds=ttl)
    move(session, order, Status.AWAITING_WAP, now, data={"phone": phones.mask(order.phone)})
    texts = gw.texts
    values = {"package": item_name, "amount": texts.amount(Money(order.amount, order.currency)),
              "minutes": math.ceil(ttl / 60)}
    url = payment_url(gw, order)
    outbox.queue_at_commit(
        session, to=order.phone or "", kind="link", order_id=order.id, now=now,
        body=texts.render("link", url=url, **values),
        redacted_body=texts.render("link", url=url.rsplit("/", 1)[0] + "/…", **values),
        expires_at=order.expires_at)


def payment_url(gw: Gateway, order: Order) -> str:
    """The order's payment page, as sent by SMS and shown in its QR code."""
    return tokens.payment_url(gw.settings.PUBLIC_BASE_URL,
                              tokens.link_token(gw.secret_key, order.id))
