"""The TV app's JSON API under ``/api/v1``."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from gateway import phones
from gateway.backend import api, checkout, pairing
from gateway.backend.pages import Order
from gateway.context import services
from gateway.domain.errors import Conflict, InvalidInput, NotFound
from gateway.domain.orders import Status
from gateway.domain.times import iso
from gateway.web import api_keys, idempotency, json_bodies, qr
from gateway.web.admission import starts_an_order
from gateway.web.schemas import (
    BAD_DEVICE_ID,
    DEVICE_NOT_FOUND,
    IDEMPOTENT_REPLAYED,
    LOCATION,
    NEW_ORDER_UNAVAILABLE,
    NOT_JSON,
    ORDER_NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    SERVICE_UNAVAILABLE,
    TV_KEY,
    TV_UNAUTHORIZED,
    DeviceAccount,
    DevicePath,
    EntitlementList,
    IdempotencyHeader,
    OrderPath,
    OrderQrPath,
    OrderRequest,
    PackageList,
    PairingCode,
    PairingQrPath,
    PairingStatus,
    PaymentCodeRequest,
    RechargeCodeRequest,
    answer,
    problems,
    qr_answer,
)
from gateway.web.schemas import Order as OrderAnswer

__all__ = ["bp", "order_json"]

ORDERS = Tag(name="Orders", description="Packages for sale, and the orders a TV places, reads, "
                                        "cancels and retries.")
DEVICES = Tag(name="Devices", description="What a TV has (entitlements, stored value, bills) and "
                                          "its phone-less QR-code orders.")
PAIRING = Tag(name="Pairing", description=(
    "Pair a phone with the TV: the TV shows a code, the viewer texts `BIND <code>` or opens "
    "the pairing page. Afterwards `POST /api/v1/orders` may use `\"use_paired_phone\": true`."))

bp = APIBlueprint("tv_api", __name__, url_prefix="/api/v1", abp_security=TV_KEY,
                  abp_responses={**TV_UNAUTHORIZED, **SERVICE_UNAVAILABLE})
api_keys.protect(bp)
json_bodies.refuse_bodies_not_json(bp)

_CREATED_ORDER = {"LOCATION": LOCATION, "REPLAYED": IDEMPOTENT_REPLAYED}
_IDEMPOTENCY_CONFLICTS = ("idempotency_key_reused", "idempotency_in_progress")


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id, "kind": order.kind, "status": order.status, "reason": order.reason,
        "channel": order.channel, "device_id": order.device_id, "package_id": order.package_id,
        "amount": order.amount, "currency": order.currency, "phone": phones.mask(order.phone),
        "expires_at": iso(order.expires_at), "created_at": iso(order.created_at),
        "bill_id": order.bill_id, "retry_of": order.retry_of,
        "payment_url": checkout.payment_url(services(), order),
        "qr_url": f"/api/v1/orders/{order.id}/qr.png",
    }


def _created(order: Order) -> Response:
    response = jsonify(order_json(order))
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/orders/{order.id}"
    return response


@bp.get("/packages", tags=[ORDERS], operation_id="listPackages",
        summary="The packages for sale",
        responses={200: answer(PackageList, "The packages, cheapest first.")})
def list_packages() -> Response:
    return jsonify(packages=api.packages(services()))


@bp.post("/orders", tags=[ORDERS], operation_id="createOrder",
         summary="Order a package or pay a bill from a phone",
         description="""A phone bound to a wallet gets a code SMS after the price is held on the
wallet (or, when the wallet cannot cover it, on its linked card); any other phone gets an SMS
with a payment link. Either way the order has a payment page (`payment_url`) and its QR code
(`qr_url`).

The answer is 201 with the order also when it failed at once: `status` `failed` with `reason`
`insufficient_funds` (nothing could cover the price) or `sms_undeliverable` (the phone opted out
of SMS).

