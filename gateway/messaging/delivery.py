"""What becomes of an SMS once a provider has it: the one place where a status a provider
reports is counted, and where a code SMS that can never reach its phone fails its order, so
that the TV can offer its QR code instead.

Providers (``python -m smpp``'s recorder and feeder, Twilio) write the statuses they learn and
report them here in the same transaction; they call no order use case of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from gateway import metrics
from gateway.backend import checkout
from gateway.domain.sms import SmsStatus

__all__ = ["NEVER_ARRIVES", "Sms", "reached", "unreachable"]

NEVER_ARRIVES = frozenset({SmsStatus.FAILED, SmsStatus.UNDELIVERABLE})


class Sms(Protocol):
    """What the rule needs of an SMS: an outbox row, a row of a query, a message in flight."""

    @property
    def kind(self) -> str: ...

    @property
    def order_id(self) -> str | None: ...


def reached(session: Session, provider: str, status: SmsStatus, now: datetime, *,
            count: int | None = None, messages: Iterable[Sms] = ()) -> None:
    """``count`` SMS (by default: ``messages``) of ``provider`` reached ``status``.

    A status that means the SMS never arrives fails the order of each code SMS among
    ``messages``.
    """
    messages = list(messages)
    metrics.count_sms(session, provider, status, len(messages) if count is None else count)
    if status in NEVER_ARRIVES:
        unreachable(session, messages, now)


def unreachable(session: Session, messages: Iterable[Sms], now: datetime) -> None:
    """These SMS will never reach their phones: a code SMS's order fails (``sms_undeliverable``)
    unless it has ended already."""
    for message in messages:
        if message.kind == "code" and message.order_id:
            checkout.code_sms_undeliverable(session, message.order_id, now)
