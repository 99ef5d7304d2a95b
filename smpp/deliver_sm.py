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
from typing import Any

from gateway import phones
from smpp import codec
from smpp.recorder import Inbound, Recorder
from smpp.session import pdu_text

__all__ = ["DeliverSmHandler"]

log = logging.getLogger("smpp.worker")  # the worker's log lines, whichever module writes them

_RX_T_APPN, _RX_P_APPN = 0x64, 0x65
_MO_ASSEMBLY_SECONDS = 120


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

    def on_deliver(self, generation: int, pdu: Any, replies: list[bytes]) -> None:
        esm_class = int(pdu.esm_class or 0)
        receipted = pdu_text(getattr(pdu, "receipted_message_id", None))
        if esm_class & 0x3C in (codec.ESM_DELIVERY_RECEIPT, 0x08, 0x10, 0x20) or receipted:
            state = getattr(pdu, "message_state", None)
            receipt = codec.parse_receipt(pdu_text(pdu.short_message), receipted or None,
                                          None if state is None else int(state))
            if receipt is None:
                log.warning("unreadable delivery receipt; acknowledged and dropped")
                replies.append(self._respond("deliver_sm_resp", pdu.sequence, 0x00))
            else:
                self.recorder.results.put(Inbound(generation, [pdu.sequence], receipt))
            return
        self.on_reply(generation, pdu, replies)

    def on_reply(self, generation: int, pdu: Any, replies: list[bytes]) -> None:
        """A viewer's SMS: hand it over whole, once its every part has arrived."""
        sender = pdu_text(pdu.source_addr)
        if int(pdu.source_addr_ton or 0) == 1:
            sender = "+" + sender
        body = pdu.short_message or getattr(pdu, "message_payload", None) or b""
        coding = int(pdu.data_coding or 0)
        concat = None
        if int(pdu.esm_class or 0) & codec.ESM_UDHI:
            try:
                concat, body = codec.split_udh(body)
            except ValueError:
                log.warning("reply with a malformed UDH from %s; refused", phones.mask(sender))
                replies.append(self._respond("deliver_sm_resp", pdu.sequence, _RX_P_APPN))
                return
        elif getattr(pdu, "sar_total_segments", None):  # concatenated by TLVs instead
            concat = (int(pdu.sar_msg_ref_num or 0), int(pdu.sar_total_segments),
                      int(pdu.sar_segment_seqnum or 0))
        text = codec.decode_text(body, coding)
        if concat is None or concat[1] <= 1:
            self.recorder.add_reply(generation, [pdu.sequence], sender, text)
            return
        reference, total, number = concat
        key = (sender, reference, total)
        fragments = self._fragments.setdefault(key, {})
        self._fragment_started.setdefault(key, time.monotonic())
        sequences = fragments[number][1] if number in fragments else []
        fragments[number] = (text, [*sequences, pdu.sequence])  # a part may come again
        if len(fragments) == total:
            del self._fragments[key], self._fragment_started[key]
            ordered = [fragments[n] for n in range(1, total + 1) if n in fragments]
            if len(ordered) != total:  # numbered outside 1..total: cannot be assembled
                replies += [self._respond("deliver_sm_resp", seq, _RX_P_APPN)
                            for _, seqs in fragments.values() for seq in seqs]
                return
            self.recorder.add_reply(generation, [seq for _, seqs in ordered for seq in seqs],
                                    sender, "".join(t for t, _ in ordered))

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
