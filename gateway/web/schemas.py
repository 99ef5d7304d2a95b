"""The HTTP API's requests and answers, declared once as pydantic models.

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

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from gateway.backend.bills import BillIn
from gateway.domain.errors import InvalidInput, NotFound

__all__ = [
    "DEVICE_ID_PATTERN", "PROBLEM_CODES", "SCHEMAS", "BillBatch", "BillList", "BillUpload",
    "BillUploadResult",
    "DeviceAccount", "DevicePath", "DeviceQuery", "EntitlementList", "EntitlementPath", "Health",
    "IdempotencyHeader", "InboundSms", "InboundSmsResult", "LastEventIdHeader",
    "LastEventIdQuery", "Order", "OrderEventsPath", "OrderPath", "OrderQrPath", "OrderRequest",
    "PackageList", "PairingCode", "PairingQrPath", "PairingStatus", "PaymentCodeRequest",
    "Problem", "TvEvent", "TwilioInboundSms", "TwilioStatusCallback", "refusal",
]

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
CURRENCIES = ("CNY", "HKD", "USD", "EUR", "GBP", "JPY", "KRW")


def _whole(value: Any) -> Any:
    """``5000.0`` is the integer 5000 in JSON (and in JSON Schema); any other float is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A whole number given as 5000 or 5000.0; never a string or a boolean.
Whole = Annotated[StrictInt, BeforeValidator(_whole)]
DeviceId = Annotated[StrictStr, Field(
    pattern=DEVICE_ID_PATTERN,
    description="1-64 letters, digits or `. _ : -`, starting with a letter or digit.")]
Timestamp = Annotated[str, Field(
    pattern=TIMESTAMP_PATTERN, json_schema_extra={"format": "date-time"},
    description="UTC, ISO 8601 to the second.", examples=["2026-11-23T08:00:00Z"])]
Amount = Annotated[int, Field(ge=0, examples=[20000],
                              description="Minor units of the currency (`20000` CNY is 200.00 "
                                          "yuan).")]
Currency = Annotated[Literal[CURRENCIES], Field(description="ISO 4217.")]  # type: ignore[valid-type]
MaskedPhone = Annotated[str, Field(pattern=r"^[0-9]*\*{4,}[0-9]*$", examples=["138****8000"],
                                   description="A phone number with its middle hidden.")]
OrderStatus = Literal["awaiting_code", "awaiting_wap", "paid", "activated", "failed", "expired",
                      "cancelled"]
OrderReason = Literal["insufficient_funds", "too_many_attempts", "sms_undeliverable", "expired",
                      "cancelled", "bill_already_paid"]


def _optional(**kwargs: Any) -> Any:
    """An optional field (``null`` is the same as leaving it out)."""
    return Field(default=None, **kwargs)  # the document leaves out its "default": null


