"""A small, strict SMPP 3.4 PDU codec, written independently of smpplib.

The built-in SMSC speaks through it, so that the worker (which uses smpplib) is tested against
a second implementation of the protocol rather than against itself. The worker reads
``deliver_sm`` with it too (strictly, and at a seventh of smpplib's cost); tests read what
smpplib encodes with it, so that this reading, too, is checked against the other one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COMMAND_IDS", "HEADER", "Pdu", "PduError", "Status", "decode", "encode"]

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
MAX_PDU_LENGTH = 64 * 1024


class Status:
    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RSYSERR = 0x08
    RINVDSTADR = 0x0B
    RINVMSGID = 0x0C
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RMSGQFUL = 0x14
    RTHROTTLED = 0x58
    RX_T_APPN = 0x64
    RQUERYFAIL = 0x67


COMMAND_IDS = {
    "generic_nack": 0x80000000,
    "bind_receiver": 0x00000001, "bind_receiver_resp": 0x80000001,
    "bind_transmitter": 0x00000002, "bind_transmitter_resp": 0x80000002,
    "query_sm": 0x00000003, "query_sm_resp": 0x80000003,
    "submit_sm": 0x00000004, "submit_sm_resp": 0x80000004,
    "deliver_sm": 0x00000005, "deliver_sm_resp": 0x80000005,
    "unbind": 0x00000006, "unbind_resp": 0x80000006,
    "bind_transceiver": 0x00000009, "bind_transceiver_resp": 0x80000009,
    "enquire_link": 0x00000015, "enquire_link_resp": 0x80000015,
}
COMMAND_NAMES = {value: name for name, value in COMMAND_IDS.items()}

# Mandatory body fields: (name, kind, max length for C-strings). Kinds: "c" C-octet string,
# "u8" one octet, "sm" sm_length-prefixed octets.
_BIND = [("system_id", "c", 16), ("password", "c", 9), ("system_type", "c", 13),
         ("interface_version", "u8", 0), ("addr_ton", "u8", 0), ("addr_npi", "u8", 0),
         ("address_range", "c", 41)]
_SM = [("service_type", "c", 6), ("source_addr_ton", "u8", 0), ("source_addr_npi", "u8", 0),
       ("source_addr", "c", 21), ("dest_addr_ton", "u8", 0), ("dest_addr_npi", "u8", 0),
       ("destination_addr", "c", 21), ("esm_class", "u8", 0), ("protocol_id", "u8", 0),
       ("priority_flag", "u8", 0), ("schedule_delivery_time", "c", 17),
       ("validity_period", "c", 17), ("registered_delivery", "u8", 0),
       ("replace_if_present_flag", "u8", 0), ("data_coding", "u8", 0),
       ("sm_default_msg_id", "u8", 0), ("short_message", "sm", 254)]
_BODIES: dict[str, list[tuple[str, str, int]]] = {
    "bind_receiver": _BIND, "bind_transmitter": _BIND, "bind_transceiver": _BIND,
    "bind_receiver_resp": [("system_id", "c", 16)],
    "bind_transmitter_resp": [("system_id", "c", 16)],
    "bind_transceiver_resp": [("system_id", "c", 16)],
    "submit_sm": _SM, "deliver_sm": _SM,
    "submit_sm_resp": [("message_id", "c", 65)], "deliver_sm_resp": [("message_id", "c", 65)],
    "query_sm": [("message_id", "c", 65), ("source_addr_ton", "u8", 0),
                 ("source_addr_npi", "u8", 0), ("source_addr", "c", 21)],
    "query_sm_resp": [("message_id", "c", 65), ("final_date", "c", 17),
                      ("message_state", "u8", 0), ("error_code", "u8", 0)],
}

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F


class PduError(Exception):
    """A PDU that cannot be read; ``status`` is what to answer it with (generic_nack)."""

    def __init__(self, detail: str, status: int = Status.RINVCMDLEN) -> None:
        super().__init__(detail)
        self.status = status


@dataclass
class Pdu:
    command: str
    sequence: int
    status: int = Status.ROK
    fields: dict[str, Any] = field(default_factory=dict)
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    @property
    def is_response(self) -> bool:
        return bool(COMMAND_IDS[self.command] & 0x80000000)


def encode(pdu: Pdu) -> bytes:
    body = bytearray()
    if pdu.status == Status.ROK or not pdu.is_response:
        for name, kind, _limit in _BODIES.get(pdu.command, []):
            value = pdu.fields.get(name, b"" if kind == "sm" else "" if kind == "c" else 0)
            if kind == "c":
                body += str(value).encode("latin-1") + b"\x00"
            elif kind == "u8":
                body.append(int(value) & 0xFF)
            else:
                body.append(len(value))
                body += value
        for tag, value in pdu.tlvs.items():
            body += struct.pack(">HH", tag, len(value)) + value
    return HEADER.pack(HEADER.size + len(body), COMMAND_IDS[pdu.command], pdu.status,
                       pdu.sequence) + bytes(body)


def decode(raw: bytes) -> Pdu:
    """Read one whole PDU.

    :raise PduError: for a length, command id or body that does not follow SMPP 3.4.
    """
    if len(raw) < HEADER.size:
        raise PduError("PDU shorter than its header")
    length, command_id, status, sequence = HEADER.unpack_from(raw)
    if length != len(raw) or length > MAX_PDU_LENGTH:
        raise PduError(f"command_length {length} does not match {len(raw)} octets")
    command = COMMAND_NAMES.get(command_id)
    if command is None:
        raise PduError(f"unknown command_id {command_id:#010x}", Status.RINVCMDID)
    pdu = Pdu(command, sequence, status)
    offset = HEADER.size
    if offset == length and pdu.is_response and status != Status.ROK:
        return pdu  # an error response may carry no body
    for name, kind, limit in _BODIES.get(command, []):
        if kind == "c":
            end = raw.find(b"\x00", offset, min(length, offset + limit + 1))
            if end < 0:
                raise PduError(f"{name} is not a C-octet string of at most {limit} octets")
            pdu.fields[name] = raw[offset:end].decode("latin-1")
            offset = end + 1
        elif kind == "u8":
            if offset >= length:
                raise PduError(f"{name} missing")
            pdu.fields[name] = raw[offset]
            offset += 1
        else:
            if offset >= length or offset + 1 + raw[offset] > length:
                raise PduError("sm_length runs past the PDU", Status.RINVMSGLEN)
            size = raw[offset]
            pdu.fields[name] = bytes(raw[offset + 1:offset + 1 + size])
            offset += 1 + size
    while offset < length:
        if offset + 4 > length:
            raise PduError("truncated optional parameter")
        tag, size = struct.unpack_from(">HH", raw, offset)
        if offset + 4 + size > length:
            raise PduError("optional parameter runs past the PDU")
        pdu.tlvs[tag] = bytes(raw[offset + 4:offset + 4 + size])
        offset += 4 + size
    return pdu
