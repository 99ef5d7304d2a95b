"""What the views answer, as the document describes it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.web.schemas.fields import (
    Amount,
    Currency,
    DeviceId,
    MaskedPhone,
    OrderReason,
    OrderStatus,
    Timestamp,
    _optional,
)
from gateway.web.schemas.requests import InboundSms, TwilioInboundSms, TwilioStatusCallback


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
    connections: dict[str, SmppConnection] = _optional(
        description="In `sms.providers.smpp`: each SMPP connection with a live bind.")


class SmppConnection(BaseModel):
    """One SMPP connection, as its binds stamped themselves in Redis within
    `SMS_FAILOVER_AFTER` seconds."""

    binds: int = Field(ge=0, description="Transceiver binds up.")
    window_in_use: int = Field(ge=0, description="submit_sm sent and not answered yet.")
    tps: float = Field(ge=0, description="submit_sm a second, over the last second or so.")
    throttled: int = Field(ge=0, description="submit_sm answered ESME_RTHROTTLED or "
                                             "ESME_RMSGQFUL since its binds started.")


OverloadReason = Literal["queue_wait", "sms_backlog"]


class Overload(BaseModel):
    """Why new orders are shed now, with the figures and their bounds (a bound of 0 is off)."""

    reasons: list[OverloadReason] = Field(
        description="Empty while new orders are taken. `queue_wait`: in this worker, requests "
                    "stand in a queue for a thread, or new orders for an order slot, longer "
                    "than `max_wait_ms`; `sms_backlog`: the oldest SMS not sent yet is older "
                    "than `max_sms_backlog_seconds`.")
    queue_wait_ms: float | None = Field(
        ge=0, description="How long the latest request of this worker waited for a thread; null "
                          "under a server that does not say (only gunicorn does).")
    order_wait_ms: float | None = Field(
        ge=0, description="How long the latest new order of this worker waited for an order "
                          "slot; null before any.")
    max_wait_ms: int = Field(ge=0, description="`OVERLOAD_MAX_WAIT_MS`.")
    max_concurrent_orders: int = Field(ge=0, description="`OVERLOAD_MAX_CONCURRENT_ORDERS`.")
    sms_backlog_seconds: float | None = Field(
        ge=0, description="How long the oldest SMS not sent yet has waited (0: none waits); "
                          "null when the database did not answer.")
    max_sms_backlog_seconds: int = Field(ge=0, description="`OVERLOAD_MAX_SMS_BACKLOG_SECONDS`.")


class Health(BaseModel):
    status: Literal["ok", "ready", "not_ready"] = Field(
        description="`ok` from `/healthz`; `ready` or `not_ready` from `/readyz`.")
    checks: dict[str, HealthCheck] = _optional(
        description="From `/readyz`: each check by name (`database`, `redis`, `sms`).")
    overloaded: bool = _optional(
        description="From `/readyz`: whether new orders are shed now (`503 overloaded`).")
    overload: Overload = _optional(description="From `/readyz`: why, and the figures.")


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
    retry_after: int = _optional(ge=1, description="With 429 and `overloaded`: as `Retry-After`.")
    retry_after_ms: int = _optional(ge=1, description="With `overloaded`: when to try again, in "
                                                      "milliseconds.")
    reason: OverloadReason = _optional(
        description="With `overloaded`: `queue_wait` (requests stand in a queue for a thread) "
                    "or `sms_backlog` (SMS leave late, so a code would arrive late).")


#: Models the document names though no operation takes or answers them directly.
SCHEMAS: tuple[type[BaseModel], ...] = (TvEvent, Problem, InboundSms, TwilioInboundSms,
                                        TwilioStatusCallback)
