"""The operator's admin API under ``/api/v1/admin``: load bills, revoke entitlements.

Every call needs ``Authorization: Bearer <admin key>``: ``ADMIN_API_KEY``, or a key of an admin
app (``flask --app app apps create NAME --admin``); with neither, the admin API refuses
everything.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, jsonify, request

from gateway.backend import api, apps, bills, payments
from gateway.context import services
from gateway.domain.errors import InvalidInput
from gateway.web.problems import json_body, problem

__all__ = ["admin_holder", "admin_on", "bearer_key", "bp", "holder_still_valid"]

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")


def bearer_key() -> str:
    """The key of the request's ``Authorization: Bearer <key>``, or ''."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def admin_holder(key: str) -> str | None:
    """Which admin key ``key`` is: ``env:<fingerprint>`` for ``ADMIN_API_KEY``, ``key:<id>`` for
    a live key of an admin app; None for anything else (compared in constant time)."""
    configured = services().settings.ADMIN_API_KEY
    if configured and hmac.compare_digest(key.encode(), configured.encode()):
        return "env:" + hashlib.sha256(configured.encode()).hexdigest()[:16]
    found = apps.authenticate(services(), f"Bearer {key}")
    return f"key:{found.key_id}" if found is not None and found.kind == apps.ADMIN else None


def holder_still_valid(holder: object) -> bool:
    """Whether the admin key a sign-in was made with still holds (not replaced nor revoked)."""
    if not isinstance(holder, str):
        return False
    kind, _, name = holder.partition(":")
    if kind == "key":
        return api.admin_key_live(services(), name)
    configured = services().settings.ADMIN_API_KEY
    return configured is not None and holder == admin_holder(configured)


def admin_on() -> bool:
    """An admin key exists: ``ADMIN_API_KEY``, or an admin app's (``apps create --admin``)."""
    if services().settings.ADMIN_API_KEY is not None:
        return True
    return api.any_admin_app(services())


@bp.before_request
def require_admin_key() -> Response | None:
    if admin_holder(bearer_key()) is not None:
        return None
    if not admin_on():
        return problem(401, "admin_api_off", "the admin API is off: set ADMIN_API_KEY or "
                       "create an admin key (flask --app app apps create NAME --admin)")
    response = problem(401, "unauthorized", "send Authorization: Bearer <admin key>")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


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
    report = api.add_bills(services(), parsed)
    response = jsonify(added=report.added, unchanged=report.unchanged)
    response.status_code = 201 if report.added else 200
    return response


@bp.get("/bills")
def list_bills() -> Response:
    device_id = payments.validate_device_id(request.args.get("device_id"))
    return jsonify(bills=api.bills_of_device(services(), device_id))


@bp.delete("/devices/<device_id>/entitlements/<package_id>")
def revoke(device_id: str, package_id: str) -> Response:
    """End an entitlement now (refund, fraud, operator's decision); the BOSS is told."""
    payments.validate_device_id(device_id)
    api.revoke_entitlement(services(), device_id, package_id)
    return Response(status=204)
