"""The HTTP API's requests and answers, declared once as pydantic models: ``requests``,
``answers``, and how the document gives answers and problems (``documented``); a refused
input becomes problem+json (``refusals``).

The views parse their input into these (``flask_openapi3`` validates a view's ``path``,
``query``, ``header`` and ``body`` parameters before the view runs) and ``/openapi.json`` is
generated from them (``gateway.web.api_docs``). A refused input becomes the same
``application/problem+json`` as any other bad input, with its stable ``code``
(``refusal``).

Constraints that depend on the settings (the currency of TV balances, the largest recharge, the
phone countries) and on the catalog (the package ids) are checked by the use cases and written
into the served document by ``api_docs``.
"""

from __future__ import annotations

from gateway.web.schemas.answers import (
    SCHEMAS,
    BillList,
    BillUploadResult,
    DeviceAccount,
    EntitlementList,
    Health,
    InboundSmsResult,
    Order,
    PackageList,
    PairingCode,
    PairingStatus,
    Problem,
)
from gateway.web.schemas.documented import (
    ADMIN_KEY,
    ADMIN_UNAUTHORIZED,
    ANSWERS,
    BAD_DEVICE_ID,
    DEVICE_NOT_FOUND,
    IDEMPOTENT_REPLAYED,
    LOCATION,
    NEW_ORDER_UNAVAILABLE,
    NO_STORE,
    NOT_JSON,
    ORDER_NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    SERVICE_UNAVAILABLE,
    STREAM_UNAVAILABLE,
    TV_KEY,
    TV_UNAUTHORIZED,
    answer,
    event_stream,
    problem_schemas,
    problems,
    qr_answer,
    request_body,
)
from gateway.web.schemas.refusals import (
    refusal,
)
from gateway.web.schemas.requests import (
    BillBatch,
    BillUpload,
    DevicePath,
    DeviceQuery,
    EntitlementPath,
    IdempotencyHeader,
    LastEventIdHeader,
    LastEventIdQuery,
    OrderEventsPath,
    OrderPath,
    OrderQrPath,
    OrderRequest,
    PairingQrPath,
    PaymentCodeRequest,
    RechargeCodeRequest,
)

__all__ = [
    "ADMIN_KEY", "ADMIN_UNAUTHORIZED", "ANSWERS", "BAD_DEVICE_ID", "BillBatch", "BillList",
    "BillUpload", "BillUploadResult", "DEVICE_NOT_FOUND", "DeviceAccount", "DevicePath",
    "DeviceQuery", "EntitlementList", "EntitlementPath", "Health", "IDEMPOTENT_REPLAYED",
    "IdempotencyHeader", "InboundSmsResult", "LOCATION", "LastEventIdHeader",
    "LastEventIdQuery", "NEW_ORDER_UNAVAILABLE", "NO_STORE", "ORDER_NOT_FOUND", "Order",
    "OrderEventsPath", "OrderPath", "OrderQrPath", "NOT_JSON", "OrderRequest", "PAYLOAD_TOO_LARGE",
    "PackageList", "PairingCode",
    "PairingQrPath", "PairingStatus", "PaymentCodeRequest", "Problem", "RechargeCodeRequest",
    "SCHEMAS", "SERVICE_UNAVAILABLE", "TV_KEY", "TV_UNAUTHORIZED", "answer", "event_stream",
    "STREAM_UNAVAILABLE",
    "problem_schemas", "problems", "qr_answer", "refusal", "request_body",
]
