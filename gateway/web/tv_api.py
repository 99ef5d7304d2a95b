"""The TV app's JSON API under ``/api/v1``."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway import phones
from gateway.backend import api, pairing, payments
from gateway.backend.pages import Order
from gateway.context import services
from gateway.domain.errors import Conflict, GatewayError, InvalidInput, NotFound
from gateway.domain.orders import Status
from gateway.domain.times import iso
from gateway.web import api_keys, qr
from gateway.web.problems import json_body, require, response_for

__all__ = ["bp", "order_json"]

bp = Blueprint("tv_api", __name__, url_prefix="/api/v1")
api_keys.protect(bp)


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id, "kind": order.kind, "status": order.status, "reason": order.reason,
        "channel": order.channel, "device_id": order.device_id, "package_id": order.package_id,
        "amount": order.amount, "currency": order.currency, "phone": phones.mask(order.phone),
        "expires_at": iso(order.expires_at), "created_at": iso(order.created_at),
        "bill_id": order.bill_id, "retry_of": order.retry_of,
        "payment_url": payments.payment_url(services(), order),
        "qr_url": f"/api/v1/orders/{order.id}/qr.png",
    }


def _created(order: Order) -> Response:
    response = jsonify(order_json(order))
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/orders/{order.id}"
    return response


_REPLAYED_HEADERS = ("Location",)


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Honour ``Idempotency-Key``: replay the first answer to the same request for 24 h."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        given = request.headers.get("Idempotency-Key")
        if given is None:
            return view(*args, **kwargs)
        if not 1 <= len(given) <= 255 or not given.isascii() or not given.isprintable():
            raise InvalidInput("Idempotency-Key must be 1-255 printable ASCII characters",
                               code="invalid_idempotency_key")
        key = f"{api_keys.caller().app_id}:{given}"  # each app's keys are its own
        raw = request.get_data(cache=True)
        try:
            canonical: str | bytes = json.dumps(json.loads(raw), sort_keys=True)
        except (ValueError, UnicodeDecodeError, RecursionError):
            canonical = raw
        cache = services().idempotency
        fingerprint = cache.fingerprint(request.method, request.path, canonical)
        stored = cache.begin(key, fingerprint)
        if stored is not None:
            replay = _json_response(stored.body, stored.status)
            replay.headers.update(stored.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        try:
            try:
                response = view(*args, **kwargs)
            except GatewayError as error:
                response = response_for(error)
        except BaseException:
            cache.abandon(key)
            raise
        if response.status_code == 429 or response.status_code >= 500:
            cache.abandon(key)  # not an answer: the same request may be tried again
        else:
            kept = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
            cache.finish(key, fingerprint, response.status_code, response.get_json(), kept)
        return response

    return wrapper


def _json_response(body: Any, status: int) -> Response:
    mimetype = "application/problem+json" if status >= 400 else "application/json"
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=mimetype)


@bp.get("/packages")
def list_packages() -> Response:
    return jsonify(packages=api.packages(services()))


@bp.post("/orders")
@idempotent
def create_order() -> Response:
    """An order for a package (``package_id``) or an outstanding bill (``bill_id``), paid from
    ``phone`` or, with ``"use_paired_phone": true``, from the phone paired with the TV."""
    data = json_body()
    require(data, "device_id", "bill_id" if "bill_id" in data else "package_id")
    device_id = payments.validate_device_id(data["device_id"])
    paired = data.get("use_paired_phone", False)
    if not isinstance(paired, bool):
        raise InvalidInput("use_paired_phone must be true or false", code="invalid_field")
    if paired:
        if "phone" in data:
            raise InvalidInput("give phone or use_paired_phone, not both", code="invalid_field")
        api_keys.claim(device_id)  # before another app could learn whether it is paired
        phone = pairing.require_paired_phone(services(), device_id)
    else:
        require(data, "phone")
        phone = data["phone"]
    return _created(payments.start_order(
        services(), device_id=device_id, phone=phone, package_id=data.get("package_id"),
        bill_id=data.get("bill_id"), amount=data.get("amount"),
        app_id=api_keys.caller().app_id))


@bp.get("/orders/<order_id>")
def get_order(order_id: str) -> Response:
    return jsonify(order_json(payments.get_order(services(), order_id)))


@bp.get("/orders/<order_id>/qr.<image_format>")
def order_qr(order_id: str, image_format: str) -> Response:
    """The order's payment page as a QR code for the TV to show, while it can be paid."""
    if image_format not in qr.FORMATS:
        raise NotFound("QR codes come as qr.png or qr.svg", code="not_found")
    gw = services()
    order = payments.get_order(gw, order_id)
    if not Status(order.status).pending:
        raise Conflict(f"order is {order.status}: there is nothing to pay",
                       code="order_not_pending", order_status=order.status)
    body, mimetype = qr.render(payments.payment_url(gw, order), image_format)
    response = Response(body, mimetype=mimetype)
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


