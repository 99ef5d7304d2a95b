"""Notifications for the operator's BOSS (CN104967874A step 5): what was activated, revoked,
recharged or paid, as signed JSON events posted to ``BOSS_WEBHOOK_URL``.

An event is written in the transaction of the change it reports, so none is lost and none is
told of a change that rolled back; the worker posts it until the receiver answers 2xx.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.context import iso
from gateway.db import BossEvent

__all__ = ["EventType", "record"]


class EventType:
    ENTITLEMENT_ACTIVATED = "entitlement.activated"
    ENTITLEMENT_REVOKED = "entitlement.revoked"
    RECHARGE_COMPLETED = "recharge.completed"
    BILL_PAID = "bill.paid"


def record(session: Session, event_type: str, data: dict[str, Any], now: datetime) -> BossEvent:
    """Write an event to post; ``data`` values that are datetimes are sent in ISO 8601 UTC."""
    event_id = "evt_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()
    body = {"id": event_id, "type": event_type, "created_at": iso(now),
            "data": {k: iso(v) if isinstance(v, datetime) else v for k, v in data.items()}}
    event = BossEvent(id=event_id, type=event_type, status="pending", attempts=0,
                      body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                      next_attempt_at=now, created_at=now)
    session.add(event)
    return event
