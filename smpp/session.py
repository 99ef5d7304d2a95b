"""The SMPP worker's session with the SMSC: one transceiver bind over one TCP connection.

It connects and binds, writes PDUs, reads the bytes that come back as whole PDUs (answering
with ``generic_nack`` what cannot be read), keeps the link alive with ``enquire_link``, and
raises ``ConnectionLost`` when the connection is gone or silent too long.
"""

from __future__ import annotations

import logging
import select as io_select
import socket
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
from smpplib import smpp as smpplib_smpp

from gateway.config import Settings
from smpp import pdu as strict_pdu

__all__ = ["ROK", "ConnectionLost", "SmppSession", "pdu_text"]

log = logging.getLogger("smpp.worker")  # the worker's log lines, whichever module writes them

ROK, _RINVCMDID, _RINVCMDLEN = 0x00, 0x03, 0x02
_DELIVER_SM = (0x00000005).to_bytes(4, "big")


class ConnectionLost(Exception):
    pass


def pdu_text(value: Any) -> str:
    """A C-string field of an ``smpplib`` PDU (bytes, or None when absent) as text."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.rstrip(b"\x00").decode("latin-1")
    return str(value)


@cache
def _answer_template(command: str, status: int) -> bytes:
    """An answer with no variable field (``deliver_sm_resp``, ``generic_nack``, ...) as smpplib
    encodes it, with sequence number 0."""
    pdu = smpplib_smpp.make_pdu(command, status=status)
    pdu.sequence = 0
    encoded: bytes = pdu.generate()
    return encoded


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(io_select.select([sock], [], [], timeout)[0])


class SmppSession:
    """The connection to the SMSC at ``host:port``, bound as a transceiver once connected."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.client: smpplib.client.Client | None = None
        self.last_io = time.monotonic()
        self.enquiry: tuple[int, float] | None = None  # our enquire_link: sequence, sent at
        self._buffer = bytearray()

    def connect(self) -> None:
        """Connect and bind; ``smpplib`` raises when the SMSC refuses."""
        client = smpplib.client.Client(self.host, self.port,
                                       timeout=self.settings.SMPP_RESPONSE_TIMEOUT,
                                       allow_unknown_opt_params=True)
        self.client = client
        client.connect()
        # Small PDUs answer each other: without this, Nagle's algorithm and delayed ACKs add up
        # to 40 ms to a round trip.
        client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.bind_transceiver(system_id=self.settings.SMPP_SYSTEM_ID,
                                password=self.settings.SMPP_PASSWORD,
                                system_type=self.settings.SMPP_SYSTEM_TYPE)
        self._buffer.clear()
        self.last_io = time.monotonic()
        self.enquiry = None

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN  # unbound, or lost
            self.client.disconnect()
            self.client = None

    # --- writing -------------------------------------------------------------------------------

    def make_pdu(self, command: str, **fields: Any) -> Any:
        """A PDU of this session, numbered by its client (``smpplib``'s PDUs are untyped)."""
        return smpplib_smpp.make_pdu(command, client=self.client, **fields)

    def respond(self, command: str, sequence: int, status: int = ROK) -> bytes:
        """An answer to the PDU numbered ``sequence``: smpplib encodes each kind once (making
        one a time cost the worker about 5 µs of every message's receipt)."""
        template = _answer_template(command, status)
        return template[:12] + sequence.to_bytes(4, "big") + template[16:]

    def send(self, pdus: list[bytes]) -> None:
        if not pdus:
            return
        assert self.client is not None
        try:
            self.client._socket.sendall(b"".join(pdus))
        except OSError as exc:
            raise ConnectionLost(f"send failed: {exc}") from None
        self.last_io = time.monotonic()

    # --- reading -------------------------------------------------------------------------------

    def read(self, timeout: float) -> Iterator[bytes]:
        """Every whole PDU that arrives within ``timeout`` seconds, as it arrives."""
        assert self.client is not None
        sock = self.client._socket
        while _readable(sock, timeout):
            timeout = 0
            try:
                data = sock.recv(1 << 16)
            except OSError as exc:
                raise ConnectionLost(f"receive failed: {exc}") from None
            if not data:
                raise ConnectionLost("the SMSC closed the connection")
            self.last_io = time.monotonic()
            self._buffer += data
            yield from self._split_pdus()

    def _split_pdus(self) -> list[bytes]:
        pdus = []
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:4], "big")
            if not 16 <= length <= 64 * 1024:
                raise ConnectionLost(f"unreadable PDU length {length}")
            if len(self._buffer) < length:
                break
            pdus.append(bytes(self._buffer[:length]))
            del self._buffer[:length]
        return pdus

    def parse(self, raw: bytes, replies: list[bytes]) -> Any | None:
        """The PDU in ``raw``; None when it cannot be read, with its generic_nack in ``replies``.

        A ``deliver_sm`` is read by the strict codec (``smpp.pdu``, a ``Pdu``): smpplib reads a
        cut-short body as fields, and its reading cost 38 µs of every receipt against 5. The
        other PDUs (answers to ours) are smpplib's."""
        sequence = int.from_bytes(raw[12:16], "big")
        try:
            if raw[4:8] == _DELIVER_SM:
                return strict_pdu.decode(raw)
            pdu = smpplib_smpp.parse_pdu(raw, client=self.client, allow_unknown_opt_params=True)
        except strict_pdu.PduError as exc:
            log.warning("malformed deliver_sm from the SMSC (%s); answering generic_nack", exc)
            replies.append(self.respond("generic_nack", sequence, exc.status))
            return None
        except smpplib.exceptions.UnknownCommandError:
            replies.append(self.respond("generic_nack", sequence, _RINVCMDID))
            return None
        except Exception as exc:  # a malformed PDU from the SMSC must not stop the worker
            log.warning("unreadable PDU from the SMSC (%s); answering generic_nack",
                        type(exc).__name__)
            replies.append(self.respond("generic_nack", sequence, _RINVCMDLEN))
            return None
        if pdu is None:
            replies.append(self.respond("generic_nack", sequence, _RINVCMDID))
        return pdu

    # --- keeping the link alive ------------------------------------------------------------------

    def keep_alive(self, now: float) -> None:
        """Send enquire_link after a silence; give the link up when it goes unanswered."""
        s = self.settings
        if self.enquiry is not None and now - self.enquiry[1] > s.SMPP_RESPONSE_TIMEOUT:
            raise ConnectionLost("no answer to enquire_link")
        if self.enquiry is None and now - self.last_io > s.SMPP_ENQUIRE_LINK_SECONDS:
            pdu = self.make_pdu("enquire_link")
            self.enquiry = (pdu.sequence, now)
            self.send([pdu.generate()])
