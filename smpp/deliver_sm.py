"""The SMPP worker's side of ``deliver_sm``: delivery receipts, and viewers' replies made whole.

A receipt is told apart from a reply by ``receipted_message_id`` or by its ``esm_class``. A
reply in parts (UDH or SAR TLVs) waits until its every part came, a part offered again joining
the same reply; one whose other parts do not come within two minutes is given back to the
SMSC (``ESME_RX_T_APPN``) to offer again. What is handed over is acknowledged once recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway import phones
from smpp import codec
from smpp import pdu as strict_pdu
from smpp.recorder import Inbound, Recorder

__all__ = ["DeliverSm", "DeliverSmHandler"]

log = logging.getLogger("smpp.worker")  # the worker's log lines, whichever module writes them

_RX_T_APPN, _RX_P_APPN = 0x64, 0x65
_MO_ASSEMBLY_SECONDS = 120


@dataclass(frozen=True)
class DeliverSm:
    """What the worker reads of a ``deliver_sm``."""

    sequence: int
    sender: str  # with a leading + when the SMSC gave it as international (TON 1)
    esm_class: int
    data_coding: int
    body: bytes  # short_message, or the message_payload TLV when that is empty
    receipted_message_id: str = ""
    message_state: int | None = None
    sar: tuple[int, int, int] | None = None  # reference, total, number: parts by TLVs

    @classmethod
    def read(cls, pdu: strict_pdu.Pdu) -> DeliverSm:
        tlvs = pdu.tlvs
        sender = pdu["source_addr"]
        sar = None
        if tlvs.get(strict_pdu.TLV_SAR_TOTAL_SEGMENTS):
            reference, total, number = (int.from_bytes(tlvs.get(tag, b""), "big") for tag in (
                strict_pdu.TLV_SAR_MSG_REF_NUM, strict_pdu.TLV_SAR_TOTAL_SEGMENTS,
                strict_pdu.TLV_SAR_SEGMENT_SEQNUM))
            sar = (reference, total, number)
        state = tlvs.get(strict_pdu.TLV_MESSAGE_STATE)
        return cls(
            sequence=pdu.sequence,
            sender="+" + sender if pdu["source_addr_ton"] == 1 else sender,
            esm_class=pdu["esm_class"], data_coding=pdu["data_coding"],
            body=pdu["short_message"] or tlvs.get(strict_pdu.TLV_MESSAGE_PAYLOAD, b""),
            receipted_message_id=tlvs.get(strict_pdu.TLV_RECEIPTED_MESSAGE_ID, b"")
            .rstrip(b"\x00").decode("latin-1"),
            message_state=None if state is None else int.from_bytes(state, "big"),
            sar=sar)


class DeliverSmHandler:
    """Hands each deliver_sm to the recorder: a receipt at once, a reply once whole.

    ``respond(command, sequence, status)`` encodes an answer the caller sends.
    """

    def __init__(self, recorder: Recorder, respond: Callable[[str, int, int], bytes]) -> None:
        self.recorder = recorder
        self._respond = respond
        # a reply in parts: (sender, reference, total) -> part number -> (text, sequences)
        self._fragments: dict[tuple[str, int, int], dict[int, tuple[str, list[int]]]] = {}
        self._fragment_started: dict[tuple[str, int, int], float] = {}

    def on_deliver(self, generation: int, pdu: strict_pdu.Pdu, replies: list[bytes]) -> None:
        deliver = DeliverSm.read(pdu)
        receipted = deliver.receipted_message_id
        if deliver.esm_class & 0x3C in (codec.ESM_DELIVERY_RECEIPT, 0x08, 0x10, 0x20) or receipted:
            receipt = codec.parse_receipt(deliver.body.rstrip(b"\x00").decode("latin-1"),
                                          receipted or None, deliver.message_state)
            if receipt is None:
                log.warning("unreadable delivery receipt; acknowledged and dropped")
                replies.append(self._respond("deliver_sm_resp", deliver.sequence, 0x00))
            else:
                self.recorder.results.put(Inbound(generation, [deliver.sequence], receipt))
            return
        self.on_reply(generation, deliver, replies)

    def on_reply(self, generation: int, deliver: DeliverSm, replies: list[bytes]) -> None:
        """A viewer's SMS: hand it over whole, once its every part has arrived."""
        body, concat = deliver.body, deliver.sar
        if deliver.esm_class & codec.ESM_UDHI:
            try:
                concat, body = codec.split_udh(body)
            except ValueError:
                log.warning("reply with a malformed UDH from %s; refused",
                            phones.mask(deliver.sender))
                replies.append(self._respond("deliver_sm_resp", deliver.sequence, _RX_P_APPN))
                return
        text = codec.decode_text(body, deliver.data_coding)
        if concat is None or concat[1] <= 1:
            self.recorder.add_reply(generation, [deliver.sequence], deliver.sender, text)
            return
        reference, total, number = concat
        key = (deliver.sender, reference, total)
        fragments = self._fragments.setdefault(key, {})
        self._fragment_started.setdefault(key, time.monotonic())
        sequences = fragments[number][1] if number in fragments else []
        fragments[number] = (text, [*sequences, deliver.sequence])  # a part may come again
        if len(fragments) == total:
            del self._fragments[key], self._fragment_started[key]
            ordered = [fragments[n] for n in range(1, total + 1) if n in fragments]
            if len(ordered) != total:  # numbered outside 1..total: cannot be assembled
                replies += [self._respond("deliver_sm_resp", seq, _RX_P_APPN)
                            for _, seqs in fragments.values() for seq in seqs]
                return
            self.recorder.add_reply(generation, [seq for _, seqs in ordered for seq in seqs],
                                    deliver.sender, "".join(t for t, _ in ordered))

    def give_up_late_parts(self, now: float) -> list[bytes]:
        """Answers to the parts of replies whose other parts never came: the SMSC may offer
        them again."""
        expired = [key for key, started in self._fragment_started.items()
                   if now - started > _MO_ASSEMBLY_SECONDS]
        answers = []
        for key in expired:
            del self._fragment_started[key]
            answers += [self._respond("deliver_sm_resp", seq, _RX_T_APPN)
                        for _, seqs in self._fragments.pop(key).values() for seq in seqs]
        return answers

    def forget(self) -> None:
        """The connection is gone: replies not handed over yet will be delivered again."""
        self._fragments.clear()
        self._fragment_started.clear()
