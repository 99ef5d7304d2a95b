"""Answers as the OpenAPI document gives them: headers, problem codes by status, request
bodies read by hand, QR images, event streams."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.web.schemas.answers import TvEvent

_REF = "#/components/schemas/"
#: Answers by status, as a route's ``responses`` takes them.
Responses = dict[str | int, Any]
#: Every model an answer names, for the document's components.
ANSWERS: list[type[BaseModel]] = []


def header(description: str, schema: dict[str, Any] | None = None, *,
           required: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"description": description, "schema": schema or {"type": "string"}}
    if required:
        found["required"] = True
    return found


LOCATION = {"Location": header("The new order's URL, `/api/v1/orders/{id}`.")}
IDEMPOTENT_REPLAYED = {"Idempotent-Replayed": header(
    "`true` when this is the stored answer to an earlier request with the same "
    "`Idempotency-Key`.", {"type": "string", "enum": ["true"]})}
RETRY_AFTER = {"Retry-After": header("Seconds to wait before trying again.",
                                     {"type": "integer", "minimum": 1}, required=True)}
PRIVATE_CACHE = {"Cache-Control": header("`private, max-age=60`.")}
NO_STORE = {"Cache-Control": header("`no-store`.")}


def answer(model: type[BaseModel], description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    """A JSON answer of ``model``, with the headers of each group in ``headers``."""
    if model not in ANSWERS:
        ANSWERS.append(model)
    found: dict[str, Any] = {"description": description, "content": {
        "application/json": {"schema": {"$ref": _REF + model.__name__}}}}
    merged = {name: h for group in headers.values() for name, h in group.items()}
    if merged:
        found["headers"] = merged
    return found


#: Every problem ``code`` the API answers with, by status: the README's table.
PROBLEM_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_json", "missing_field", "invalid_field", "invalid_order", "invalid_phone",
          "phone_country_not_allowed", "invalid_device_id", "unknown_package", "invalid_kind",
          "invalid_amount", "invalid_currency", "invalid_idempotency_key", "invalid_text",
          "invalid_bill", "invalid_last_event_id"),
    401: ("unauthorized", "admin_api_off"),
    403: ("forbidden",),
    404: ("order_not_found", "device_not_found", "bill_not_found", "pairing_code_not_found",
          "entitlement_not_found", "not_found"),
    409: ("order_not_pending", "order_not_retryable", "order_already_retried",
          "device_not_paired", "bill_already_paid", "partial_payment_refused", "bill_exists",
          "idempotency_key_reused", "idempotency_in_progress"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    429: ("phone_rate_limited", "phone_daily_limit", "device_rate_limited",
          "pairing_rate_limited", "sms_budget_exhausted", "sms_paused"),
    503: ("service_unavailable", "overloaded", "too_many_streams"),
}


def problem_schemas() -> dict[str, dict[str, Any]]:
    """``Problem400`` ...: the problem of each status with the codes it may carry."""
    found = {}
    for status, codes in PROBLEM_CODES.items():
        narrowed: dict[str, Any] = {"properties": {"status": {"const": status},
                                                   "code": {"enum": list(codes)}}}
        if status == 429:
            narrowed["required"] = ["retry_after"]
        found[f"Problem{status}"] = {"allOf": [{"$ref": _REF + "Problem"}, narrowed]}
    return found


def problems(status: int, description: str, *codes: str,
             headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``application/problem+json`` answer with one of ``codes``.

    :raise ValueError: a code that is not one of ``PROBLEM_CODES[status]``.
    """
    unknown = set(codes) - set(PROBLEM_CODES[status])
    if unknown:
        raise ValueError(f"not codes of {status}: {sorted(unknown)}")
    if status in (429, 503):
        headers = {**RETRY_AFTER, **(headers or {})}
    schema = {"allOf": [{"$ref": f"{_REF}Problem{status}"},
                        {"properties": {"code": {"enum": list(codes)}}}]}
    found: dict[str, Any] = {"description": description, "content": {
        "application/problem+json": {"schema": schema}}}
    if headers:
        found["headers"] = headers
    return found