def _given(name: str) -> dict[str, Any]:
    """``name`` is given, and not as null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- path, query and header parameters -------------------------------------------------------


class OrderPath(BaseModel):
    order_id: str = Field(description="The order's `id`.")


class OrderQrPath(OrderPath):
    image_format: Literal["png", "svg"] = Field(description="`png` or `svg`.")


class OrderEventsPath(OrderPath):
    pass


class DevicePath(BaseModel):
    device_id: DeviceId = Field(description="The TV's device id.")


class PairingQrPath(DevicePath):
    code: str = Field(description="The TV's pairing code.")
    image_format: Literal["png", "svg"] = Field(description="`png` or `svg`.")


class EntitlementPath(DevicePath):
    package_id: str = Field(description="The package to end on the device.")


class _Parameters(BaseModel):
    """A model of a request's headers or query, whose JSON schema is made once: flask-openapi3
    asks for it at every request (to read the fields' types), and making it cost a POST /orders
    about a millisecond of CPU, a sixth of the whole request."""

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def model_json_schema(
            cls, by_alias: bool | None = None, ref_template: str = DEFAULT_REF_TEMPLATE,
            schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
            mode: JsonSchemaMode = "validation", *,
            union_format: Literal["any_of", "primitive_type_array"] = "any_of") -> dict[str, Any]:
        key = (cls, by_alias, ref_template, schema_generator, mode, union_format)
        if key not in _PARAMETER_SCHEMAS:
            _PARAMETER_SCHEMAS[key] = super().model_json_schema(
                by_alias, ref_template, schema_generator, mode, union_format=union_format)
        return _PARAMETER_SCHEMAS[key]


_PARAMETER_SCHEMAS: dict[tuple[Any, ...], dict[str, Any]] = {}


class DeviceQuery(_Parameters):
    device_id: DeviceId = Field(description="The device whose bills to list.")


class IdempotencyHeader(_Parameters):

    idempotency_key: Annotated[str, Field(
        default=None, alias="Idempotency-Key", min_length=1, max_length=255,
        pattern=r"^[ -~]+$",
        description="Makes the request safe to repeat: the same key from the same TV app "
                    "with the same body returns the first answer for 24 hours; with another "
                    "body, 409 `idempotency_key_reused`. Keys are per TV app.")]


_EVENT_ID = r"^[0-9]{1,18}$"


class LastEventIdHeader(_Parameters):

    last_event_id: Annotated[str, Field(
        default=None, alias="Last-Event-ID", pattern=_EVENT_ID,
        description="The last event id the client has (EventSource sends it on reconnect).")]


class LastEventIdQuery(_Parameters):
    last_event_id: Annotated[str, Field(
        default=None, pattern=_EVENT_ID,
        description="The same as `Last-Event-ID`, for clients that cannot set headers.")]


# --- request bodies ----------------------------------------------------------------------------


class OrderRequest(_Model):
    """`package_id` or `bill_id` (not both); `phone` or `"use_paired_phone": true`. A bill is
    paid in full: an `amount`, if given, must be the bill's."""

    # An optional field given as null is not given.
    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "allOf": [
            {"oneOf": [_given("package_id"), _given("bill_id")]},
            {"oneOf": [_given("phone"),
                       {"required": ["use_paired_phone"],
                        "properties": {"use_paired_phone": {"const": True}}}]},
        ],
    })

    device_id: DeviceId
    package_id: StrictStr | None = _optional(description="The package to buy.")
    bill_id: StrictStr | None = _optional(
        description="An outstanding bill of the device to pay.")
    amount: Whole | None = _optional(
        description="With `bill_id` only: the bill's amount, in minor units.")
    phone: Annotated[StrictStr, Field(min_length=3, max_length=32)] | None = _optional(
        description="The viewer's mobile number, national (`13800138000`, read as in the first "
                    "of `PHONE_COUNTRIES`) or international (`+8613800138000`).")
    use_paired_phone: StrictBool = Field(
        default=False, description="`true` instead of `phone`: ask the phone paired with the TV.")


class RenewalCodeRequest(_Model):
    kind: Literal["renewal"]
    package_id: StrictStr = Field(description="The package to renew (any package for sale).")


class RechargeCodeRequest(_Model):
    kind: Literal["recharge"]
    amount: Whole = Field(ge=1, description="Minor units to add, at most `RECHARGE_MAX_AMOUNT` "
                                            "(100000).")
    currency: StrictStr | None = _optional(
        description="Optional; must be `CURRENCY` (CNY), the currency of the TV's balance.")


class BillCodeRequest(_Model):
    kind: Literal["bill"]
    bill_id: StrictStr = Field(description="An outstanding bill of the device.")
    amount: Whole | None = _optional(description="Optional; must be the bill's amount.")


class PaymentCodeRequest(RootModel[Annotated[
        RenewalCodeRequest | RechargeCodeRequest | BillCodeRequest,
        Field(discriminator="kind")]]):
    """What the QR code pays for, by `kind`."""


class BillBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bills: list[BillIn] = Field(min_length=1, max_length=1000)


class BillUpload(RootModel[BillIn | BillBatch]):
    """One bill, or up to 1000 in `bills`."""


class InboundSms(BaseModel):
    from_: StrictStr = Field(alias="from", description="The viewer's phone number.",
                             examples=["+8613800138000"])
    to: StrictStr | None = _optional(description="The service number it was sent to (not used).",
                              examples=["10690000"])
    text: StrictStr = Field(max_length=1600, examples=["384921"])


