"""What an SMS row's status says, and which statuses mean "not sent yet".

``queued`` → ``sent`` (log provider), or ``queued`` → ``sending`` (claimed by a provider) →
``submitted`` (the SMSC accepted every part) → ``delivered`` / ``undeliverable`` (delivery
receipts); or ``failed`` with an error.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["WAITING", "SmsStatus"]


class SmsStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    FAILED = "failed"


WAITING = (SmsStatus.QUEUED, SmsStatus.SENDING)  # not sent yet: the queue a provider drains
