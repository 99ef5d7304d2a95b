"""The operator's admin API under ``/api/v1/admin``: load bills, revoke entitlements.

Every call needs ``Authorization: Bearer <admin key>``: ``ADMIN_API_KEY``, or a key of an admin
app (``flask --app app apps create NAME --admin``); with neither, the admin API refuses
everything.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from gateway.backend import api, apps
from gateway.context import services
from gateway.web import json_bodies
from gateway.web.problems import problem
from gateway.web.schemas import (
    ADMIN_KEY,
    ADMIN_UNAUTHORIZED,
    BAD_DEVICE_ID,
    NOT_JSON,
    PAYLOAD_TOO_LARGE,
    SERVICE_UNAVAILABLE,
    BillBatch,
    BillList,
    BillUpload,
    BillUploadResult,
    DeviceQuery,
    EntitlementPath,
    answer,
    problems,
)

__all__ = ["admin_holder", "admin_on", "bearer_key", "bp", "holder_still_valid"]

ADMIN = Tag(name="Admin", description="""The operator's API. Every call needs `Authorization:
Bearer <admin key>`: `ADMIN_API_KEY`, or a key of an admin app (`flask --app app apps create NAME
--admin`); a TV app's key is refused. With neither set up, every call answers 401
`admin_api_off`.""")

bp = APIBlueprint("admin_api", __name__, url_prefix="/api/v1/admin", abp_tags=[ADMIN],
                  abp_security=ADMIN_KEY,
                  abp_responses={**ADMIN_UNAUTHORIZED, **SERVICE_UNAVAILABLE})


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


json_bodies.refuse_bodies_not_json(bp)  # after the key check: 401 first


@bp.post("/bills", operation_id="addBills", summary="Load the operator's bills",
         description="""One bill, or `{"bills": [...]}` (1 to 1000), all or none: a bad bill is
named (`bills[3].amount: ...`) and nothing is loaded. A bill already loaded with the same values
stays as it is; one loaded with other values is refused (`bill_exists`).""",
         responses={
             201: answer(BillUploadResult, "At least one bill was added."),
             200: answer(BillUploadResult, "Every bill was loaded already; nothing changed."),
             400: problems(400, "Bad input; nothing was loaded.", "invalid_json",
                           "invalid_bill"),
             409: problems(409, "A `bill_id` is loaded with other values (the problem's "
                                "`bill_id`); nothing was loaded.", "bill_exists"),
             **PAYLOAD_TOO_LARGE, **NOT_JSON,
         })
def add_bills(body: BillUpload) -> Response:
    """Load one bill, or ``{"bills": [...]}`` all or none; a bill already loaded as it is
    stays as it is."""
    given = body.root
    report = api.add_bills(services(), given.bills if isinstance(given, BillBatch) else [given])
    response = jsonify(added=report.added, unchanged=report.unchanged)
    response.status_code = 201 if report.added else 200
    return response


@bp.get("/bills", operation_id="listBills", summary="Every bill of a device, newest first",
        responses={200: answer(BillList, "Paid and outstanding bills."),
                   400: problems(400, "A missing or malformed `device_id`.",
                                 "invalid_device_id")})
def list_bills(query: DeviceQuery) -> Response:
    return jsonify(bills=api.bills_of_device(services(), query.device_id))


@bp.delete("/devices/<device_id>/entitlements/<package_id>", operation_id="revokeEntitlement",
           summary="End a live entitlement now",
           description="For a refund, fraud or the operator's decision. The BOSS hears "
                       "`entitlement.revoked`, and the TV's stream shows it.",
           responses={204: {"description": "The entitlement has ended."}, **BAD_DEVICE_ID,
                      404: problems(404, "The device has no live entitlement to this package.",
                                    "entitlement_not_found")})
def revoke(path: EntitlementPath) -> Response:
    """End an entitlement now (refund, fraud, operator's decision); the BOSS is told."""
    api.revoke_entitlement(services(), path.device_id, path.package_id)
    return Response(status=204)
