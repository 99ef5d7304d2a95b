"""Notifications for the operator's BOSS (CN104967874A step 5): what was activated, revoked,
recharged or paid, as signed JSON events posted to ``BOSS_WEBHOOK_URL``.

An event is written in the transaction of the change it reports, so none is lost and none is
told of a change that rolled back; the worker posts it until the receiver answers 2xx. A row is
claimed in SQL with a lease (as SMS are), posted outside any transaction, then settled: 2xx
``delivered``; anything else is tried again after a pause that doubles from 30 s up to 6 h,
and an event still undelivered 3 days after it was made is ``failed`` (``flask --app app
events redeliver`` puts it back). Delivery is at least once: the receiver deduplicates by id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.domain.times import iso
from gateway.store.models import BossEvent
from gateway.store.writes import insert_at_commit

__all__ = ["EventStatus", "EventType", "UnknownEvents", "deliver_due", "record", "recent",
           "redeliver", "sign", "verify_signature"]

log = logging.getLogger(__name__)

TIMEOUT = (3.05, 10)  # seconds to connect, and to wait for each read of the answer
USER_AGENT = "TVPayGateway-Events/1"
MAX_AGE = timedelta(days=3)  # retried this long after the event was made, then failed
_FIRST_PAUSE, _MAX_PAUSE = 30, 6 * 3600  # seconds; the pause doubles after each failure
_LEASE = timedelta(minutes=5)  # a claimed batch is posted within it or handed back
# Keys every event's data carries (null when they do not apply), so receivers see one shape.
_DATA_KEYS = ("device_id", "package_id", "order_id", "active_until", "amount", "currency")


class EventType:
    ENTITLEMENT_ACTIVATED = "entitlement.activated"
    ENTITLEMENT_REVOKED = "entitlement.revoked"
    RECHARGE_COMPLETED = "recharge.completed"
    BILL_PAID = "bill.paid"


class EventStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def record(session: Session, event_type: str, data: dict[str, Any], now: datetime) -> str:
    """Write an event to post and return its id; ``data`` values that are datetimes are sent
    in ISO 8601 UTC."""
    event_id = "evt_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()
    data = {**dict.fromkeys(_DATA_KEYS), **data}
    body = {"id": event_id, "type": event_type, "created_at": iso(now),
            "data": {k: iso(v) if isinstance(v, datetime) else v for k, v in data.items()}}
    insert_at_commit(session, BossEvent, {
        "id": event_id, "type": event_type, "status": EventStatus.PENDING, "attempts": 0,
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "next_attempt_at": now, "created_at": now})
    return event_id


# --- signatures (stdlib only: a receiver may copy these two functions) -------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Gateway-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "t.body">``.

    The timestamp is signed with the body so that a captured request cannot be replayed later.
    """
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(secret: str, header: str | None, body: bytes, *,
                     tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """Whether ``header`` (``X-Gateway-Signature``) signs the raw ``body`` with ``secret``.

    False for a malformed header or a timestamp more than ``tolerance_seconds`` from ``now``
    (default: the current Unix time), which bounds replays. Any one of several ``v1=`` values
    may match, so a sender can sign with an old and a new secret while the secret is rotated.
    """
    timestamp, candidates = "", []
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not value:
            return False
        if key == "t":
            if timestamp or not (value.isascii() and value.isdigit()):
                return False
            timestamp = value
        elif key == "v1":
            candidates.append(value.encode())
    if not timestamp or not candidates:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest().encode()
    return any([hmac.compare_digest(expected, candidate) for candidate in candidates])


# --- delivery ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    id: str
    type: str
    body: str
    created_at: datetime


def deliver_due(gw: Gateway, batch: int = 50, *, stop: threading.Event | None = None) -> int:
    """Post the events that are due; return how many were posted (delivered or not).

    The batch ends early, handing its other events back untried, when the BOSS is unreachable
    (one timeout per batch, not fifty), when the lease is running out, or when ``stop`` is set.
    """
    url, secret = gw.settings.BOSS_WEBHOOK_URL, gw.settings.BOSS_WEBHOOK_SECRET
    if not url or not secret:
        return 0
    claimed, lease_until = _claim(gw, batch)
    outcomes: list[tuple[_Claimed, str | None, datetime]] = []
    try:
        for event in claimed:
            if (stop is not None and stop.is_set()) or \
                    gw.clock() + timedelta(seconds=sum(TIMEOUT)) >= lease_until:
                break
            error, reachable = _post(url, secret, event, gw.clock())
            outcomes.append((event, error, gw.clock()))
            if not reachable:
                break
    finally:
        _settle(gw, outcomes)
        _release(gw, [event.id for event in claimed[len(outcomes):]])
    return len(outcomes)


def _claim(gw: Gateway, batch: int) -> tuple[list[_Claimed], datetime]:
    now = gw.clock()
    lease_until = now + _LEASE
    with gw.db.transaction() as session:
        found = session.scalars(
            select(BossEvent)
            .where(BossEvent.status == EventStatus.PENDING, BossEvent.next_attempt_at <= now,
                   or_(BossEvent.lease_until.is_(None), BossEvent.lease_until < now))
            .order_by(BossEvent.next_attempt_at, BossEvent.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for event in found:
            event.lease_until = lease_until
        claimed = [_Claimed(e.id, e.type, e.body, e.created_at) for e in found]
    return claimed, lease_until


def _post(url: str, secret: str, event: _Claimed, now: datetime) -> tuple[str | None, bool]:
    """POST one event; return (the error, or None when delivered; whether the BOSS answered).

    The error never includes the URL (it may carry credentials) nor the secret.
    """
    body = event.body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Gateway-Signature": sign(secret, body, int(now.timestamp())),
               "X-Gateway-Event-Id": event.id, "X-Gateway-Event-Type": event.type}
    try:
        # No redirects: following one would turn the POST into a GET; a 3xx is retried.
        with requests.post(url, data=body, headers=headers, timeout=TIMEOUT,
                           allow_redirects=False, stream=True) as response:
            status, reason = response.status_code, response.reason or ""
    except requests.Timeout:
        return "timeout", False
    except requests.ConnectionError:
        return "unreachable: connection failed", False
    except requests.RequestException as exc:
        return f"request failed: {type(exc).__name__}", False
    if 200 <= status < 300:
        return None, True
    return f"HTTP {status} {reason}".strip()[:200], True


def _settle(gw: Gateway, outcomes: list[tuple[_Claimed, str | None, datetime]]) -> None:
    """Record what posting each event gave, at the time it was posted, in one transaction for
    the batch (events still leased to this worker, so no other posts them meanwhile)."""
    if not outcomes:
        return
    with gw.db.transaction() as session:
        rows = {row.id: row for row in session.scalars(
            select(BossEvent).where(BossEvent.id.in_([event.id for event, _, _ in outcomes]))
            .with_for_update())}
        for event, error, at in outcomes:
            row = rows.get(event.id)
            if row is None or row.status != EventStatus.PENDING:
                continue  # settled meanwhile (a lease that ran out, another worker)
            _settle_one(row, event, error, at)


def _settle_one(row: BossEvent, event: _Claimed, error: str | None, now: datetime) -> None:
    row.attempts, row.lease_until = row.attempts + 1, None
    if error is None:
        row.status, row.delivered_at, row.last_error = EventStatus.DELIVERED, now, None
        log.info("boss event %s (%s) delivered", event.id, event.type)
        return
    row.last_error = error
    give_up_at = event.created_at + MAX_AGE
    if now >= give_up_at:
        row.status = EventStatus.FAILED
        log.warning("boss event %s failed after %s attempts: %s", event.id, row.attempts,
                    error)
        return
    pause = min(_FIRST_PAUSE * 2 ** min(row.attempts - 1, 20), _MAX_PAUSE)
    row.next_attempt_at = min(now + timedelta(seconds=pause), give_up_at)
    log.warning("boss event %s: %s; next attempt at %s", event.id, error,
                iso(row.next_attempt_at))


def _release(gw: Gateway, ids: list[str]) -> None:
    """Hand claimed events back untried, due as they were."""
    if not ids:
        return
    with gw.db.transaction() as session:
        for row in session.scalars(select(BossEvent).where(BossEvent.id.in_(ids))
                                   .with_for_update()):
            row.lease_until = None


# --- for operators ------------------------------------------------------------------------------


class UnknownEvents(LookupError):
    """Some event ids do not exist; ``args[0]`` lists them."""


def recent(session: Session, status: str | None = None, limit: int = 20) -> list[BossEvent]:
    """Events, newest first."""
    query = select(BossEvent).order_by(BossEvent.created_at.desc(), BossEvent.id.desc())
    if status is not None:
        query = query.where(BossEvent.status == status)
    return list(session.scalars(query.limit(limit)))


def redeliver(gw: Gateway, ids: Sequence[str] = (), *, failed: bool = False) -> list[str]:
    """Make the given events (and with ``failed`` every failed one) pending and due now.

    Whatever their status: a receiver that lost a delivered event may have it again. An event
    past its 3 days gets one attempt and is failed again if that fails.

    :raise UnknownEvents: naming the ids that do not exist; then nothing is changed.
    """
    with gw.db.transaction() as session:
        now = gw.clock()
        rows = {row.id: row for row in session.scalars(
            select(BossEvent).where(BossEvent.id.in_(set(ids))).with_for_update())}
        unknown = [event_id for event_id in dict.fromkeys(ids) if event_id not in rows]
        if unknown:
            raise UnknownEvents(unknown)
        if failed:
            rows.update((row.id, row) for row in session.scalars(
                select(BossEvent).where(BossEvent.status == EventStatus.FAILED)
                .with_for_update()))
        for row in rows.values():
            row.status, row.next_attempt_at = EventStatus.PENDING, now
            row.lease_until, row.delivered_at = None, None
    if rows:
        log.info("boss events to deliver again: %s", ", ".join(rows))
    return list(rows)
