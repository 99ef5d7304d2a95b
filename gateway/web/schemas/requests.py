"""What the views take: path, query and header parameters, and request bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictStr
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from gateway.backend.bills import BillIn
from gateway.web.schemas.fields import DeviceId, Whole, _given, _Model, _optional

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
    MessageSid: str = Field(description="Twilio's id of the message: the same message posted "
                                        "again is answered again and acted on once.")


class TwilioStatusCallback(BaseModel):
    """Twilio's form fields (more come and are ignored)."""

    model_config = ConfigDict(extra="allow")

    MessageSid: str
    MessageStatus: str = Field(examples=["delivered", "undelivered", "failed"])
    ErrorCode: str = _optional(examples=["30003"])