@bp.post("/orders/<order_id>/retry")
@idempotent
def retry_order(order_id: str) -> Response:
    """A fresh attempt at a failed, expired or cancelled order, linked to it by ``retry_of``."""
    return _created(payments.retry_order(services(), order_id))


@bp.post("/orders/<order_id>/cancel")
def cancel_order(order_id: str) -> Response:
    return jsonify(order_json(payments.cancel_order(services(), order_id)))


@bp.get("/devices/<device_id>/bill")
def bill(device_id: str) -> Response:
    """What the device can renew (its entitlements, live or lapsed), its stored value, and the
    operator's bills it has still to pay."""
    payments.validate_device_id(device_id)
    return jsonify(api.device_account(services(), device_id))


@bp.post("/devices/<device_id>/payment-codes")
@idempotent
def payment_code(device_id: str) -> Response:
    """A renewal, recharge or bill order with no phone, whose page the TV shows as a QR code."""
    data = json_body()
    require(data, "kind")
    return _created(payments.start_device_order(
        services(), device_id=device_id, kind=data["kind"], package_id=data.get("package_id"),
        bill_id=data.get("bill_id"), amount=data.get("amount"), currency=data.get("currency")))


@bp.get("/devices/<device_id>/entitlements")
def entitlements(device_id: str) -> Response:
    payments.validate_device_id(device_id)
    return jsonify(device_id=device_id,
                   entitlements=api.active_entitlements(services(), device_id))


# --- pairing a phone with the TV ---------------------------------------------------------------


@bp.post("/devices/<device_id>/pairing")
def request_pairing(device_id: str) -> Response:
    """A short code (and a QR code of the pairing page) for the TV to show."""
    gw = services()
    code = pairing.request_code(gw, payments.validate_device_id(device_id))
    response = jsonify(code=code.code, expires_at=iso(code.expires_at),
                       pairing_url=pairing.page_url(gw, code.code),
                       qr_url=f"/api/v1/devices/{device_id}/pairing/{code.code}/qr.png",
                       sms=f"BIND {code.code}", service_number=gw.settings.SMS_SERVICE_NUMBER)
    response.status_code = 201
    return response


@bp.get("/devices/<device_id>/pairing/<code>/qr.<image_format>")
def pairing_qr(device_id: str, code: str, image_format: str) -> Response:
    if image_format not in qr.FORMATS:
        raise NotFound("QR codes come as qr.png or qr.svg", code="not_found")
    gw = services()
    row = pairing.code_for_page(gw, code)
    if row.device_id != device_id:
        raise NotFound("this pairing code is unknown, used or expired",
                       code="pairing_code_not_found")
    body, mimetype = qr.render(pairing.page_url(gw, row.code), image_format)
    return Response(body, mimetype=mimetype, headers={"Cache-Control": "private, max-age=60"})


@bp.get("/devices/<device_id>/pairing")
def get_pairing(device_id: str) -> Response:
    return jsonify(api.pairing_status(services(), payments.validate_device_id(device_id)))


@bp.delete("/devices/<device_id>/pairing")
def delete_pairing(device_id: str) -> Response:
    """Unpair the TV; answers 204 whether or not it was paired (the outcome is the same)."""
    pairing.unpair_device(services(), payments.validate_device_id(device_id))
    return Response(status=204)
