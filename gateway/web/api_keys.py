"""Every ``/api/v1`` call of a TV app carries its key: ``Authorization: Bearer tvpay_…``.

Checked before each view of the TV API and of the event streams: the key must be a live key of
a TV app (401 ``unauthorized`` otherwise), and a device named in the path, or the device of an
order named in the path, must be the app's or nobody's (404 as if it did not exist). A device
becomes the app's when the app first writes for it (``claim``).
"""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from gateway.backend import api, apps, checkout
from gateway.backend.apps import Caller
from gateway.context import services
from gateway.domain.errors import NotFound
from gateway.web.problems import problem

__all__ = ["caller", "claim", "protect"]


def caller() -> Caller:
    """The TV app of the request being handled."""
    return g.tv_app


def claim(device_id: object) -> str:
    """Make ``device_id`` the caller's if nobody's; return it validated.

    :raise InvalidInput: ``invalid_device_id``. :raise NotFound: ``device_not_found``.
    """
    device_id = checkout.validate_device_id(device_id)
    api.claim_device(services(), caller().app_id, device_id)
    return device_id


def _unauthorized(detail: str) -> Response:
    response = problem(401, "unauthorized", detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="tvpay"'
    return response


def _require_tv_app() -> Response | None:
    header = request.headers.get("Authorization")
    if not header:
        return _unauthorized("send Authorization: Bearer <your TV app's key>")
    found = apps.authenticate(services(), header)
    if found is None or found.kind != apps.TV:
        return _unauthorized("the key is wrong, revoked, or not a TV app's key")
    g.tv_app = found
    args = request.view_args or {}
    if "order_id" in args and checkout.looks_like_order_id(args["order_id"]):
        exists, owner = api.order_app(services(), args["order_id"])
        if exists and owner not in (None, found.app_id):
            raise NotFound("no such order", code="order_not_found")
    if "device_id" in args and request.method == "GET":
        device_id = checkout.validate_device_id(args["device_id"])
        if not api.may_use_device(services(), found.app_id, device_id):
            raise NotFound(f"no device {args['device_id']}", code="device_not_found")
    if "device_id" in args and request.method != "GET":
        claim(args["device_id"])
    return None


def protect(blueprint: Blueprint) -> None:
    """Require a TV app's key on every view of ``blueprint``."""
    blueprint.before_request(_require_tv_app)
