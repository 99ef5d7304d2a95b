"""The one entry for every incoming SMS, whatever carried it (HTTP gateway, SMPP, Twilio)."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy.orm import Session

from gateway import metrics, phones
from gateway.backend import checkout
from gateway.context import Gateway
from gateway.domain import otp
from gateway.domain.errors import InvalidInput
from gateway.domain.replies import CodeOutcome, CodeResult
from gateway.domain.sms import SmsStatus
from gateway.messaging import commands
from gateway.store import outbox

__all__ = ["MAX_TEXT_LENGTH", "receive_sms", "twilio_keyword"]

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 1600  # ten concatenated SMS; anything longer is not a viewer's reply


def twilio_keyword(gw: Gateway, phone: str, keyword: str) -> None:
    """Record what Twilio did itself on ``STOP`` (opt out) or ``START`` (opt in again)."""
    with gw.db.transaction() as session:
        if keyword == "STOP":
            outbox.opt_out(session, phone, "twilio STOP", gw.clock())
        elif keyword == "START":
            outbox.opt_in(session, phone)


def receive_sms(gw: Gateway, *, sender: object, text: object,
                answered_by: str | None = None) -> str | None:
    """Act on an SMS from a viewer's phone and queue the answer; return the answer's text.

    A code pays its order (the confirmation SMS comes from the payment itself); a command
    (``gateway.messaging.commands``) is carried out; anything else gets a short reply saying what
    happened or how to confirm. ``answered_by``: the carrier
    sends the returned answer itself (TwiML), so it is recorded as sent, not queued.

    :raise InvalidInput: ``invalid_phone`` or ``phone_country_not_allowed`` for the sender,
        ``invalid_text`` for a text that is not a string of reasonable length.
    """
    received = time.perf_counter()
    phone = phones.parse(sender, gw.settings.PHONE_COUNTRIES)
    if not isinstance(text, str) or len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"text must be a string of at most {MAX_TEXT_LENGTH} characters",
                           code="invalid_text")
    command = commands.parse(text)
    code = None if command is not None else otp.code_in_reply(text)
    reply, order_id = None, None
    if command is not None and command.name == "pay":  # starts an order: its own transactions
        reply = commands.pay(gw, phone, command)
    with gw.db.transaction() as session:
        now = gw.clock()
        if command is None:
            result = (checkout.confirm_by_code(gw, session, phone, code, now) if code
                      else CodeResult(CodeOutcome.NO_ORDER))
            reply, order_id = _reply(gw, result), result.order_id
        elif command.name != "pay":
            reply = commands.answer(gw, session, phone, command, now)
        reply = _queue(session, phone, reply, answered_by, order_id, now)
        if command is not None and command.name == "stop":  # after its answer is queued
            outbox.opt_out(session, phone, "sms STOP", now)
    if code and result.outcome is CodeOutcome.CONFIRMED:  # committed: paid and activated
        metrics.CODE_REPLY_TO_ACTIVATION.observe(time.perf_counter() - received)
    what = command.name if command else f"code {result.outcome}" if code else "text"
    log.info("sms from %s: %s", phones.mask(phone), what)
    return reply


def _queue(session: Session, phone: str, reply: str | None, answered_by: str | None,
           order_id: str | None, now: datetime) -> str | None:
    """Queue the answer (or record it sent by the carrier); None if the phone opted out."""
    if reply is None:
        return None
    queued = outbox.queue(session, to=phone, kind="reply", body=reply, now=now,
                          order_id=order_id, sent_by=answered_by)
    return None if queued.status == SmsStatus.FAILED else reply


def _reply(gw: Gateway, result: CodeResult) -> str | None:
    if result.outcome is CodeOutcome.CONFIRMED:
        return None  # the payment sends its own confirmation
    if result.outcome is CodeOutcome.NO_ORDER:
        return gw.texts.render("help")
    return gw.texts.render(result.outcome.value, left=result.tries_left)
