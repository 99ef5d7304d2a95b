"""The order life cycle as a pure state machine: statuses, reasons and legal transitions.

    created ─► awaiting_code ─(right code)─► paid ─► activated
       │            │ (wrong code ×N, expiry, cancel) ─► failed / expired / cancelled
       └──► awaiting_wap ─(paid on page)─► paid ─► activated
       └──► failed (insufficient_funds)

No I/O here: use cases in ``gateway.backend.checkout`` load a row, ask this module whether the
move is legal, and write the result in the same transaction as any money that moves with it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

__all__ = ["FINAL", "PENDING", "Channel", "IllegalTransition", "Kind", "Reason", "Status",
           "is_lapsed", "next_status"]


class Status(StrEnum):
    CREATED = "created"
    AWAITING_CODE = "awaiting_code"
    AWAITING_WAP = "awaiting_wap"
    PAID = "paid"
    ACTIVATED = "activated"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        """Waiting for the viewer: a hold or a link is live and may still be used."""
        return self in PENDING


PENDING = (Status.AWAITING_CODE, Status.AWAITING_WAP)
FINAL = (Status.ACTIVATED, Status.FAILED, Status.EXPIRED, Status.CANCELLED)


class Reason(StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    SMS_UNDELIVERABLE = "sms_undeliverable"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    BILL_ALREADY_PAID = "bill_already_paid"  # another order paid the bill first


class Kind(StrEnum):
    PACKAGE = "package"  # a TV asked a phone to pay for a package
    RENEWAL = "renewal"  # a TV showed a QR code to renew a package
    RECHARGE = "recharge"  # a TV showed a QR code to top up its stored-value balance
    BILL = "bill"  # an operator's outstanding bill for the device, paid in full


class Channel(StrEnum):
    SMS_CODE = "sms_code"
    WAP = "wap"


_LEGAL: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.AWAITING_CODE, Status.AWAITING_WAP, Status.FAILED}),
    Status.AWAITING_CODE: frozenset(
        {Status.PAID, Status.FAILED, Status.EXPIRED, Status.CANCELLED}
    ),
    Status.AWAITING_WAP: frozenset({Status.PAID, Status.FAILED, Status.EXPIRED, Status.CANCELLED}),
    Status.PAID: frozenset({Status.ACTIVATED}),
}


class IllegalTransition(Exception):
    """A bug: a use case tried a move the life cycle does not allow."""


def next_status(current: str, target: Status) -> Status:
    """Return ``target`` if an order in ``current`` may move there.

    :raise IllegalTransition: if it may not.
    """
    if target not in _LEGAL.get(Status(current), frozenset()):
        raise IllegalTransition(f"order cannot go from {current} to {target}")
    return target


def is_lapsed(status: str, expires_at: datetime | None, now: datetime) -> bool:
    """A pending order whose code or link has run out; it must be shown and treated as expired."""
    return status in PENDING and expires_at is not None and now >= expires_at
