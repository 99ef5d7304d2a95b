"""Webhooks through which SMS gateways hand the service the viewers' replies."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from gateway import inbound
from gateway.web.problems import json_body, problem, require

__all__ = ["bp"]

bp = Blueprint("sms_webhooks", __name__, url_prefix="/sms")


@bp.post("/inbound")
def generic_inbound() -> Response:
    """A mobile-originated SMS from a generic HTTP SMS gateway (form or JSON: from, to, text)."""
    gw = current_app.extensions["gateway"]
    secret = gw.settings.INBOUND_SMS_SECRET
    given = request.headers.get("X-Inbound-Secret", "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return problem(403, "forbidden", "missing or wrong X-Inbound-Secret")
    data = json_body() if request.is_json else request.form.to_dict()
    require(data, "from", "text")
    reply = inbound.receive_sms(gw, sender=data["from"], text=data["text"])
    return jsonify(accepted=True, replied=reply is not None)
