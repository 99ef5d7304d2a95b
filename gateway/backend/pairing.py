"""Pairing a phone with a TV (CN104008477A claims 1 and 5).

The TV shows a short code. The viewer texts ``BIND <code>`` to the service number, or opens
the pairing page and confirms the phone by an SMS code. From then on the TV can order with the
paired phone instead of a typed number. One phone per TV; a phone may pair with several TVs.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway import phones
from gateway.backend import activation, pumping, tv_events
from gateway.context import Gateway
from gateway.domain import otp
from gateway.domain.errors import Conflict, NotFound, RateLimited
from gateway.domain.texts import CODE_MASK
from gateway.store import outbox
from gateway.store.models import Device, Pairing, PairingCode
from gateway.store.redis_store import Limit

__all__ = ["ALPHABET", "CODE_LENGTH", "BindOutcome", "BindResult", "bind_by_sms", "code_for_page",
           "confirm_on_page", "normalize_code", "page_url", "paired_devices", "paired_phone",
           "request_code", "require_paired_phone", "send_page_code", "unpair_device",
           "unpair_phone", "valid_code"]

log = logging.getLogger(__name__)

# Easy to read aloud and to type with a remote: no 0/O, 1/I/L. 31^6 ≈ 8.9e8 codes.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
_CODES_PER_DEVICE_HOUR = 10
_BINDS_PER_PHONE_HOUR = 5  # every BIND attempt counts: guessing a live code takes ~10^8 tries
# The pairing page's SMS codes, as Twilio Verify bounds its own: a code pairs after at most 5
# wrong tries however many times it was sent again, at most 5 sends a pairing, and a day's
# sends per phone and per TV are capped, so the page cannot be used to text a phone again and
# again, nor to guess.
_PAGE_CODE_ATTEMPTS = 5
_PAGE_SENDS_PER_PAIRING = 5
_PAGE_SENDS_PER_PHONE_DAY = 10
_PAGE_SENDS_PER_DEVICE_DAY = 20


def normalize_code(text: str) -> str:
    """A code as typed or texted: full-width, spaces, hyphens and case do not matter."""
    return "".join(unicodedata.normalize("NFKC", text).split()).replace("-", "").upper()


def valid_code(code: str) -> bool:
    return len(code) == CODE_LENGTH and all(c in ALPHABET for c in code)


def request_code(gw: Gateway, device_id: str) -> PairingCode:
    """A new pairing code for the TV to show; earlier unused ones of the TV stop working.

    :raise RateLimited: ``pairing_rate_limited``.
    """
    limit = Limit("pairing_rate_limited", f"device:{device_id}:pairing",
                  _CODES_PER_DEVICE_HOUR, 3600)
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    _take(gw, [limit], code, "this TV asked for too many pairing codes; try again later")
    with gw.db.transaction() as session:
        now = gw.clock()
        activation.ensure_device(session, device_id, now)
        session.execute(delete(PairingCode).where(PairingCode.device_id == device_id,
                                                  PairingCode.used_at.is_(None)))
        row = PairingCode(code=code, device_id=device_id, created_at=now, confirm_attempts=0,
                          expires_at=now + timedelta(seconds=gw.settings.PAIRING_CODE_TTL_SECONDS))
        session.add(row)
    return row


def _take(gw: Gateway, limits: list[Limit], member: str, detail: str) -> None:
    """A slot in every limit, or :raise RateLimited: naming the one that refused."""
    refusal = gw.limiter.acquire(limits, member, gw.clock())
    if refusal:
        raise RateLimited(detail, code=refusal.limit.code, retry_after=refusal.retry_after)


def _live_code(session: Session, code: str, now: datetime, *,
               lock: bool = True) -> PairingCode | None:
    if not valid_code(code):
        return None
    row = session.get(PairingCode, code, with_for_update=lock)
    if (row is None or row.used_at is not None or row.expires_at <= now
            or row.confirm_attempts >= _PAGE_CODE_ATTEMPTS):  # guessed at: the TV shows a new one
        return None
    return row


def _pair(session: Session, row: PairingCode, phone: str, now: datetime) -> None:
    """Pair the code's TV with ``phone`` (replacing any phone it had) and use up the code."""
    row.used_at = now
    pairing = session.get(Pairing, row.device_id, with_for_update=True)
    if pairing is None:
        session.add(Pairing(device_id=row.device_id, phone=phone, created_at=now))
    else:
        pairing.phone, pairing.created_at = phone, now
    tv_events.record(session, device_id=row.device_id, event_type=tv_events.TvEvent.PAIRED,
                     now=now, data={"phone": phones.mask(phone)})
    log.info("device %s paired with %s", row.device_id, phones.mask(phone))