Limits: one order per phone per `LIMIT_PHONE_INTERVAL_SECONDS` unless its last order has ended,
`LIMIT_PHONE_CODES_PER_DAY` code SMS per phone, and `LIMIT_DEVICE_ORDERS_PER_HOUR` orders per
TV; a refused request uses up none of them.""",
         responses={
             201: answer(OrderAnswer, "The order, pending or already failed.", **_CREATED_ORDER),
             400: problems(400, "Bad input; nothing changed.", "invalid_json", "missing_field",
                           "invalid_field", "invalid_order", "invalid_phone",
                           "phone_country_not_allowed", "invalid_device_id", "unknown_package",
                           "invalid_idempotency_key"),
             404: problems(404, "`device_not_found`: the device is another TV app's; "
                                "`bill_not_found`: no outstanding bill `bill_id` of this device.",
                           "device_not_found", "bill_not_found"),
             409: problems(409, "`device_not_paired` (`use_paired_phone` on a TV without a "
                                "paired phone), `bill_already_paid`, `partial_payment_refused` "
                                "(an `amount` that is not the bill's; the problem's `amount` is "
                                "the bill's), or an `Idempotency-Key` conflict.",
                           "device_not_paired", "bill_already_paid", "partial_payment_refused",
                           *_IDEMPOTENCY_CONFLICTS),
             **PAYLOAD_TOO_LARGE, **NOT_JSON,
             429: problems(429, "A limit is exhausted; retry after `Retry-After` seconds.",
                           "phone_rate_limited", "phone_daily_limit", "device_rate_limited",
                           "sms_budget_exhausted", "sms_paused"),
             **NEW_ORDER_UNAVAILABLE,
         })
@starts_an_order
@idempotency.idempotent
def create_order(header: IdempotencyHeader, body: OrderRequest) -> Response:
    """An order for a package (``package_id``) or an outstanding bill (``bill_id``), paid from
    ``phone`` or, with ``"use_paired_phone": true``, from the phone paired with the TV."""
    if body.package_id is None and body.bill_id is None:
        raise InvalidInput("package_id is required", code="missing_field", field="package_id")
    if body.use_paired_phone:
        if body.phone is not None:
            raise InvalidInput("give phone or use_paired_phone, not both", code="invalid_field")
        api_keys.claim(body.device_id)  # before another app could learn whether it is paired
        phone = pairing.require_paired_phone(services(), body.device_id)
    elif body.phone is None:
        raise InvalidInput("phone is required", code="missing_field", field="phone")
    else:
        phone = body.phone
    return _created(checkout.start_order(
        services(), device_id=body.device_id, phone=phone, package_id=body.package_id,
        bill_id=body.bill_id, amount=body.amount, app_id=api_keys.caller().app_id))


@bp.get("/orders/<order_id>", tags=[ORDERS], operation_id="getOrder",
        summary="Read an order as it stands",
        description="A pending order whose code or link has lapsed reads as `expired` (and is "
                    "expired).",
        responses={200: answer(OrderAnswer, "The order."), **ORDER_NOT_FOUND})
def get_order(path: OrderPath) -> Response:
    return jsonify(order_json(checkout.get_order(services(), path.order_id)))


@bp.get("/orders/<order_id>/qr.<image_format>", tags=[ORDERS], operation_id="getOrderQr",
        summary="The order's payment page as a QR code",
        description="A QR code of the order's `payment_url` for the TV to show, while the order "
                    "can be paid. PNG for any TV, SVG where it can scale images.",
        responses={
            200: qr_answer("The QR code."),
            404: problems(404, "`not_found` for a format other than `png` or `svg`; "
                               "`order_not_found`: no such order, or another TV app's.",
                          "not_found", "order_not_found"),
            409: problems(409, "The order is no longer pending (the problem's `order_status` "
                               "says what it is).", "order_not_pending"),
        })
def order_qr(path: OrderQrPath) -> Response:
    """The order's payment page as a QR code for the TV to show, while it can be paid."""
    gw = services()
    order = checkout.get_order(gw, path.order_id)
    if not Status(order.status).pending:
        raise Conflict(f"order is {order.status}: there is nothing to pay",
                       code="order_not_pending", order_status=order.status)
    body, mimetype = qr.render(checkout.payment_url(gw, order), path.image_format)
    response = Response(body, mimetype=mimetype)
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


