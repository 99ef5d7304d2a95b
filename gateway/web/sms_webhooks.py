"""Webhooks through which SMS gateways hand the service the viewers' replies, and Twilio its
status callbacks."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from gateway import phones
from gateway.context import Gateway, services
from gateway.messaging import inbound, twilio_sms
from gateway.web.problems import json_body, problem, require

__all__ = ["bp"]

bp = Blueprint("sms_webhooks", __name__, url_prefix="/sms")


@bp.post("/inbound")
def generic_inbound() -> Response:
    """A mobile-originated SMS from a generic HTTP SMS gateway (form or JSON: from, to, text)."""
    gw = services()
    secret = gw.settings.INBOUND_SMS_SECRET
    given = request.headers.get("X-Inbound-Secret", "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return problem(403, "forbidden", "missing or wrong X-Inbound-Secret")
    data = json_body() if request.is_json else request.form.to_dict()
    require(data, "from", "text")
    reply = inbound.receive_sms(gw, sender=data["from"], text=data["text"])
    return jsonify(accepted=True, replied=reply is not None)


# --- Twilio ------------------------------------------------------------------------------------


def _twilio_request(gw: Gateway) -> Response | None:
    """Refuse (403) a request that does not carry Twilio's signature of this very request.

    Twilio signs the URL it called, which behind a proxy is the public one: the signature is
    checked against ``PUBLIC_BASE_URL`` with this request's path and query.
    """
    token = gw.settings.TWILIO_AUTH_TOKEN
    if not token:
        return problem(403, "forbidden", "Twilio is not configured")
    query = request.query_string.decode("latin-1")
    url = f"{gw.settings.PUBLIC_BASE_URL}{request.path}{'?' + query if query else ''}"
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(token).validate(url, request.form.to_dict(),
                                                              signature):
        return problem(403, "forbidden", "missing or wrong X-Twilio-Signature")
    return None


def _twiml(reply: str | None) -> Response:
    answer = MessagingResponse()
    if reply:
        answer.message(reply)
    return Response(str(answer), mimetype="application/xml")


@bp.post("/twilio/inbound")
def twilio_inbound() -> Response:
    """A viewer's SMS to our Twilio number; answered with TwiML (the reply SMS, or empty)."""
    gw = services()
    if (refused := _twilio_request(gw)) is not None:
        return refused
    form = request.form
    sender, opt = form.get("From"), form.get("OptOutType", "").upper()
    if opt in ("STOP", "START", "HELP"):  # Twilio answered these keywords itself
        phone = phones.parse(sender, gw.settings.PHONE_COUNTRIES)
        inbound.twilio_keyword(gw, phone, opt)
        return _twiml(None)
    require(form.to_dict(), "From", "Body")
    return _twiml(inbound.receive_sms(gw, sender=sender, text=form["Body"],
                                      answered_by=twilio_sms.PROVIDER))


@bp.post("/twilio/status")
def twilio_status() -> Response:
    """Twilio's status callback of a message we sent; a replayed one changes nothing."""
    gw = services()
    if (refused := _twilio_request(gw)) is not None:
        return refused
    data = request.form.to_dict()
    require(data, "MessageSid", "MessageStatus")
    twilio_sms.record_status(gw, data["MessageSid"][:64], data["MessageStatus"],
                             data.get("ErrorCode"))
    return Response(status=204)
