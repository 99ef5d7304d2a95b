"""The one entry for every incoming SMS, whatever carried it (HTTP gateway, SMPP, Twilio)."""

from __future__ import annotations

import logging

from gateway import otp, payments, phones
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.payments import CodeOutcome, CodeResult
from gateway.sms import outbox

__all__ = ["MAX_TEXT_LENGTH", "receive_sms"]

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 1600  # ten concatenated SMS; anything longer is not a viewer's reply


def receive_sms(gw: Gateway, *, sender: object, text: object,
                answered_by: str | None = None) -> str | None:
    """Act on an SMS from a viewer's phone and queue the answer; return the answer's text.

    A code pays its order (the confirmation SMS comes from the payment itself); anything else
    gets a short reply saying what happened or how to confirm. ``answered_by``: the carrier
    sends the returned answer itself (TwiML), so it is recorded as sent, not queued.

    :raise InvalidInput: ``invalid_phone`` or ``phone_country_not_allowed`` for the sender,
        ``invalid_text`` for a text that is not a string of reasonable length.
    """
    phone = phones.parse(sender, gw.settings.PHONE_COUNTRIES)
    if not isinstance(text, str) or len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"text must be a string of at most {MAX_TEXT_LENGTH} characters",
                           code="invalid_text")
    code = otp.code_in_reply(text)
    with gw.db.transaction() as session:
        now = gw.clock()
        if code is None:
            result = CodeResult(CodeOutcome.NO_ORDER)
        else:
            result = payments.confirm_by_code(gw, session, phone, code, now)
        reply = _reply(gw, result)
        if reply is not None:
            message = outbox.queue(session, to=phone, kind="reply", body=reply, now=now,
                                   order_id=result.order_id, sent_by=answered_by)
            if message.status == outbox.SmsStatus.FAILED:  # opted out: no answer
                reply = None
    log.info("sms from %s: %s%s", phones.mask(phone), "code " if code else "text ",
             result.outcome)
    return reply


def _reply(gw: Gateway, result: CodeResult) -> str | None:
    if result.outcome is CodeOutcome.CONFIRMED:
        return None  # the payment sends its own confirmation
    if result.outcome is CodeOutcome.NO_ORDER:
        return gw.texts.render("help")
    return gw.texts.render(result.outcome.value, left=result.tries_left)
