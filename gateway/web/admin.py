"""The operator's admin API under ``/api/v1/admin``: load bills, revoke entitlements.

Every call needs ``Authorization: Bearer <ADMIN_API_KEY>``; with no key configured the admin
API refuses everything.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from gateway import activation, bills, payments
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.web.problems import json_body, problem

__all__ = ["bearer_matches", "bp"]

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")


def gateway() -> Gateway:
    return current_app.extensions["gateway"]


def bearer_matches(key: str) -> bool:
    """Whether the request says ``Authorization: Bearer <key>`` (compared in constant time)."""
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())


@bp.before_request
def require_admin_key() -> Response | None:
    key = gateway().settings.ADMIN_API_KEY
    if key is None:
        return problem(401, "admin_api_off", "the admin API is off: set ADMIN_API_KEY")
    if not bearer_matches(key):
        response = problem(401, "unauthorized", "send Authorization: Bearer <admin key>")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


@bp.post("/bills")
def add_bills() -> Response:
    """Load one bill, or ``{"bills": [...]}`` all or none; a bill already loaded as it is
    stays as it is."""
    data = json_body()
    items = data.get("bills", [data]) if "bills" in data else [data]
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        raise InvalidInput("bills must be a list of 1 to 1000 bills", code="invalid_bill")
    parsed = [bills.validate(item if isinstance(item, dict) else {}, f"bills[{n}].")
              for n, item in enumerate(items)]
    gw = gateway()
    with gw.db.transaction() as session:
        report = bills.add_bills(session, parsed, gw.clock())
    response = jsonify(added=report.added, unchanged=report.unchanged)
    response.status_code = 201 if report.added else 200
    return response


@bp.get("/bills")
def list_bills() -> Response:
    device_id = payments.validate_device_id(request.args.get("device_id"))
    with gateway().db.read() as session:
        found = bills.for_device(session, device_id)
    return jsonify(bills=[bills.bill_json(bill) for bill in found])


@bp.delete("/devices/<device_id>/entitlements/<package_id>")
def revoke(device_id: str, package_id: str) -> Response:
    """End an entitlement now (refund, fraud, operator's decision); the BOSS is told."""
    gw = gateway()
    payments.validate_device_id(device_id)
    with gw.db.transaction() as session:
        activation.revoke(session, device_id, package_id, gw.clock())
    return Response(status=204)