class TwilioInboundSms(BaseModel):
    """Twilio's form fields (more come and are ignored)."""

    model_config = ConfigDict(extra="allow")

    From: str
    To: str = _optional()
    Body: str = _optional(
        description="Required unless `OptOutType` is `STOP`, `START` or `HELP`.")
    OptOutType: Literal["STOP", "START", "HELP"] = _optional()
    MessageSid: str = _optional()


class TwilioStatusCallback(BaseModel):
    """Twilio's form fields (more come and are ignored)."""

    model_config = ConfigDict(extra="allow")

    MessageSid: str
    MessageStatus: str = Field(examples=["delivered", "undelivered", "failed"])
    ErrorCode: str = _optional(examples=["30003"])


# --- answers -----------------------------------------------------------------------------------


class Package(BaseModel):
    """A package a TV can sell."""

    id: str = Field(examples=["vip_month"])
    name: str = Field(examples=["VIP 月卡"])
    price: Amount
    currency: Currency
    period_days: int = Field(ge=1, description="Days of service one purchase adds.")


class PackageList(BaseModel):
    packages: list[Package]


class Order(BaseModel):
    """An order as it stands."""

    id: str = Field(pattern=r"^ord_[a-z2-7]{16}$", examples=["ord_7r5vqo474pqn2qhs"])
    kind: Literal["package", "renewal", "recharge", "bill"] = Field(
        description="`package` (`POST /api/v1/orders`), `renewal` (extends the package on the "
                    "TV), `recharge` (credits the TV's stored value; `package_id` is null) or "
                    "`bill` (pays the operator's bill `bill_id` in full; `activated` means the "
                    "bill is cleared).")
    status: OrderStatus = Field(
        description="`awaiting_code` (a code SMS went to a bound phone), `awaiting_wap` (a link "
                    "SMS went, or the TV shows the QR code), `paid`, `activated` (final), "
                    "`failed`, `expired`, `cancelled` (final, with a `reason`).")
    reason: OrderReason | None = Field(
        description="With `failed`, `expired` and `cancelled`; else null. "
                    "`bill_already_paid`: another order paid the bill first; nothing was taken.")
    channel: Literal["sms_code", "wap"] = Field(
        description="`sms_code` (bound phone) or `wap` (payment link or QR code).")
    device_id: DeviceId
    package_id: str | None = Field(description="The package; null for `recharge` and `bill`.")
    amount: Annotated[int, Field(ge=1, description="Minor units of `currency`.")]
    currency: Currency
    phone: MaskedPhone | None = Field(
        description="The paying phone, masked; null for a TV's QR-code order.")
    expires_at: Timestamp | None = Field(
        description="When the code or link lapses; null when none was sent (failed at once).")
    created_at: Timestamp
    bill_id: str | None = Field(description="The operator's bill a `bill` order pays.")
    retry_of: str | None = Field(description="The order this one tries again.")
    payment_url: str = Field(
        json_schema_extra={"format": "uri"},
        description="The order's payment page (`$PUBLIC_BASE_URL/w/<token>`), also for an "
                    "order confirmed by SMS code: a viewer may scan instead.")
    qr_url: str = Field(
        description="The payment page as a QR code (a path on this service, PNG; `qr.svg` too).",
        examples=["/api/v1/orders/ord_7r5vqo474pqn2qhs/qr.png"])


class Entitlement(BaseModel):
    package_id: str
    active_until: Timestamp


class EntitlementList(BaseModel):
    device_id: DeviceId
    entitlements: list[Entitlement] = Field(description="The active ones, by package id.")


class Renewal(BaseModel):
    """What renewing it costs and adds."""

    amount: Amount
    currency: Currency
    period_days: int = Field(ge=1)


class RenewableEntitlement(BaseModel):
    package_id: str
    name: str
    active_until: Timestamp
    active: bool = Field(description="Whether it is live now.")
    renewal: Renewal


class Bill(BaseModel):
    """An operator's bill of a device, paid only in full."""

    bill_id: str = Field(description="The operator's own reference.")
    device_id: DeviceId
    description: str
    amount: Amount
    currency: Currency
    status: Literal["outstanding", "paid"]
    order_id: str | None = Field(description="The order that paid it.")
    created_at: Timestamp
    paid_at: Timestamp | None


