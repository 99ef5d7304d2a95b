"""The SQL outbox: SMS written with the change that needs them, then drained by a provider.

The statuses a row goes through are ``gateway.domain.sms.SmsStatus``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import ColumnElement, Exists, bindparam, case, func, insert, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, object_session

from gateway import metrics
from gateway.domain.sms import WAITING, SmsStatus
from gateway.phones import mask
from gateway.store.db import Database, insert_ignore, one_of, padded
from gateway.store.models import OutboxMessage, SmsOptOut
from gateway.store.writes import insert_at_commit, write_at_commit

__all__ = ["LogProvider", "Queued", "SmsProvider", "SmsStatus", "close_code_messages",
           "dispatch_queued", "fail_if_expired", "oldest_waiting", "opt_in", "opt_out",
           "opted_out", "queue", "queue_at_commit", "recent", "redact_sent", "waiting"]

log = logging.getLogger(__name__)


_OUTBOX = OutboxMessage.__table__
_OPTED_OUT_ERROR = "the recipient opted out"


def opted_out(phone: ColumnElement[str] | InstrumentedAttribute[str]) -> Exists:
    """Whether ``phone`` opted out of SMS, as a column of a read that has the phone."""
    return select(SmsOptOut.phone).where(SmsOptOut.phone == phone).exists()


_OPTED_OUT = opted_out(bindparam("recipient"))
_QUEUE = (insert(_OUTBOX)
          .values(to_phone=bindparam("recipient"),
                  status=case((_OPTED_OUT, SmsStatus.FAILED.value), else_=bindparam("wanted")),
                  error=case((_OPTED_OUT, _OPTED_OUT_ERROR), else_=None))
          .returning(_OUTBOX.c.id, _OUTBOX.c.status))
# Said of a code SMS still queued when its order ended. Not "never sent": a message handed
# back to the queue by a worker that died may have reached the SMSC before.
_CLOSED_WHILE_QUEUED = "order closed while the SMS waited to be sent"
_WAITING = _OUTBOX.c.status == SmsStatus.QUEUED.value
# one statement: the order's code messages lose their code, and those still queued are failed
_CLOSE_CODES = (
    update(_OUTBOX)
    .where(one_of(_OUTBOX.c.order_id, "orders"), _OUTBOX.c.kind == "code")
    .values(body=_OUTBOX.c.redacted_body, updated_at=bindparam("at"),
            status=case((_WAITING, SmsStatus.FAILED.value), else_=_OUTBOX.c.status),
            error=case((_WAITING, _CLOSED_WHILE_QUEUED), else_=_OUTBOX.c.error))
    .returning(_OUTBOX.c.error))


class SmsProvider(Protocol):
    name: str

    def send(self, message: OutboxMessage) -> None: ...


class LogProvider:
    """Development provider: logs each message (masked, without its code) and marks it sent."""

    name = "log"

    def send(self, message: OutboxMessage) -> None:
        log.info("sms #%s to %s (%s): %s", message.id, mask(message.to_phone), message.kind,
                 message.redacted_body)


class Queued(NamedTuple):
    id: int
    status: str


def queue(session: Session, *, to: str, kind: str, body: str, now: datetime,
          redacted_body: str | None = None, order_id: str | None = None,
          expires_at: datetime | None = None, sent_by: str | None = None) -> Queued:
    """Write an SMS to send (one statement); return its id and status. ``sent_by``: a
    provider already carried it (a TwiML answer).

    To a phone that opted out (STOP) nothing is sent: the row is written ``failed``.
    """
    written = session.connection().execute(_QUEUE, {
        "recipient": to, "kind": kind, "order_id": order_id, "body": body,
        "redacted_body": body if redacted_body is None else redacted_body,
        "wanted": SmsStatus.SENT.value if sent_by else SmsStatus.QUEUED.value,
        "provider": sent_by, "created_at": now, "updated_at": now, "expires_at": expires_at,
    }).one()
    metrics.count_sms(session, sent_by, written.status)
    return Queued(written.id, written.status)


def queue_at_commit(session: Session, *, to: str, kind: str, body: str, order_id: str,
                    now: datetime, redacted_body: str | None = None,
                    expires_at: datetime | None = None, opted_out: bool | None = None) -> None:
    """Write an SMS to send at the transaction's commit: for a message whose row nobody needs
    back (a code, a link, a payment's confirmation), so that it goes with the transaction's
    other rows. To a phone that opted out nothing is sent: the row is written ``failed``, as
    by ``queue``. ``opted_out``: whether the phone did, if the caller read it already; else
    it is read at the commit, once for all the messages of the transaction."""
    message = _Later(to, kind, body, order_id, now, redacted_body, expires_at)
    if opted_out is None:
        session.info.setdefault(_LATER, []).append(message)
        write_at_commit(session, _queue_later)
        return
    status = SmsStatus.FAILED if opted_out else SmsStatus.QUEUED
    insert_at_commit(session, OutboxMessage, message.row(status))
    metrics.count_sms(session, None, status)


class _Later(NamedTuple):
    to: str
    kind: str
    body: str
    order_id: str
    now: datetime
    redacted_body: str | None
    expires_at: datetime | None

    def row(self, status: SmsStatus) -> dict[str, Any]:
        return {"to_phone": self.to, "kind": self.kind, "order_id": self.order_id,
                "body": self.body,
                "redacted_body": self.body if self.redacted_body is None else self.redacted_body,
                "status": status.value, "provider": None,
                "error": _OPTED_OUT_ERROR if status == SmsStatus.FAILED else None,
                "created_at": self.now, "updated_at": self.now, "expires_at": self.expires_at,
                "attempts": 0}


_LATER = "outbox.later"  # session.info: messages to write at commit


def _queue_later(session: Session) -> None:
    later: list[_Later] = session.info.pop(_LATER, [])
    if len(later) == 1:  # one statement, the opt-out checked in it
        message = later[0]
        queue(session, to=message.to, kind=message.kind, body=message.body, now=message.now,
              redacted_body=message.redacted_body, order_id=message.order_id,
              expires_at=message.expires_at)
        return
    if not later:
        return
    opted_out = set(session.scalars(
        select(SmsOptOut.phone).where(one_of(SmsOptOut.phone, "phones")),
        {"phones": padded({message.to for message in later})}))
    for message in later:
        status = SmsStatus.FAILED if message.to in opted_out else SmsStatus.QUEUED
        insert_at_commit(session, OutboxMessage, message.row(status))
        metrics.count_sms(session, None, status)


def opt_out(session: Session, phone: str, source: str, now: datetime) -> None:
    """The phone unsubscribed (STOP, or its carrier told us): send it nothing from now on."""
    insert_ignore(session, SmsOptOut, phone=phone, source=source, created_at=now)
    log.info("%s opted out of SMS (%s)", mask(phone), source)


def opt_in(session: Session, phone: str) -> bool:
    """The phone subscribed again (START); say whether it had opted out."""
    found = session.get(SmsOptOut, phone)
    if found is not None:
        session.delete(found)
        session.flush()  # so that an answer queued next in this transaction is sent
        log.info("%s opted in to SMS again", mask(phone))
    return found is not None


def close_code_messages(session: Session, order_id: str, now: datetime) -> None:
    """Once an order stops waiting for its code, keep no readable code and send none late.

    Done at the transaction's commit, for all the orders it closed in one statement: nothing
    reads the code messages back in the meantime, and a worker sees the change only once it
    is committed anyway.
    """
    session.info.setdefault(_CODES_TO_CLOSE, {})[order_id] = now
    write_at_commit(session, _close_codes)


_CODES_TO_CLOSE = "outbox.codes_to_close"  # session.info: order id -> when it was closed


def _close_codes(session: Session) -> None:
    closing: dict[str, datetime] = session.info.pop(_CODES_TO_CLOSE, {})
    if not closing:
        return
    errors = session.connection().execute(_CLOSE_CODES, {
        "orders": padded(closing), "at": max(closing.values())}).scalars()
    # an order ends once: a message with this error was failed just now
    metrics.count_sms(session, None, SmsStatus.FAILED,
                      sum(error == _CLOSED_WHILE_QUEUED for error in errors))


def fail_if_expired(message: OutboxMessage, now: datetime) -> bool:
    """Fail a message that would arrive too late to be of use (a lapsed code)."""
    if message.expires_at is None or now < message.expires_at:
        return False
    message.status, message.error = SmsStatus.FAILED, "expired before sending"
    message.updated_at = now
    metrics.count_sms(object_session(message), None, SmsStatus.FAILED)
    return True


def dispatch_queued(db: Database, provider: SmsProvider, clock: Callable[[], datetime],
                    batch: int = 100) -> int:
    """Hand queued messages to a provider that sends at once; return how many were handled."""
    with db.transaction() as session:
        messages = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == SmsStatus.QUEUED)
            .order_by(OutboxMessage.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for message in messages:
            now = clock()
            if not fail_if_expired(message, now):
                provider.send(message)
                message.status, message.provider = SmsStatus.SENT, provider.name
                message.updated_at = now
                metrics.count_sms(session, provider.name, SmsStatus.SENT)
        return len(messages)


# The body of a message that has left the queue is never read again (nothing goes back to
# ``queued`` from there), so the secret it carries need not be kept: a code, a payment link, a
# pairing code. ``ix_sms_outbox_unredacted`` holds just the rows still carrying one.
_REDACT_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(
        select(_OUTBOX.c.id)
        .where(_OUTBOX.c.body != _OUTBOX.c.redacted_body,
               _OUTBOX.c.status.not_in([status.value for status in WAITING]))
        .limit(bindparam("batch"))
        .with_for_update(skip_locked=True)  # rows a provider is recording now: next round
        .scalar_subquery()))
    .values(body=_OUTBOX.c.redacted_body))


def redact_sent(db: Database, batch: int = 1000) -> int:
    """Replace the body of messages that have left the queue (sent, submitted, delivered,
    undeliverable or failed) by their redacted body; return how many."""
    with db.transaction() as session:
        return session.connection().execute(_REDACT_SENT, {"batch": batch}).rowcount


def recent(session: Session, to: str | None = None, limit: int = 20) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if to is not None:
        query = query.where(OutboxMessage.to_phone == to)
    return list(session.scalars(query))


def waiting(db: Database, now: datetime) -> tuple[dict[str, int], dict[str, float]]:
    """Rows not sent yet, by status: ``queued`` (for a provider to take) and ``sending``
    (taken, not answered yet); and the age in seconds of the oldest of them by the connection
    it waits for (``none``: not routed to one yet)."""
    sms = OutboxMessage
    with db.read() as session:
        rows = session.execute(select(sms.status, func.count())
                               .where(sms.status.in_(WAITING))
                               .group_by(sms.status)).all()
        oldest = session.execute(select(sms.connection, func.min(sms.created_at))
                                 .where(sms.status.in_(WAITING))
                                 .group_by(sms.connection)).all()
    return ({str(status): int(count) for status, count in rows},
            {connection or "none": max(0.0, (now - created).total_seconds())
             for connection, created in oldest})


# The lowest id of each status not sent yet is one step down its (status, id) index, however
# long the queue: a min() over created_at would read every waiting row.
_OLDEST_WAITING = select(func.min(_OUTBOX.c.created_at)).where(_OUTBOX.c.id.in_(
    [select(func.min(_OUTBOX.c.id)).where(_OUTBOX.c.status == status.value).scalar_subquery()
     for status in WAITING]))


def oldest_waiting(db: Database) -> datetime | None:
    """When the oldest row not sent yet (``queued``, or taken by a provider and not answered)
    was written; None when every row has been sent."""
    with db.read() as session:
        found: datetime | None = session.execute(_OLDEST_WAITING).scalar()
    return found