SERVICE_UNAVAILABLE: Responses = {503: problems(
    503, "The database or Redis is unreachable; nothing changed. Retry after `Retry-After`.",
    "service_unavailable")}
STREAM_UNAVAILABLE: Responses = {503: problems(
    503, "`too_many_streams`: this server holds as many event streams as it may; "
         "`service_unavailable`: the database or Redis is unreachable. Retry after "
         "`Retry-After`.", "too_many_streams", "service_unavailable")}

NEW_ORDER_UNAVAILABLE: Responses = {503: problems(
    503, "`overloaded`: too busy to take a new order now (requests stand in a queue, or SMS "
         "leave late); nothing was written, and the same request (the same `Idempotency-Key`) "
         "may be sent again after `Retry-After` seconds (`retry_after_ms` says it in "
         "milliseconds). `service_unavailable`: the database or Redis is unreachable; nothing "
         "changed.", "service_unavailable", "overloaded")}

PAYLOAD_TOO_LARGE: Responses = {413: problems(413, "The body is over 64 KiB.", "payload_too_large")}
NOT_JSON: Responses = {415: problems(415, "The body is not sent as `application/json`.",
                                     "unsupported_media_type")}
TV_UNAUTHORIZED: Responses = {401: problems(
    401, "A missing, wrong or revoked key, or one that is not a TV app's.", "unauthorized",
    headers={"WWW-Authenticate": header('`Bearer realm="tvpay"`.',
                                        {"type": "string", "const": 'Bearer realm="tvpay"'},
                                        required=True)})}
ADMIN_UNAUTHORIZED: Responses = {401: problems(
    401, "`admin_api_off` when neither `ADMIN_API_KEY` nor an admin app exists; "
         "`unauthorized` (with `WWW-Authenticate: Bearer`) for a missing or wrong key.",
    "unauthorized", "admin_api_off",
    headers={"WWW-Authenticate": header("`Bearer`, with `unauthorized`.")})}
DEVICE_NOT_FOUND: Responses = {
    404: problems(404, "The device is another TV app's.", "device_not_found")}
BAD_DEVICE_ID: Responses = {400: problems(400, "A malformed device id.", "invalid_device_id")}
ORDER_NOT_FOUND: Responses = {
    404: problems(404, "No such order, or another TV app's.", "order_not_found")}
TV_KEY: list[dict[str, list[Any]]] = [{"tvAppKey": []}]
ADMIN_KEY: list[dict[str, list[Any]]] = [{"adminBearer": []}]


def request_body(model: str, *media_types: str) -> dict[str, Any]:
    """A body the view reads itself (after checking who sent it), as ``model``."""
    return {"required": True, "content": {
        media: {"schema": {"$ref": _REF + model}} for media in media_types}}


def qr_answer(description: str) -> dict[str, Any]:
    return {"description": description, "headers": PRIVATE_CACHE, "content": {
        "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
        "image/svg+xml": {"schema": {"type": "string", "contentMediaType": "image/svg+xml"}}}}


def event_stream() -> dict[str, Any]:
    """``text/event-stream``: each event's ``data`` a ``TvEvent`` as JSON."""
    if TvEvent not in ANSWERS:
        ANSWERS.append(TvEvent)
    event = {
        "type": "object",
        "description": "One event of the stream, as `id:`, `event:` and `data:` lines.",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"type": "string", "examples": ["order.status"]},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": _REF + "TvEvent"}},
            "retry": {"type": "integer"},
        },
    }
    return {
        "description": "A `text/event-stream`: first `retry: 2000`, then events as `id: <id>`, "
                       "`event: <type>`, `data: <TvEvent as JSON>`, and a `: keep-alive` "
                       "comment every 15 s. The data schema of each event is `TvEvent` "
                       "(`x-event-data`).",
        "headers": {"Cache-Control": header("`no-cache`."),
                    "X-Accel-Buffering": header("`no`: a proxy must pass each event on at "
                                                "once.")},
        "content": {"text/event-stream": {"schema": event,
                                          "x-event-data": {"$ref": _REF + "TvEvent"}}},
    }
