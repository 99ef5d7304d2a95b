"""Webhooks through which SMS gateways hand the service the viewers' replies, and Twilio its
status callbacks."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.datastructures import MultiDict

from gateway import phones
from gateway.context import Gateway, services
from gateway.messaging import inbound, twilio_sms
from gateway.store.redis_store import StoredResponse
from gateway.web.json_bodies import object_body
from gateway.web.problems import problem, require
from gateway.web.schemas import (
    PAYLOAD_TOO_LARGE,
    SERVICE_UNAVAILABLE,
    InboundSmsResult,
    answer,
    problems,
    request_body,
)

__all__ = ["bp"]

WEBHOOKS = Tag(name="SMS webhooks",
               description="How SMS gateways and Twilio hand the service the viewers' replies.")
bp = APIBlueprint("sms_webhooks", __name__, url_prefix="/sms", abp_tags=[WEBHOOKS],
                  abp_responses={**PAYLOAD_TOO_LARGE, **SERVICE_UNAVAILABLE})
_TWILIO_REFUSED: dict[str | int, Any] = {
    403: problems(403, "A missing or wrong signature, or `TWILIO_AUTH_TOKEN` unset.", "forbidden")}


@bp.post("/inbound", operation_id="receiveSms",
         summary="A viewer's SMS from a generic HTTP SMS gateway",
         description="""A mobile-originated SMS: a 6-digit code pays its order, a command
(`BAL`, `BILL`, `PAY`, `BIND <code>`, `UNBIND`, `STOP`, `START`, `HELP`, or their Chinese forms)
is carried out, anything else gets a help text. The answer SMS is queued. Without
`INBOUND_SMS_SECRET` configured every request is refused (403).""",
         security=[{"inboundSecret": []}],
         openapi_extensions={"requestBody": request_body(
             "InboundSms", "application/json", "application/x-www-form-urlencoded")},
         responses={
             200: answer(InboundSmsResult, "The SMS was acted on."),
             400: problems(400, "Bad input; nothing changed.", "invalid_json", "missing_field",
                           "invalid_phone", "phone_country_not_allowed", "invalid_text"),
             403: problems(403, "A missing or wrong `X-Inbound-Secret`, or no secret "
                                "configured.", "forbidden"),
         })
def generic_inbound() -> Response:
    """A mobile-originated SMS from a generic HTTP SMS gateway (form or JSON: from, to, text)."""
    gw = services()
    secret = gw.settings.INBOUND_SMS_SECRET
    given = request.headers.get("X-Inbound-Secret", "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return problem(403, "forbidden", "missing or wrong X-Inbound-Secret")
    data = object_body() if request.is_json else request.form.to_dict()
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


def _once(gw: Gateway, key: str, act: Callable[[], Response]) -> Response:
    """Act on a Twilio request once: the same message again (Twilio retrying after a timeout,
    or anyone replaying a signed request) gets the first answer back and changes nothing.

    ``key`` names the message. Remembered for 24 hours in Redis, as ``Idempotency-Key``
    answers are; a 5xx answer or an error is forgotten, so Twilio's retry is acted on.
    """
    name = f"twilio:{key}"
    answer = gw.idempotency.once(name, gw.idempotency.fingerprint(name), act, _kept)
    if isinstance(answer, StoredResponse):
        repeat = Response(answer.body, status=answer.status, mimetype=answer.headers["mimetype"])
        repeat.headers["Idempotent-Replayed"] = "true"
        return repeat
    return answer


def _kept(response: Response) -> tuple[int, Any, dict[str, str]] | None:
    """A 5xx is no answer: Twilio's retry is acted on."""
    if response.status_code >= 500:
        return None
    return response.status_code, response.get_data(as_text=True), \
        {"mimetype": response.mimetype or ""}


def _twiml(reply: str | None) -> Response:
    answer = MessagingResponse()
    if reply:
        answer.message(reply)
    return Response(str(answer), mimetype="application/xml")


@bp.post("/twilio/inbound", operation_id="receiveTwilioSms",
         summary="Twilio's webhook for a viewer's SMS to the Twilio number",
         description="""Set as the number's (or Messaging Service's) incoming-message webhook,
`$PUBLIC_BASE_URL/sms/twilio/inbound`, `HTTP POST`. `X-Twilio-Signature` is checked with
`TWILIO_AUTH_TOKEN` against `PUBLIC_BASE_URL` + path and query. STOP and START (`OptOutType`)
opt the phone out of and back into the service's SMS. The same `MessageSid` again (Twilio
retrying, or a replayed request) is answered with the first answer and `Idempotent-Replayed:
true`, and acted on once.""",
         security=[{"twilioSignature": []}],
         openapi_extensions={"requestBody": request_body(
             "TwilioInboundSms", "application/x-www-form-urlencoded")},
         responses={
             200: {"description": "TwiML with the answer SMS, or an empty `<Response/>`.",
                   "content": {"application/xml": {"schema": {"type": "string", "examples": [
                       '<?xml version="1.0" encoding="UTF-8"?><Response />']}}}},
             400: problems(400, "Bad fields; nothing changed.", "missing_field",
                           "invalid_phone", "phone_country_not_allowed", "invalid_text"),
             409: problems(409, "The same message is still being acted on.",
                           "idempotency_in_progress"),
             **_TWILIO_REFUSED,
         })
def twilio_inbound() -> Response:
    """A viewer's SMS to our Twilio number; answered with TwiML (the reply SMS, or empty)."""
    gw = services()
    if (refused := _twilio_request(gw)) is not None:
        return refused
    form = request.form
    require(form.to_dict(), "MessageSid", "From")
    return _once(gw, f"in:{form['MessageSid'][:64]}", lambda: _act_on_sms(gw, form))


def _act_on_sms(gw: Gateway, form: MultiDict[str, str]) -> Response:
    sender, opt = form["From"], form.get("OptOutType", "").upper()
    if opt in ("STOP", "START", "HELP"):  # Twilio answered these keywords itself
        phone = phones.parse(sender, gw.settings.PHONE_COUNTRIES)
        inbound.twilio_keyword(gw, phone, opt)
        return _twiml(None)
    require(form.to_dict(), "Body")
    return _twiml(inbound.receive_sms(gw, sender=sender, text=form["Body"],
                                      answered_by=twilio_sms.PROVIDER))


@bp.post("/twilio/status", operation_id="receiveTwilioStatus",
         summary="Twilio's status callback of a message the service sent",
         description="""Every message is sent with this `status_callback`. `delivered`,
`undelivered` or `failed` settles the message; a replayed or late callback changes nothing. An
undeliverable code SMS fails its order (`sms_undeliverable`).""",
         security=[{"twilioSignature": []}],
         openapi_extensions={"requestBody": request_body(
             "TwilioStatusCallback", "application/x-www-form-urlencoded")},
         responses={
             204: {"description": "Taken (also when it changed nothing)."},
             400: problems(400, "A missing field.", "missing_field"),
             **_TWILIO_REFUSED,
         })
def twilio_status() -> Response:
    """Twilio's status callback of a message we sent; a replayed one changes nothing."""
    gw = services()
    if (refused := _twilio_request(gw)) is not None:
        return refused
    data = request.form.to_dict()
    require(data, "MessageSid", "MessageStatus")
    # A repeat needs no memory here: a message's state only moves forward.
    twilio_sms.record_status(gw, data["MessageSid"][:64], data["MessageStatus"],
                             data.get("ErrorCode"))
    return Response(status=204)
