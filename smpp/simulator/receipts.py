"""What became of each part the SMSC accepted: its state, its receipt, its query_sm answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smpp import codec
from smpp.pdu import TLV_MESSAGE_STATE, TLV_RECEIPTED_MESSAGE_ID, Pdu
from smpp.simulator.sessions import Delivery

__all__ = ["Submitted", "parse_absolute", "query_answer", "receipt"]


@dataclass
class Submitted:
    message_id: str
    destination: str
    submitted_at: datetime
    state: int = 1  # ENROUTE until delivered, expired or found undeliverable
    done_at: datetime | None = None


def receipt(submit: Pdu, record: Submitted, shown_id: str, style: str) -> Delivery:
    """The delivery receipt of a part, to the submitter: ``style`` "tlv", "text" or "both"."""
    text = codec.receipt_text(shown_id, record.state, record.submitted_at,
                              record.done_at or record.submitted_at)
    tlvs: dict[int, bytes] = {}
    if style in ("tlv", "both"):
        tlvs = {TLV_RECEIPTED_MESSAGE_ID: record.message_id.encode() + b"\x00",
                TLV_MESSAGE_STATE: bytes([record.state])}
    short_message = text.encode() if style in ("text", "both") else b""
    return Delivery({
        "source_addr_ton": submit["dest_addr_ton"], "source_addr_npi": 1,
        "source_addr": submit["destination_addr"], "dest_addr_ton": 0, "dest_addr_npi": 1,
        "destination_addr": submit["source_addr"], "esm_class": codec.ESM_DELIVERY_RECEIPT,
        "short_message": short_message, "data_coding": 0,
    }, tlvs, reply=False)


def query_answer(record: Submitted) -> dict[str, Any]:
    """The fields of the query_sm_resp about a part."""
    final = record.done_at.strftime("%y%m%d%H%M%S") + "000+" if record.done_at else ""
    return {"message_id": record.message_id, "final_date": final,
            "message_state": record.state, "error_code": 0}


def parse_absolute(value: str) -> datetime:
    """An SMPP absolute time ``YYMMDDhhmmsstnnp`` as an aware datetime."""
    base = datetime.strptime(value[:12], "%y%m%d%H%M%S").replace(tzinfo=UTC)
    offset = int(value[13:15]) * 15 * 60 * (-1 if value[15] == "+" else 1)
    return datetime.fromtimestamp(base.timestamp() + offset, UTC)