@bp.post("/orders/<order_id>/retry", tags=[ORDERS], operation_id="retryOrder",
         summary="Try a failed, expired or cancelled order again",
         description="""A new order for the same item, device and phone (a new code or link),
under the same limits, whose `retry_of` is the first order. An order is retried at most once. No
body. Like any new order it may fail at once (201 with `status` `failed`).""",
         responses={
             201: answer(OrderAnswer, "The new order.", **_CREATED_ORDER),
             400: problems(400, "A malformed `Idempotency-Key`.", "invalid_idempotency_key"),
             **ORDER_NOT_FOUND,
             409: problems(409, "`order_not_retryable` (pending, paid or activated; "
                                "`order_status` says which), `order_already_retried` "
                                "(`retry_order_id` names the retry), `bill_already_paid` (the "
                                "bill of a bill order was paid meanwhile), or an "
                                "`Idempotency-Key` conflict.",
                           "order_not_retryable", "order_already_retried", "bill_already_paid",
                           *_IDEMPOTENCY_CONFLICTS),
             429: problems(429, "A limit is exhausted; retry after `Retry-After` seconds.",
                           "phone_rate_limited", "phone_daily_limit", "device_rate_limited",
                           "sms_budget_exhausted", "sms_paused"),
             **NEW_ORDER_UNAVAILABLE,
         })
@starts_an_order
@idempotency.idempotent
def retry_order(path: OrderPath, header: IdempotencyHeader) -> Response:
    """A fresh attempt at a failed, expired or cancelled order, linked to it by ``retry_of``."""
    return _created(checkout.retry_order(services(), path.order_id))


@bp.post("/orders/<order_id>/cancel", tags=[ORDERS], operation_id="cancelOrder",
         summary="Cancel a pending order",
         description="Releases the order's hold; its code and link stop working. No body.",
         responses={
             200: answer(OrderAnswer, "The order, now `cancelled` with `reason` `cancelled`."),
             **ORDER_NOT_FOUND,
             409: problems(409, "The order is no longer pending (`order_status` says what it "
                                "is).", "order_not_pending"),
         })
def cancel_order(path: OrderPath) -> Response:
    return jsonify(order_json(checkout.cancel_order(services(), path.order_id)))


@bp.get("/devices/<device_id>/bill", tags=[DEVICES], operation_id="getDeviceBill",
        summary="What the TV can renew, its stored value and the bills it owes",
        responses={200: answer(DeviceAccount, "The TV's account."), **BAD_DEVICE_ID,
                   **DEVICE_NOT_FOUND})
def bill(path: DevicePath) -> Response:
    """What the device can renew (its entitlements, live or lapsed), its stored value, and the
    operator's bills it has still to pay."""
    return jsonify(api.device_account(services(), path.device_id))


@bp.post("/devices/<device_id>/payment-codes", tags=[DEVICES],
         operation_id="createPaymentCode",
         summary="A phone-less order for the TV to show as a QR code",
         description="""`renewal` extends a package on the TV, `recharge` tops up the TV's
stored-value balance (in `CURRENCY`, at most `RECHARGE_MAX_AMOUNT`), `bill` pays an outstanding
bill in full. The order is `awaiting_wap` with channel `wap`; the TV shows its `qr_url`, and the
link lives `WAP_LINK_TTL_SECONDS`. Counts against `LIMIT_DEVICE_ORDERS_PER_HOUR`.""",
         responses={
             201: answer(OrderAnswer, "The order, `awaiting_wap`.", **_CREATED_ORDER),
             400: problems(400, "Bad input; nothing changed. A `renewal` of a package not for "
                                "sale is `unknown_package`.",
                           "invalid_json", "missing_field", "invalid_field", "invalid_device_id",
                           "invalid_kind", "unknown_package", "invalid_amount",
                           "invalid_currency", "invalid_idempotency_key"),
             404: problems(404, "`device_not_found`: the device is another TV app's; "
                                "`bill_not_found`: no outstanding bill `bill_id` of this device.",
                           "device_not_found", "bill_not_found"),
             409: problems(409, "`bill_already_paid`, `partial_payment_refused` (an `amount` "
                                "that is not the bill's), or an `Idempotency-Key` conflict.",
                           "bill_already_paid", "partial_payment_refused",
                           *_IDEMPOTENCY_CONFLICTS),
             **PAYLOAD_TOO_LARGE, **NOT_JSON,
             429: problems(429, "The TV placed too many orders in the last hour.",
                           "device_rate_limited"),
             **NEW_ORDER_UNAVAILABLE,
         })
