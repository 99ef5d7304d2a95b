"""What the service holds about a phone number (China's PIPL; any operator's data officer):
exported on request, erased on request, and old SMS dropped after ``RETENTION_DAYS``.

Erasing keeps what the ledger must: an order keeps its amounts, dates and a masked number
(``138****8000``), never the number itself. The opt-out of a phone that sent STOP is kept, so
that it is never texted again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from gateway import phones
from gateway.backend import checkout, pairing
from gateway.context import Gateway
from gateway.domain.errors import Conflict
from gateway.domain.orders import PENDING
from gateway.domain.sms import WAITING, SmsStatus
from gateway.domain.times import iso
from gateway.store.db import rowcount
from gateway.store.models import (
    Order,
    OutboxMessage,
    Pairing,
    PairingCode,
    PhoneBinding,
    SmsOptOut,
    SmsPart,
)

__all__ = ["erase", "export", "purge_old_sms"]

log = logging.getLogger(__name__)

_ERASED = "erased on request"


def export(gw: Gateway, e164: str) -> dict[str, Any]:
    """Everything held about the number ``e164``, as JSON values."""
    with gw.db.read() as session:
        binding = session.get(PhoneBinding, e164)
        opt_out = session.get(SmsOptOut, e164)
        orders = session.scalars(select(Order).where(Order.phone == e164)
                                 .order_by(Order.created_at)).all()
        sms = session.scalars(select(OutboxMessage).where(OutboxMessage.to_phone == e164)
                              .order_by(OutboxMessage.id)).all()
        paired = session.scalars(select(Pairing).where(Pairing.phone == e164)).all()
        return {
            "phone": e164,
            "wallet_binding": {"wallet_id": binding.wallet_id, "since": iso(binding.created_at)}
            if binding else None,
            "paired_tvs": [{"device_id": p.device_id, "since": iso(p.created_at)}
                           for p in paired],
            "sms_opt_out": {"since": iso(opt_out.created_at), "source": opt_out.source}
            if opt_out else None,
            "orders": [{"id": o.id, "kind": o.kind, "device_id": o.device_id,
                        "package_id": o.package_id, "bill_id": o.bill_id, "status": o.status,
                        "reason": o.reason, "amount": o.amount, "currency": o.currency,
                        "paid_from": o.paid_from, "created_at": iso(o.created_at)}
                       for o in orders],
            # the text as kept: a code or link is masked once its message has gone
            "sms": [{"id": m.id, "kind": m.kind, "status": m.status, "text": m.redacted_body,
                     "created_at": iso(m.created_at)} for m in sms],
        }


def erase(gw: Gateway, e164: str) -> dict[str, int]:
    """Remove the number ``e164`` everywhere but in what the ledger keeps; return what changed,
    by kind. Idempotent: a second call changes nothing."""
    masked = phones.mask(e164)
    cancelled = 0
    with gw.db.read() as session:
        pending = session.scalars(select(Order.id).where(
            Order.phone == e164, Order.status.in_([s.value for s in PENDING]))).all()
    for order_id in pending:  # first, so that their holds are released and nothing is paid
        try:
            checkout.cancel_order(gw, order_id)
            cancelled += 1
        except Conflict:  # paid or ended meanwhile
            pass
    with gw.db.transaction() as session:
        now = gw.clock()
        changed = {
            "pending orders cancelled": cancelled,
            "wallet binding removed": rowcount(session.execute(
                delete(PhoneBinding).where(PhoneBinding.phone == e164))),
            "TVs unpaired": pairing.unpair_phone(session, e164, now),
            "pairing codes cleared": rowcount(session.execute(
                update(PairingCode).where(PairingCode.phone == e164)
                .values(phone=None, confirm_hash=None))),
            "orders masked": rowcount(session.execute(
                update(Order).where(Order.phone == e164).values(phone=masked))),
            "SMS not sent, stopped": rowcount(session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.to_phone == e164,
                       OutboxMessage.status.in_([s.value for s in WAITING]))
                .values(status=SmsStatus.FAILED.value, error=_ERASED, updated_at=now))),
            "SMS texts erased": rowcount(session.execute(
                update(OutboxMessage).where(OutboxMessage.to_phone == e164)
                .values(to_phone=masked, body="", redacted_body="", updated_at=now))),
        }
    log.info("erased %s on request: %s", masked, changed)
    return changed


def purge_old_sms(gw: Gateway, batch: int = 1000) -> int:
    """Drop SMS (and their parts) written more than ``RETENTION_DAYS`` ago, oldest first, at
    most ``batch`` a call; return how many."""
    cutoff = gw.clock() - timedelta(days=gw.settings.RETENTION_DAYS)
    return _purge_before(gw, cutoff, batch)


def _purge_before(gw: Gateway, cutoff: datetime, batch: int) -> int:
    with gw.db.transaction() as session:
        ids = list(session.scalars(select(OutboxMessage.id)
                                   .where(OutboxMessage.created_at < cutoff)
                                   .order_by(OutboxMessage.created_at).limit(batch)))
        if not ids:
            return 0
        session.execute(delete(SmsPart).where(SmsPart.outbox_id.in_(ids)))
        session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    return len(ids)