class BindOutcome(StrEnum):
    PAIRED = "paired"
    BAD_CODE = "bad_code"  # unknown, used or expired
    TOO_MANY = "too_many"


@dataclass(frozen=True)
class BindResult:
    outcome: BindOutcome
    device_id: str | None = None


def bind_by_sms(gw: Gateway, session: Session, phone: str, code: str,
                now: datetime) -> BindResult:
    """``BIND <code>`` from ``phone``, in the caller's transaction."""
    limit = Limit("bind_rate_limited", f"phone:{phone}:bind", _BINDS_PER_PHONE_HOUR, 3600)
    if gw.limiter.acquire([limit], secrets.token_hex(8), now):
        return BindResult(BindOutcome.TOO_MANY)
    row = _live_code(session, normalize_code(code), now)
    if row is None:
        return BindResult(BindOutcome.BAD_CODE)
    _pair(session, row, phone, now)
    return BindResult(BindOutcome.PAIRED, row.device_id)


def code_for_page(gw: Gateway, code: str) -> PairingCode:
    """The pairing code a page names, while it can be used.

    :raise NotFound: ``pairing_code_not_found`` (unknown, used or expired).
    """
    with gw.db.read() as session:
        row = _live_code(session, normalize_code(code), gw.clock(), lock=False)
    if row is None:
        raise NotFound("this pairing code is unknown, used or expired",
                       code="pairing_code_not_found")
    return row


def page_url(gw: Gateway, code: str) -> str:
    """The pairing page of a code: the target of the TV's pairing QR code."""
    return f"{gw.settings.PUBLIC_BASE_URL}/w/pair/{code}"


