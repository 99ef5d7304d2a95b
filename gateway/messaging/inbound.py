"""The one entry for every incoming SMS, whatever carried it (HTTP gateway, SMPP, Twilio)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
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

__all__ = ["MAX_TEXT_LENGTH", "receive_sms", "receive_together", "twilio_keyword"]

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
    phone, text, command = _read(gw, sender, text)
    if command is None:
        return _plain_texts(gw, [(phone, text)], received, answered_by)[0]
    reply = None
    if command.name == "pay":  # starts an order: its own transactions
        reply = commands.pay(gw, phone, command)
    with gw.db.transaction() as session:
        now = gw.clock()
        if command.name != "pay":
            reply = commands.answer(gw, session, phone, command, now)
        reply = _queue(session, phone, reply, answered_by, None, now)
        if command.name == "stop":  # after its answer is queued
            outbox.opt_out(session, phone, "sms STOP", now)
    log.info("sms from %s: %s", phones.mask(phone), command.name)
    return reply


def receive_together(gw: Gateway, messages: Sequence[tuple[object, object]]) -> list[bool]:
    """Act on SMS that arrived together, each ``(sender, text)`` as ``receive_sms`` would;
    return for each whether it was dealt with (False: not now, its carrier should deliver it
    again). A sender or text ``receive_sms`` refuses is dealt with: logged, never acted on.

    Codes and other plain texts share one transaction (``checkout.confirm_codes``): a batch of
    replies costs a few statements and one commit, not a transaction each. A phone that sent a
    command in the batch has its messages acted on one at a time, in order, and so has every
    message of a batch whose shared transaction failed: that transaction wrote nothing, so none
    is lost and none applied twice.
    """
    received = time.perf_counter()
    dealt = [True] * len(messages)
    read: list[tuple[int, str, str, commands.Command | None]] = []
    for index, (sender, text) in enumerate(messages):
        try:
            read.append((index, *_read(gw, sender, text)))
        except InvalidInput as exc:
            log.info("sms from %s not acted on: %s", phones.mask(str(sender)), exc.detail)
    with_command = {phone for _, phone, _, command in read if command is not None}
    together = [(i, phone, text) for i, phone, text, _ in read if phone not in with_command]
    alone = [i for i, phone, _, _ in read if phone in with_command]
    if together:
        try:
            _plain_texts(gw, [(phone, text) for _, phone, text in together], received)
        except Exception:
            log.exception("%d SMS could not be acted on together; acting on each alone",
                          len(together))
            alone = sorted(alone + [i for i, _, _ in together])
    for index in alone:
        sender, text = messages[index]
        try:
            receive_sms(gw, sender=sender, text=text)
        except Exception:
            log.exception("sms from %s could not be handled", phones.mask(str(sender)))
            dealt[index] = False
    return dealt


def _read(gw: Gateway, sender: object, text: object) -> tuple[str, str, commands.Command | None]:
    """The sender's phone, the text and the command it is, if any; raise ``InvalidInput``."""
    phone = phones.parse(sender, gw.settings.PHONE_COUNTRIES)
    if not isinstance(text, str) or len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"text must be a string of at most {MAX_TEXT_LENGTH} characters",
                           code="invalid_text")
    return phone, text, commands.parse(text)


def _plain_texts(gw: Gateway, texts: Sequence[tuple[str, str]], received: float,
                 answered_by: str | None = None) -> list[str | None]:
    """Act on texts that are no command, in one transaction: codes confirm their orders, and
    each text gets its answer queued; return the answers."""
    codes = [otp.code_in_reply(text) for _, text in texts]
    with gw.db.transaction() as session:
        now = gw.clock()
        confirmed = iter(checkout.confirm_codes(
            gw, session, [(phone, code) for (phone, _), code in zip(texts, codes, strict=True)
                          if code], now) if any(codes) else [])
        results = [next(confirmed) if code else CodeResult(CodeOutcome.NO_ORDER)
                   for code in codes]
        answers = [_queue(session, phone, _reply(gw, result), answered_by, result.order_id, now)
                   for (phone, _), result in zip(texts, results, strict=True)]
    for (phone, _), code, result in zip(texts, codes, results, strict=True):
        if result.outcome is CodeOutcome.CONFIRMED:  # committed: paid and activated
            metrics.CODE_REPLY_TO_ACTIVATION.observe(time.perf_counter() - received)
        log.info("sms from %s: %s", phones.mask(phone),
                 f"code {result.outcome}" if code else "text")
    return answers


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
