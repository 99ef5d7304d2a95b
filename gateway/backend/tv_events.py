"""What a TV is shown, as rows of ``order_events``: the source of the live event streams.

Every row is written in the transaction of the change it tells of, at its commit. After it
commits, the devices it touched reach the handlers of ``TOUCHED`` (``after_commit``), which wake
the streams that follow them (``gateway.backend.live``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.effects import after_commit
from gateway.store.models import OrderEvent
from gateway.store.writes import insert_at_commit

__all__ = ["TOUCHED", "TvEvent", "record"]

TOUCHED = "tv_events.devices"


class TvEvent:
    ORDER_STATUS = "order.status"  # status, reason; data by status (masked phone, active_until)
    WRONG_CODE = "order.wrong_code"  # data: tries_left
    PAIRED = "pairing.paired"  # data: phone (masked)
    UNPAIRED = "pairing.unpaired"
    ENTITLEMENT_REVOKED = "entitlement.revoked"  # data: package_id


def record(session: Session, *, device_id: str, event_type: str, now: datetime,
           order_id: str | None = None, status: str | None = None, reason: str | None = None,
           data: dict[str, Any] | None = None) -> None:
    insert_at_commit(session, OrderEvent, {
        "device_id": device_id, "order_id": order_id, "type": event_type, "status": status,
        "reason": reason, "at": now,
        "data": json.dumps(data, ensure_ascii=False) if data else None})
    after_commit(session, TOUCHED, device_id)