class DeviceAccount(BaseModel):
    """What the TV can renew, its stored value and the bills it owes."""

    device_id: DeviceId
    balance: Amount = Field(description="The TV's stored value, in minor units of `currency`.")
    currency: Currency
    entitlements: list[RenewableEntitlement] = Field(
        description="Every package the TV has had, live or lapsed, latest ending first.")
    bills: list[Bill] = Field(description="Its outstanding bills, oldest first.")


class BillList(BaseModel):
    bills: list[Bill]


class BillUploadResult(BaseModel):
    added: int = Field(ge=0, description="Bills loaded now.")
    unchanged: int = Field(ge=0, description="Bills that were loaded already as they are.")


class PairingCode(BaseModel):
    code: str = Field(pattern=r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{6}$", examples=["K7M2Q9"])
    expires_at: Timestamp
    pairing_url: str = Field(json_schema_extra={"format": "uri"},
                             description="The pairing page, `$PUBLIC_BASE_URL/w/pair/<code>`.")
    qr_url: str = Field(description="The pairing page as a QR code (a path on this service, "
                                    "PNG; `qr.svg` too).")
    sms: str = Field(description="What the viewer texts.", examples=["BIND K7M2Q9"])
    service_number: str = Field(description="Where the viewer texts it.", examples=["10690000"])


class PairingStatus(BaseModel):
    device_id: DeviceId
    paired: bool
    phone: MaskedPhone | None = Field(
        description="The paired phone, masked; null when not paired.")


class TvEvent(BaseModel):
    """The `data` of one event of a live stream. `message` is the text for the screen, in
    `SMS_LANGUAGE`. More fields and event types may come: ignore what you do not know."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(ge=1, description="The SSE `id`; grows with every event.")
    type: str = Field(
        examples=["order.status"],
        description="`order.status`, `order.wrong_code`, `pairing.paired`, `pairing.unpaired`, "
                    "`entitlement.revoked` (also the SSE `event` name).")
    order_id: str | None
    status: Literal["created", "awaiting_code", "awaiting_wap", "paid", "activated", "failed",
                    "expired", "cancelled"] | None = Field(
        description="The order's new status, with `order.status`; else null.")
    reason: OrderReason | None
    at: Timestamp
    message: str | None = Field(examples=["验证码已发送至138****8000"])
    phone: MaskedPhone = _optional(
        description="With `awaiting_code`/`awaiting_wap` of a phone's order, and "
                    "`pairing.paired`.")
    tries_left: int = _optional(ge=0, description="With `order.wrong_code`.")
    package_id: str = _optional(
        description="With `activated` of a package, and `entitlement.revoked`.")
    active_until: Timestamp = _optional(description="With `activated` of a package or renewal.")
    balance: int = _optional(ge=0, description="With `activated` of a recharge, the TV's new "
                                               "balance.")
    bill_id: str = _optional(description="With `activated` of a bill.")


class InboundSmsResult(BaseModel):
    accepted: Literal[True]
    replied: bool = Field(description="Whether an answer SMS was queued.")


class HealthCheck(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
    detail: str = _optional(description="What failed (or a provider's state); no secrets.")
    ms: float = _optional(ge=0, description="How long the check took.")
    providers: dict[str, HealthCheck] = _optional(
        description="In `sms`: each configured provider's check; `sms` is ok when one is.")


class Health(BaseModel):
    status: Literal["ok", "ready", "not_ready"] = Field(
        description="`ok` from `/healthz`; `ready` or `not_ready` from `/readyz`.")
    checks: dict[str, HealthCheck] = _optional(
        description="From `/readyz`: each check by name (`database`, `redis`, `sms`).")


class Problem(BaseModel):
    """An error, `application/problem+json` (RFC 9457). Branch on `code`, which is stable;
    `detail` is for people. Some codes add members, listed below."""

    type: Literal["about:blank"]
    title: str = Field(description="The HTTP status phrase.", examples=["Conflict"])
    status: int
    code: str
    detail: str
    field: str = _optional(description="With `missing_field`: the field.")
    order_status: OrderStatus = _optional(
        description="With `order_not_pending` and `order_not_retryable`.")
    retry_order_id: str = _optional(description="With `order_already_retried`.")
    amount: int = _optional(ge=0, description="With `partial_payment_refused`: the bill's amount.")
    bill_id: str = _optional(description="With `bill_exists`.")
    retry_after: int = _optional(ge=1, description="With 429: as `Retry-After`.")


#: Models the document names though no operation takes or answers them directly.
SCHEMAS: tuple[type[BaseModel], ...] = (TvEvent, Problem, InboundSms, TwilioInboundSms,
                                        TwilioStatusCallback)


# --- refusals ----------------------------------------------------------------------------------

# Which code a refused field gives, by the field's name (else ``invalid_field``).
_FIELD_CODES = {
    "device_id": "invalid_device_id", "phone": "invalid_phone", "kind": "invalid_kind",
    "package_id": "unknown_package",
    "currency": "invalid_currency", "Idempotency-Key": "invalid_idempotency_key",
    "Last-Event-ID": "invalid_last_event_id", "last_event_id": "invalid_last_event_id",
}
_UNION_TAGS = {"renewal", "recharge", "bill", "BillIn", "BillBatch"}


def refusal(error: ValidationError, raw_body: bytes | None) -> Exception:
    """The problem a refused request gives: ``invalid_json`` for a body that is no JSON object,
    ``missing_field`` for an absent (or null) required field, else the field's own code."""
    if raw_body is not None and error.title in _BODIES:
        try:
            parsed = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            return InvalidInput("the body must be a JSON object", code="invalid_json")
        if error.title == "BillUpload":
            return _bill_refusal(error, batch="bills" in parsed)
    first = error.errors()[0]
    loc = [part for part in first["loc"] if part not in _UNION_TAGS]
    name = str(loc[0]) if loc else ""
    kind = first["type"]
    if error.title == "PaymentCodeRequest":
        if kind == "union_tag_not_found":
            return InvalidInput("kind is required", code="missing_field", field="kind")
        if kind == "union_tag_invalid":
            return InvalidInput("kind must be renewal, recharge or bill", code="invalid_kind")
        if name == "package_id" and kind == "missing":  # as for a package not for sale
            return InvalidInput("package_id must be a package for sale", code="unknown_package")
        if name == "amount" and first["loc"][0] == "recharge":
            return InvalidInput("amount must be a whole number of minor units",
                                code="invalid_amount")
    if error.title == "DeviceQuery":
        return InvalidInput("device_id must be 1-64 letters, digits or . _ : -",
                            code="invalid_device_id")
    if name == "image_format":
        return NotFound("QR codes come as qr.png or qr.svg", code="not_found")
    if kind == "missing" or (first.get("input", "") is None and name):
        return InvalidInput(f"{name} is required", code="missing_field", field=name)
    code = _FIELD_CODES.get(name, "invalid_field")
    return InvalidInput(f"{name or 'the request'}: {first['msg']}", code=code)


_BODIES = {"OrderRequest", "PaymentCodeRequest", "BillUpload"}


def _bill_refusal(error: ValidationError, *, batch: bool) -> InvalidInput:
    """``invalid_bill``, naming the field at fault as ``bills[3].amount``."""
    errors = error.errors()
    form = "BillBatch" if batch else "BillIn"
    chosen = next((e for e in errors if e["loc"][:1] == (form,)), errors[0])
    place = ""
    for part in (str(p) for p in chosen["loc"][1:]):
        place += f"[{part}]" if part.isdigit() else (f".{part}" if place else part)
    return InvalidInput(f"{place or 'bill'}: {chosen['msg']}", code="invalid_bill")


# --- answers as the document gives them ---------------------------------------------------------

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
    429: ("phone_rate_limited", "phone_daily_limit", "device_rate_limited",
          "pairing_rate_limited"),
    503: ("service_unavailable",),
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
PAYLOAD_TOO_LARGE: Responses = {413: problems(413, "The body is over 64 KiB.", "payload_too_large")}
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