@starts_an_order
@idempotency.idempotent
def payment_code(path: DevicePath, header: IdempotencyHeader,
                 body: PaymentCodeRequest) -> Response:
    """A renewal, recharge or bill order with no phone, whose page the TV shows as a QR code."""
    asked = body.root
    return _created(checkout.start_device_order(
        services(), device_id=path.device_id, kind=asked.kind,
        package_id=getattr(asked, "package_id", None), bill_id=getattr(asked, "bill_id", None),
        amount=getattr(asked, "amount", None),
        currency=asked.currency if isinstance(asked, RechargeCodeRequest) else None))


@bp.get("/devices/<device_id>/entitlements", tags=[DEVICES], operation_id="listEntitlements",
        summary="The packages active on the TV now",
        responses={200: answer(EntitlementList, "The active entitlements, by package id."),
                   **BAD_DEVICE_ID, **DEVICE_NOT_FOUND})
def entitlements(path: DevicePath) -> Response:
    return jsonify(device_id=path.device_id,
                   entitlements=api.active_entitlements(services(), path.device_id))


# --- pairing a phone with the TV ---------------------------------------------------------------


@bp.post("/devices/<device_id>/pairing", tags=[PAIRING], operation_id="requestPairingCode",
         summary="A pairing code for the TV to show",
         description="""Six characters from `ABCDEFGHJKMNPQRSTUVWXYZ23456789`, live for
`PAIRING_CODE_TTL_SECONDS` (600) and used once; a new code replaces the TV's unused one. The
viewer texts `BIND <code>` (`sms`) to `service_number`, or scans the QR code of the pairing
page. At most 10 codes per TV an hour. No body.""",
         responses={
             201: answer(PairingCode, "The code."), **BAD_DEVICE_ID, **DEVICE_NOT_FOUND,
             429: problems(429, "The TV asked for too many codes in the last hour.",
                           "pairing_rate_limited"),
         })
def request_pairing(path: DevicePath) -> Response:
    """A short code (and a QR code of the pairing page) for the TV to show."""
    gw = services()
    device_id = path.device_id
    code = pairing.request_code(gw, device_id)
    response = jsonify(code=code.code, expires_at=iso(code.expires_at),
                       pairing_url=pairing.page_url(gw, code.code),
                       qr_url=f"/api/v1/devices/{device_id}/pairing/{code.code}/qr.png",
                       sms=f"BIND {code.code}", service_number=gw.settings.SMS_SERVICE_NUMBER)
    response.status_code = 201
    return response


@bp.get("/devices/<device_id>/pairing/<code>/qr.<image_format>", tags=[PAIRING],
        operation_id="getPairingQr", summary="The pairing page as a QR code",
        description="While the code is live (unused, not expired) and belongs to this TV.",
        responses={
            200: qr_answer("The QR code of `pairing_url`."), **BAD_DEVICE_ID,
            404: problems(404, "`device_not_found`: the device is another TV app's; "
                               "`not_found` for a format other than `png` or `svg`; "
                               "`pairing_code_not_found` for a code that is unknown, used, "
                               "expired or another TV's.",
                          "device_not_found", "not_found", "pairing_code_not_found"),
        })
def pairing_qr(path: PairingQrPath) -> Response:
    gw = services()
    row = pairing.code_for_page(gw, path.code)
    if row.device_id != path.device_id:
        raise NotFound("this pairing code is unknown, used or expired",
                       code="pairing_code_not_found")
    body, mimetype = qr.render(pairing.page_url(gw, row.code), path.image_format)
    return Response(body, mimetype=mimetype, headers={"Cache-Control": "private, max-age=60"})


@bp.get("/devices/<device_id>/pairing", tags=[PAIRING], operation_id="getPairing",
        summary="Whether the TV is paired, and with which phone",
        responses={200: answer(PairingStatus, "The TV's pairing."), **BAD_DEVICE_ID,
                   **DEVICE_NOT_FOUND})
def get_pairing(path: DevicePath) -> Response:
    return jsonify(api.pairing_status(services(), path.device_id))


@bp.delete("/devices/<device_id>/pairing", tags=[PAIRING], operation_id="deletePairing",
           summary="Unpair the TV",
           description="204 whether or not it was paired. The TV's stream shows "
                       "`pairing.unpaired`.",
           responses={204: {"description": "The TV has no paired phone."}, **BAD_DEVICE_ID,
                      **DEVICE_NOT_FOUND})
def delete_pairing(path: DevicePath) -> Response:
    """Unpair the TV; answers 204 whether or not it was paired (the outcome is the same)."""
    pairing.unpair_device(services(), path.device_id)
    return Response(status=204)
