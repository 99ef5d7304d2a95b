"""Twilio as an SMS provider: messages sent with the official client, and status callbacks.

The background worker claims queued rows in SQL (``sending`` with a lease, as the SMPP worker
does), sends each with ``messages.create`` outside any transaction, and records the answer:

- accepted: ``submitted`` with the Message SID; the status callback later says ``delivered``
  or ``undeliverable``;
- 429, 5xx or no answer: ``queued`` again with ``retry_at`` after a growing pause, and
  ``failed`` after ``MAX_ATTEMPTS``;
- any other refusal (invalid number, unsubscribed recipient, ...): ``failed`` with Twilio's
  error code; 21610 (the recipient sent STOP) opts the phone out for the whole service.

A code SMS that fails or is undeliverable fails its order (``sms_undeliverable``), as by SMPP.
A crash between Twilio's answer and its record sends that message again when the lease ends:
delivery is at least once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import redis
import requests
from sqlalchemy import and_, or_, select, true
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from gateway.config import Settings
from gateway.context import Gateway
from gateway.domain.sms import SmsStatus
from gateway.messaging import delivery
from gateway.messaging.health import ProviderHealth
from gateway.phones import mask
from gateway.store import outbox
from gateway.store.models import OutboxMessage
from gateway.store.outbox import fail_if_expired

__all__ = ["MAX_ATTEMPTS", "PROVIDER", "TwilioSender", "account_status", "client", "dispatch",
           "record_status"]

log = logging.getLogger(__name__)

PROVIDER = "twilio"
UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient"
MAX_ATTEMPTS = 6
_BACKOFF = (5, 15, 60, 180, 600)  # seconds before attempts 2, 3, ...
_LEASE = timedelta(seconds=120)


def client(settings: Settings, timeout: float = 15) -> Client:
    """The official client, pointed at ``TWILIO_API_BASE``: the one place it is built."""
    built = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN,
                   http_client=TwilioHttpClient(timeout=timeout))
    built.api.base_url = settings.TWILIO_API_BASE
    return built


def account_status(settings: Settings, timeout: float) -> str:
    """The Twilio account's status (``active`` when it can send), for readiness.

    :raise TwilioException: Twilio did not answer, or refused the credentials.
    """
    return str(client(settings, timeout).api.account.fetch().status)


class TwilioSender:
    """Sends through the official client; statuses come back to ``/sms/twilio/status``."""

    def __init__(self, settings: Settings) -> None:
        self.client = client(settings)
        self._origin = ({"from_": settings.TWILIO_FROM} if settings.TWILIO_FROM else
                        {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID})
        self._status_callback = f"{settings.PUBLIC_BASE_URL}/sms/twilio/status"

    def send(self, to: str, body: str) -> str:
        """Hand one message to Twilio; return its Message SID.

        :raise TwilioRestException: Twilio refused it; ``TwilioException`` or
            ``requests.RequestException``: no answer.
        """
        message = self.client.messages.create(to=to, body=body,
                                              status_callback=self._status_callback,
                                              **self._origin)
        return str(message.sid)


@dataclass(frozen=True)
class _Claimed:
    id: int
    to: str
    body: str
    kind: str
    order_id: str | None
    attempts: int


def dispatch(gw: Gateway, sender: TwilioSender, health: ProviderHealth | None = None,
             batch: int = 50, handed_on: str | None = None) -> int:
    """Send queued messages through Twilio (only those whose relay_ref is ``handed_on``,
    when given: the SMPP relay handed them on); return how many were handled."""
    claimed = _claim(gw, batch, handed_on)
    for message in claimed:
        try:
            sid = sender.send(message.to, message.body)
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                _retry(gw, message, f"twilio HTTP {exc.status} {exc.code or ''}".strip(), health)
            else:
                _finish(gw, message, SmsStatus.FAILED, f"twilio {exc.code}: {exc.msg}"[:200],
                        opt_out=exc.code == UNSUBSCRIBED)
            continue
        except (TwilioException, requests.RequestException) as exc:
            _retry(gw, message, f"twilio unreachable: {type(exc).__name__}", health)
            continue
        with gw.db.transaction() as session:
            row = session.get(OutboxMessage, message.id, with_for_update=True)
            assert row is not None
            row.status, row.provider_message_id = SmsStatus.SUBMITTED, sid
            row.lease_until, row.retry_at, row.parts = None, None, 1
            row.attempts, row.updated_at = message.attempts + 1, gw.clock()
            delivery.reached(session, PROVIDER, SmsStatus.SUBMITTED, gw.clock(), count=1)
        log.info("sms #%s to %s: Twilio %s", message.id, mask(message.to), sid)
        _note(health, ok=True)
    return len(claimed)


def _note(health: ProviderHealth | None, *, ok: bool) -> None:
    """Tell the failover how Twilio answered; without Redis there is no failover to tell."""
    if health is None:
        return
    try:
        if ok:
            health.twilio_ok()
        else:
            health.twilio_failed()
    except redis.RedisError:
        pass


def _claim(gw: Gateway, batch: int, handed_on: str | None = None) -> list[_Claimed]:
    now = gw.clock()
    sms = OutboxMessage
    mine = sms.relay_ref == handed_on if handed_on else true()
    with gw.db.transaction() as session:
        found = session.scalars(
            select(sms)
            .where(or_(
                and_(sms.status == SmsStatus.QUEUED, mine,
                     or_(sms.retry_at.is_(None), sms.retry_at <= now)),
                and_(sms.status == SmsStatus.SENDING, sms.provider == PROVIDER,
                     sms.lease_until < now)))
            .order_by(sms.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = []
        for message in found:
            if fail_if_expired(message, now):
                delivery.unreachable(session, [message], now)
                continue
            message.status, message.provider = SmsStatus.SENDING, PROVIDER
            message.lease_until, message.updated_at = now + _LEASE, now
            claimed.append(_Claimed(message.id, message.to_phone, message.body, message.kind,
                                    message.order_id, message.attempts))
    return claimed


def _retry(gw: Gateway, message: _Claimed, error: str, health: ProviderHealth | None) -> None:
    _note(health, ok=False)
    attempts = message.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        _finish(gw, message, SmsStatus.FAILED, f"gave up after {attempts} attempts: {error}")
        return
    with gw.db.transaction() as session:
        now = gw.clock()
        row = session.get(OutboxMessage, message.id, with_for_update=True)
        assert row is not None
        row.status, row.lease_until, row.attempts, row.error = (SmsStatus.QUEUED, None,
                                                                attempts, error)
        row.retry_at = now + timedelta(seconds=_BACKOFF[min(attempts, len(_BACKOFF)) - 1])
        row.updated_at = now
    log.warning("sms #%s: %s; retrying at %s", message.id, error, row.retry_at.isoformat())


def _finish(gw: Gateway, message: _Claimed, status: SmsStatus, error: str, *,
            opt_out: bool = False) -> None:
    with gw.db.transaction() as session:
        now = gw.clock()
        row = session.get(OutboxMessage, message.id, with_for_update=True)
        assert row is not None
        row.status, row.error, row.lease_until, row.updated_at = status, error, None, now
        row.attempts = message.attempts + 1
        delivery.reached(session, PROVIDER, status, now, messages=[row])
        if opt_out:
            outbox.opt_out(session, message.to, f"twilio {UNSUBSCRIBED}", now)
    log.warning("sms #%s to %s failed: %s", message.id, mask(message.to), error)


_FINAL = {"delivered": SmsStatus.DELIVERED, "undelivered": SmsStatus.UNDELIVERABLE,
          "failed": SmsStatus.UNDELIVERABLE}


def record_status(gw: Gateway, sid: str, status: str, error_code: str | None) -> bool:
    """Apply a status callback; say whether it changed anything.

    Only a final status (``delivered``, ``undelivered``, ``failed``) of a message still open
    changes it, so a callback that is replayed or arrives late changes nothing.
    """
    target = _FINAL.get(status)
    if target is None:
        return False
    with gw.db.transaction() as session:
        now = gw.clock()
        row = session.scalars(select(OutboxMessage).where(
            OutboxMessage.provider_message_id == sid, OutboxMessage.provider == PROVIDER)
            .with_for_update()).first()
        if row is None or row.status not in (SmsStatus.SENDING, SmsStatus.SUBMITTED):
            return False
        row.status, row.updated_at = target, now
        delivery.reached(session, PROVIDER, target, now, messages=[row])
        if target is SmsStatus.UNDELIVERABLE:
            row.error = f"twilio {status} {error_code or ''}".strip()
            if error_code == str(UNSUBSCRIBED):
                outbox.opt_out(session, row.to_phone, f"twilio {UNSUBSCRIBED}", now)
    log.info("sms #%s: Twilio says %s", row.id, status)
    return True