def send_page_code(gw: Gateway, code: str, phone: object) -> str:
    """Send a confirmation code by SMS to the phone typed on the pairing page; return it E.164.

    :raise InvalidInput: a bad phone number.
    :raise NotFound: ``pairing_code_not_found``.
    :raise RateLimited: ``phone_rate_limited`` (one SMS a minute to a phone), or
        ``pairing_sms_limited`` (5 sends a pairing, 10 a day to a phone, 20 a day for a TV),
        ``sms_budget_exhausted`` or ``sms_paused`` (``gateway.backend.pumping``).
    """
    e164 = phones.parse(phone, gw.settings.PHONE_COUNTRIES)
    live = code_for_page(gw, code)  # a dead code uses up no limit
    with gw.db.read() as session:
        app_id = session.scalar(select(Device.app_id).where(Device.id == live.device_id))
    now, day = gw.clock(), 24 * 3600
    pumping.refuse_if_paused(gw, e164, now)
    _take(gw, [
        Limit("phone_rate_limited", f"phone:{e164}:pairing-sms", 1, 60),
        Limit("pairing_sms_limited", f"pairing:{live.code}:sms", _PAGE_SENDS_PER_PAIRING,
              gw.settings.PAIRING_CODE_TTL_SECONDS),
        Limit("pairing_sms_limited", f"phone:{e164}:pairing-sms-day", _PAGE_SENDS_PER_PHONE_DAY,
              day),
        Limit("pairing_sms_limited", f"device:{live.device_id}:pairing-sms-day",
              _PAGE_SENDS_PER_DEVICE_DAY, day),
        *pumping.budget_limits(gw, app_id, e164),  # the TV app's SMS budget, as for orders
    ], secrets.token_hex(8), "too many pairing codes were sent")
    confirm = otp.new_code()
    with gw.db.transaction() as session:
        now = gw.clock()
        row = _live_code(session, normalize_code(code), now)
        if row is None:
            raise NotFound("this pairing code is unknown, used or expired",
                           code="pairing_code_not_found")
        row.phone = e164  # its wrong tries so far still count: a new code is no new chance
        row.confirm_hash = _digest(gw, row, confirm)
        values = {"minutes": max(1, int((row.expires_at - now).total_seconds() // 60))}
        outbox.queue(session, to=e164, kind="pairing", now=now, expires_at=row.expires_at,
                     body=gw.texts.render("pairing_code", code=confirm, **values),
                     redacted_body=gw.texts.render("pairing_code", code=CODE_MASK,
                                                   **values))
    return e164


def confirm_on_page(gw: Gateway, code: str, confirm: str) -> str:
    """Pair when the SMS code typed on the page is right; return the paired TV's id.

    :raise NotFound: ``pairing_code_not_found`` (also once the tries are used up).
    :raise Conflict: ``wrong_code`` with ``tries_left``.
    """
    with gw.db.transaction() as session:
        now = gw.clock()
        row = _live_code(session, normalize_code(code), now)
        if row is None or row.phone is None or row.confirm_hash is None:
            raise NotFound("this pairing code is unknown, used or expired",
                           code="pairing_code_not_found")
        digits = otp.code_in_reply(confirm) or ""
        if secrets.compare_digest(_digest(gw, row, digits), row.confirm_hash):
            _pair(session, row, row.phone, now)
            return row.device_id
        row.confirm_attempts += 1  # at the last, the pairing code itself stops working
        left = _PAGE_CODE_ATTEMPTS - row.confirm_attempts
    raise Conflict("the code is not right", code="wrong_code", tries_left=left)


def _digest(gw: Gateway, row: PairingCode, confirm: str) -> str:
    return otp.code_digest(gw.secret_key, confirm,
                           otp.CodeBinding(f"pair:{row.code}", 0, "", row.device_id))


def paired_phone(session: Session, device_id: str) -> str | None:
    return session.scalar(select(Pairing.phone).where(Pairing.device_id == device_id))


def paired_devices(session: Session, phone: str) -> list[str]:
    return list(session.scalars(
        select(Pairing.device_id).where(Pairing.phone == phone).order_by(Pairing.created_at)))


def unpair_device(gw: Gateway, device_id: str) -> bool:
    """Unpair the TV from its phone; say whether it was paired."""
    with gw.db.transaction() as session:
        return _unpair(session, [device_id], gw.clock()) > 0


def unpair_phone(session: Session, phone: str, now: datetime) -> int:
    """``UNBIND``: unpair every TV paired with ``phone``; return how many."""
    return _unpair(session, paired_devices(session, phone), now)


def _unpair(session: Session, device_ids: list[str], now: datetime) -> int:
    count = 0
    for device_id in device_ids:
        pairing = session.get(Pairing, device_id, with_for_update=True)
        if pairing is None:
            continue
        session.delete(pairing)
        tv_events.record(session, device_id=device_id, event_type=tv_events.TvEvent.UNPAIRED,
                         now=now)
        log.info("device %s unpaired from %s", device_id, phones.mask(pairing.phone))
        count += 1
    return count


def require_paired_phone(gw: Gateway, device_id: str) -> str:
    """:raise Conflict: ``device_not_paired``."""
    with gw.db.read() as session:
        phone = paired_phone(session, device_id)
    if phone is None:
        raise Conflict("this TV is not paired with a phone", code="device_not_paired")
    return phone
