"""The SMPP worker (``python -m smpp``): one transceiver bind carries SMS to and from the SMSC.

Outbound, each turn of the loop:
  1. reads outbox ids from the Redis Stream (consumer group ``smpp``; entries that a dead worker
     left unacknowledged are reclaimed after ``SMPP_RECLAIM_AFTER``) and claims the rows in SQL,
     so no row is sent twice by the service;
  2. encodes each text (GSM 03.38, else UCS-2; concatenated parts when long) and sends
     ``submit_sm`` while fewer than ``SMPP_WINDOW`` are unanswered and the token bucket of
     ``SMPP_MAX_TPS`` allows; a code SMS carries its code's expiry as validity period;
  3. records what the SMSC answered in one SQL transaction per turn, and only then acknowledges
     the stream entries of messages whose every part was accepted or refused for good.
     Throttling (``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``) puts parts back in front, with backoff.

Inbound, receipts (``receipted_message_id``/``message_state`` TLVs or ``id:… stat:…`` text, ids
in hex or decimal) update parts and messages; an undeliverable code SMS fails its order with
``sms_undeliverable``. A viewer's reply goes to ``gateway.inbound.receive_sms``; every
``deliver_sm_resp`` is sent only after what it acknowledges has committed, so a crash makes the
SMSC deliver it again. A part with no receipt after ``SMPP_DLR_TIMEOUT`` is asked about with
``query_sm``.

A lost connection puts unanswered parts back in front, in order, and binds again with backoff.
SIGTERM stops taking work, waits briefly for answers, records them, and unbinds.

One thread runs the loop; nothing is shared with other threads, so nothing is locked.
"""

from __future__ import annotations

import logging
import os
import select as io_select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
from smpplib import smpp as smpplib_smpp
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from gateway import inbound, payments, phones
from gateway.context import Gateway
from gateway.db import OutboxMessage, SmsPart
from gateway.errors import InvalidInput
from gateway.sms.outbox import SmsStatus
from gateway.sms.stream import OutboundStream
from smpp import codec

__all__ = ["SmppWorker", "TokenBucket"]

log = logging.getLogger(__name__)

PROVIDER = "smpp"
_TRANSIENT = {0x14: "ESME_RMSGQFUL", 0x58: "ESME_RTHROTTLED", 0x08: "ESME_RSYSERR",
              0x64: "ESME_RX_T_APPN"}
_ROK, _RX_T_APPN, _RX_P_APPN, _RINVCMDLEN = 0x00, 0x64, 0x65, 0x02
_MAX_QUERIES = 3
_MO_ASSEMBLY_SECONDS = 120


class TokenBucket:
    """At most ``rate`` tokens a second, with a burst of a twentieth of a second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 20)
        self.tokens = self.capacity
        self._clock = clock
        self._stamp = clock()

    def take(self) -> float:
        """Take a token and return 0, or return the seconds until one is available."""
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(eq=False)
class _Message:
    outbox_id: int
    entry_id: str
    kind: str
    order_id: str | None
    destination: str
    expires_at: datetime | None
    data_coding: int = 0
    esm_class: int = 0
    parts: list[_Part] = field(default_factory=list)
    answered: int = 0
    error: str | None = None


@dataclass(eq=False)
class _Part:
    message: _Message
    number: int
    payload: bytes
    sequence: int = 0
    sent_at: float = 0.0
    message_id: str | None = None


@dataclass
class _Inbound:
    """A receipt or a reply waiting for SQL, and the deliver_sm sequences it acknowledges."""

    sequences: list[int]
    receipt: codec.Receipt | None = None
    sender: str = ""
    text: str = ""


class _ConnectionLost(Exception):
    pass


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(io_select.select([sock], [], [], timeout)[0])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.rstrip(b"\x00").decode("latin-1")
    return str(value)


class SmppWorker:
    def __init__(self, gw: Gateway, *, host: str, port: int, consumer: str | None = None) -> None:
        self.gw = gw
        self.settings = gw.settings
        self.host, self.port = host, port
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.stream = OutboundStream(gw.redis, gw.settings.REDIS_PREFIX)
        self.stopping = threading.Event()
        self.bound = threading.Event()
        self._client: smpplib.client.Client | None = None
        self._buffer = bytearray()
        self._bucket = TokenBucket(self.settings.SMPP_MAX_TPS)
        self._ready: deque[_Part] = deque()
        self._inflight: dict[int, _Part] = {}
        self._active: dict[int, _Message] = {}  # outbox id -> message claimed, not yet settled
        self._settled: list[_Message] = []  # every part answered: record, then acknowledge
        self._accepted: list[_Part] = []  # parts the SMSC took, to record with their ids
        self._inbound: list[_Inbound] = []
        self._fragments: dict[tuple[str, int, int], dict[int, tuple[str, int]]] = {}
        self._fragment_started: dict[tuple[str, int, int], float] = {}
        self._queries: dict[int, str] = {}  # query_sm sequence -> message id asked about
        self._reference = 0
        self._paused_until = 0.0
        self._throttle_backoff = 0.05
        self._last_io = time.monotonic()
        self._enquiry: tuple[int, float] | None = None
        self._next_reclaim = 0.0
        self._next_query = 0.0

    # --- life cycle ----------------------------------------------------------------------------

    def run(self) -> None:
        """Bind, serve, and bind again after a failure, until ``stopping`` is set."""
        self.stream.ensure_group()
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self._connect()
                delay = 0.5
                self._serve()
            except (_ConnectionLost, smpplib.exceptions.ConnectionError,
                    smpplib.exceptions.PDUError, OSError) as exc:
                log.warning("SMSC %s:%s: %s; binding again in %.1f s", self.host, self.port,
                            exc or type(exc).__name__, delay)
                self._drop_connection()
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception:  # the database or Redis failed: start over from a clean bind
                log.exception("SMPP worker failed; binding again in %.1f s", delay)
                self._drop_connection()
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)
        self._unbind()
        log.info("SMPP worker stopped")

    def stop(self) -> None:
        self.stopping.set()

    def _connect(self) -> None:
        client = smpplib.client.Client(self.host, self.port,
                                       timeout=self.settings.SMPP_RESPONSE_TIMEOUT,
                                       allow_unknown_opt_params=True)
        self._client = client
        client.connect()
        client.bind_transceiver(system_id=self.settings.SMPP_SYSTEM_ID,
                                password=self.settings.SMPP_PASSWORD,
                                system_type=self.settings.SMPP_SYSTEM_TYPE)
        self._buffer.clear()
        self._last_io = time.monotonic()
        self._enquiry = None
        self.bound.set()
        log.info("bound to SMSC %s:%s as %s", self.host, self.port, self.settings.SMPP_SYSTEM_ID)

    def _drop_connection(self) -> None:
        """Forget the connection; put every unanswered part back in front, in order."""
        self.bound.clear()
        self._ready.extendleft(reversed(list(self._inflight.values())))
        self._inflight.clear()
        self._queries.clear()
        self._fragments.clear()
        self._fragment_started.clear()
        # Replies not yet handed over are left to the SMSC, which delivers them again.
        self._inbound = [item for item in self._inbound if item.receipt is not None]
        try:
            self._record(respond=False)  # what was answered is kept; receipts come again
        except Exception:
            log.exception("could not record SMSC answers before reconnecting")
        self._inbound.clear()
        self._disconnect()

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN  # unbound, or lost
            self._client.disconnect()
            self._client = None

    def _unbind(self) -> None:
        if self._client is None:
            return
        try:
            self._send([smpplib_smpp.make_pdu("unbind", client=self._client).generate()])
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and self._client is not None:
                self._receive(0.1)
        except (_ConnectionLost, OSError):
            pass
        self.bound.clear()
        self._disconnect()

    # --- the loop ------------------------------------------------------------------------------

    def _serve(self) -> None:
        drain_until: float | None = None
        while True:
            now = time.monotonic()
            if self.stopping.is_set():
                drain_until = drain_until or now + self.settings.SMPP_RESPONSE_TIMEOUT
                if not self._inflight or now > drain_until:
                    self._record()
                    return
            else:
                self._take_work(now)
            wait = self._submit_ready(now)
            self._receive(wait)
            self._record()
            self._keep_alive(time.monotonic())

    def _take_work(self, now: float) -> None:
        if len(self._ready) >= 2 * self.settings.SMPP_WINDOW or now < self._paused_until:
            return
        reclaimed: list[tuple[str, int]] = []
        if now >= self._next_reclaim:
            self._next_reclaim = now + max(1.0, self.settings.SMPP_RECLAIM_AFTER / 4)
            reclaimed = self.stream.reclaim(self.consumer,
                                            self.settings.SMPP_RECLAIM_AFTER * 1000)
        idle = not self._ready and not self._inflight and not self._has_unread()
        fresh = self.stream.read(self.consumer, count=4 * self.settings.SMPP_WINDOW,
                                 block_ms=50 if idle else None)
        if reclaimed or fresh:
            self._claim(fresh, reclaimed)

    def _has_unread(self) -> bool:
        assert self._client is not None
        return bool(self._buffer) or _readable(self._client._socket, 0)

    def _claim(self, fresh: list[tuple[str, int]], reclaimed: list[tuple[str, int]]) -> None:
        """Take the rows of new entries that are still queued, and of reclaimed entries that a
        dead worker had claimed; acknowledge entries whose row needs nothing more."""
        mine = [entry for entry in reclaimed if entry[1] in self._active]
        reclaimed = [entry for entry in reclaimed if entry[1] not in self._active]
        entries = fresh + reclaimed
        retaken = [outbox_id for _, outbox_id in reclaimed]
        now = self.gw.clock()
        with self.gw.db.transaction() as session:
            rows = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([outbox_id for _, outbox_id in entries]),
                       or_(OutboxMessage.status == SmsStatus.QUEUED,
                           and_(OutboxMessage.status == SmsStatus.SENDING,
                                OutboxMessage.id.in_(retaken))))
                .values(status=SmsStatus.SENDING, provider=PROVIDER, updated_at=now)
                .returning(OutboxMessage.id, OutboxMessage.to_phone, OutboxMessage.body,
                           OutboxMessage.kind, OutboxMessage.order_id, OutboxMessage.expires_at)
                .execution_options(synchronize_session=False)
            ).all()
        claimed = {row.id: row for row in rows}
        done = []
        for entry_id, outbox_id in entries:
            row = claimed.pop(outbox_id, None)
            if row is None:  # handled already, or a second entry for the same row
                done.append(entry_id)
                continue
            self._reference = (self._reference + 1) % 256
            coding, esm_class, payloads = codec.encode_parts(row.body, self._reference)
            message = _Message(outbox_id, entry_id, row.kind, row.order_id,
                               row.to_phone.lstrip("+"), row.expires_at, coding, esm_class)
            message.parts = [_Part(message, n, payload)
                             for n, payload in enumerate(payloads, start=1)]
            self._active[outbox_id] = message
            self._ready.extend(message.parts)
        self.stream.ack(done)
        if mine:
            log.debug("kept %d entries that are still in progress here", len(mine))

    def _submit_ready(self, now: float) -> float:
        """Send what the window and the rate allow; return how long the loop may wait."""
        if not self._ready:
            return 0.05 if self._inflight else 0.0  # idle: the stream read has just waited
        if now < self._paused_until:
            return min(0.05, self._paused_until - now)
        window = self.settings.SMPP_WINDOW
        out: list[bytes] = []
        wait = 0.05
        utc_now = self.gw.clock()
        while self._ready and len(self._inflight) < window:
            part = self._ready[0]
            message = part.message
            if message.expires_at is not None and utc_now >= message.expires_at:
                self._ready.popleft()
                self._refuse(part, "expired before sending")
                continue
            wait = self._bucket.take()
            if wait:
                break
            self._ready.popleft()
            pdu = self._submit_pdu(part)
            part.sequence, part.sent_at = pdu.sequence, now
            self._inflight[pdu.sequence] = part
            out.append(pdu.generate())
        self._send(out)
        return wait if self._ready and len(self._inflight) < window else 0.05

    def _submit_pdu(self, part: _Part) -> Any:
        message, s = part.message, self.settings
        validity = codec.smpp_absolute_time(message.expires_at) if message.expires_at else ""
        return smpplib_smpp.make_pdu(
            "submit_sm", client=self._client,
            source_addr_ton=s.SMPP_SOURCE_TON, source_addr_npi=s.SMPP_SOURCE_NPI,
            source_addr=s.SMPP_SOURCE_ADDR, dest_addr_ton=1, dest_addr_npi=1,
            destination_addr=message.destination, esm_class=message.esm_class,
            data_coding=message.data_coding, short_message=part.payload,
            registered_delivery=1, validity_period=validity)

    def _send(self, pdus: list[bytes]) -> None:
        if not pdus:
            return
        assert self._client is not None
        try:
            self._client._socket.sendall(b"".join(pdus))
        except OSError as exc:
            raise _ConnectionLost(f"send failed: {exc}") from None
        self._last_io = time.monotonic()

    def _respond(self, command: str, sequence: int, status: int = _ROK) -> bytes:
        pdu = smpplib_smpp.make_pdu(command, client=self._client, status=status)
        pdu.sequence = sequence
        return pdu.generate()

    # --- reading -------------------------------------------------------------------------------

    def _receive(self, timeout: float) -> None:
        """Read and act on every PDU that arrives within ``timeout`` seconds."""
        assert self._client is not None
        sock = self._client._socket
        replies: list[bytes] = []
        retry: list[_Part] = []
        while _readable(sock, timeout):
            timeout = 0
            try:
                data = sock.recv(1 << 16)
            except OSError as exc:
                raise _ConnectionLost(f"receive failed: {exc}") from None
            if not data:
                raise _ConnectionLost("the SMSC closed the connection")
            self._last_io = time.monotonic()
            self._buffer += data
            for raw in self._split_pdus():
                self._dispatch(raw, replies, retry)
        self._ready.extendleft(reversed(retry))
        self._send(replies)

    def _split_pdus(self) -> list[bytes]:
        pdus = []
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:4], "big")
            if not 16 <= length <= 64 * 1024:
                raise _ConnectionLost(f"unreadable PDU length {length}")
            if len(self._buffer) < length:
                break
            pdus.append(bytes(self._buffer[:length]))
            del self._buffer[:length]
        return pdus

    def _dispatch(self, raw: bytes, replies: list[bytes], retry: list[_Part]) -> None:
        try:
            pdu = smpplib_smpp.parse_pdu(raw, client=self._client, allow_unknown_opt_params=True)
        except Exception as exc:  # a malformed PDU from the SMSC must not stop the worker
            sequence = int.from_bytes(raw[12:16], "big")
            log.warning("unreadable PDU from the SMSC (%s); answering generic_nack",
                        type(exc).__name__)
            replies.append(self._respond("generic_nack", sequence, _RINVCMDLEN))
            return
        if pdu is None:
            sequence = int.from_bytes(raw[12:16], "big")
            replies.append(self._respond("generic_nack", sequence, 0x03))
            return
        command = pdu.command
        if command == "submit_sm_resp" or (command == "generic_nack"
                                            and pdu.sequence in self._inflight):
            self._on_submit_resp(pdu, retry)
        elif command == "deliver_sm":
            self._on_deliver(pdu, replies)
        elif command == "query_sm_resp":
            self._on_query_resp(pdu)
        elif command == "enquire_link":
            replies.append(self._respond("enquire_link_resp", pdu.sequence))
        elif command == "enquire_link_resp":
            self._enquiry = None
        elif command == "unbind":
            self._send(replies + [self._respond("unbind_resp", pdu.sequence)])
            replies.clear()
            raise _ConnectionLost("the SMSC unbound")
        elif command == "unbind_resp":
            raise _ConnectionLost("unbound")
        else:
            log.info("ignoring %s from the SMSC", command)

    def _on_submit_resp(self, pdu: Any, retry: list[_Part]) -> None:
        part = self._inflight.pop(pdu.sequence, None)
        if part is None:
            log.warning("answer to an unknown submit_sm (sequence %s)", pdu.sequence)
            return
        status = int(pdu.status)
        if status == _ROK and pdu.command == "submit_sm_resp":
            part.message_id = _text(pdu.message_id)
            self._accepted.append(part)
            self._throttle_backoff = 0.05
            self._answered(part)
        elif status in _TRANSIENT:
            retry.append(part)
            self._paused_until = time.monotonic() + self._throttle_backoff
            self._throttle_backoff = min(self._throttle_backoff * 2, 5.0)
            log.info("SMSC answered %s; pausing %.2f s", _TRANSIENT[status],
                     self._paused_until - time.monotonic())
        else:
            self._refuse(part, f"SMSC refused part {part.number}: "
                               f"{smpplib.consts.DESCRIPTIONS.get(status, 'error')} "
                               f"({status:#04x})")

    def _refuse(self, part: _Part, error: str) -> None:
        part.message.error = part.message.error or error
        self._answered(part)

    def _answered(self, part: _Part) -> None:
        message = part.message
        message.answered += 1
        if message.answered == len(message.parts):
            self._settled.append(message)

    def _on_deliver(self, pdu: Any, replies: list[bytes]) -> None:
        esm_class = int(pdu.esm_class or 0)
        receipted = _text(getattr(pdu, "receipted_message_id", None))
        if esm_class & 0x3C in (codec.ESM_DELIVERY_RECEIPT, 0x08, 0x10, 0x20) or receipted:
            state = getattr(pdu, "message_state", None)
            text = _text(pdu.short_message)
            receipt = codec.parse_receipt(text, receipted or None,
                                          None if state is None else int(state))
            if receipt is None:
                log.warning("unreadable delivery receipt; acknowledged and dropped")
                replies.append(self._respond("deliver_sm_resp", pdu.sequence))
                return
            self._inbound.append(_Inbound([pdu.sequence], receipt=receipt))
            return
        self._on_reply(pdu, replies)

    def _on_reply(self, pdu: Any, replies: list[bytes]) -> None:
        """A viewer's SMS: hand it over whole, once its every part has arrived."""
        sender = _text(pdu.source_addr)
        if int(pdu.source_addr_ton or 0) == 1:
            sender = "+" + sender
        body = pdu.short_message or b""
        coding = int(pdu.data_coding or 0)
        if not int(pdu.esm_class or 0) & codec.ESM_UDHI:
            self._inbound.append(_Inbound([pdu.sequence], sender=sender,
                                          text=codec.decode_text(body, coding)))
            return
        try:
            concat, payload = codec.split_udh(body)
        except ValueError:
            log.warning("reply with a malformed UDH from %s; refused", phones.mask(sender))
            replies.append(self._respond("deliver_sm_resp", pdu.sequence, _RX_P_APPN))
            return
        text = codec.decode_text(payload, coding)
        if concat is None:
            self._inbound.append(_Inbound([pdu.sequence], sender=sender, text=text))
            return
        reference, total, number = concat
        key = (sender, reference, total)
        fragments = self._fragments.setdefault(key, {})
        self._fragment_started.setdefault(key, time.monotonic())
        fragments[number] = (text, pdu.sequence)
        if len(fragments) == total:
            del self._fragments[key], self._fragment_started[key]
            ordered = [fragments[n] for n in range(1, total + 1)]
            self._inbound.append(_Inbound([seq for _, seq in ordered], sender=sender,
                                          text="".join(part for part, _ in ordered)))

    def _on_query_resp(self, pdu: Any) -> None:
        message_id = self._queries.pop(pdu.sequence, None)
        if message_id is None or int(pdu.status) != _ROK:
            return
        receipt = codec.Receipt(message_id, int(pdu.message_state or 0))
        if receipt.final:
            self._inbound.append(_Inbound([], receipt=receipt))

    # --- recording -----------------------------------------------------------------------------

    def _record(self, respond: bool = True) -> None:
        """Write this turn's answers in one transaction, then acknowledge them."""
        if not (self._accepted or self._settled or self._inbound):
            return
        receipts = [item for item in self._inbound if item.receipt is not None]
        replies = [item for item in self._inbound if item.receipt is None]
        now = self.gw.clock()
        with self.gw.db.transaction() as session:
            session.add_all(SmsPart(outbox_id=p.message.outbox_id, part=p.number,
                                    provider=PROVIDER, message_id=p.message_id,
                                    status="submitted", submitted_at=now, queries=0)
                            for p in self._accepted)
            session.flush()
            touched = self._settle(session, now)
            touched |= self._apply_receipts(session, [item.receipt for item in receipts
                                                      if item.receipt is not None], now)
            self._conclude(session, touched, now)
        self.stream.ack([message.entry_id for message in self._settled])
        for message in self._settled:
            self._active.pop(message.outbox_id, None)
        self._accepted.clear()
        self._settled.clear()
        answers = [self._respond("deliver_sm_resp", sequence)
                   for item in receipts for sequence in item.sequences]
        for item in replies:
            status = self._hand_over(item)
            answers += [self._respond("deliver_sm_resp", seq, status) for seq in item.sequences]
        self._inbound.clear()
        if respond:
            self._send(answers)

    def _settle(self, session: Session, now: datetime) -> set[int]:
        """Mark messages whose every part was answered; return those with receipts already in."""
        accepted: dict[int, list[int]] = {}
        for message in self._settled:
            if message.error is None:
                accepted.setdefault(len(message.parts), []).append(message.outbox_id)
                continue
            log.warning("sms #%s failed: %s", message.outbox_id, message.error)
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.outbox_id,
                       OutboxMessage.status == SmsStatus.SENDING)
                .values(status=SmsStatus.FAILED, error=message.error, parts=len(message.parts),
                        updated_at=now)
                .execution_options(synchronize_session=False))
        for count, ids in accepted.items():
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.status == SmsStatus.SENDING)
                .values(status=SmsStatus.SUBMITTED, parts=count, error=None, updated_at=now)
                .execution_options(synchronize_session=False))
        ids = [outbox_id for group in accepted.values() for outbox_id in group]
        return set(session.scalars(select(SmsPart.outbox_id).where(
            SmsPart.outbox_id.in_(ids), SmsPart.status != "submitted"))) if ids else set()

    def _apply_receipts(self, session: Session, receipts: list[codec.Receipt],
                        now: datetime) -> set[int]:
        """Record final receipts on their parts; return the outbox ids they concern."""
        if not receipts:
            return set()
        wanted = {v for r in receipts for v in codec.message_id_variants(r.message_id)}
        parts = {p.message_id: p for p in session.scalars(
            select(SmsPart).where(SmsPart.provider == PROVIDER,
                                  SmsPart.message_id.in_(wanted)))}
        touched: set[int] = set()
        for receipt in receipts:
            part = parts.get(receipt.message_id) or next(
                (parts[v] for v in codec.message_id_variants(receipt.message_id)
                 if v in parts), None)
            if part is None:
                log.warning("receipt for unknown message id %s", receipt.message_id)
                continue
            if not receipt.final or part.status != "submitted":
                continue
            part.status = "delivered" if receipt.delivered else "undeliverable"
            if not receipt.delivered:
                state = codec.MESSAGE_STATES.get(receipt.state, str(receipt.state))
                part.error = f"{state} err:{receipt.error}" if receipt.error else state
            part.done_at = now
            touched.add(part.outbox_id)
        session.flush()
        return touched

    def _conclude(self, session: Session, outbox_ids: set[int], now: datetime) -> None:
        """Decide messages' outcomes from their parts: one undeliverable part is enough."""
        if not outbox_ids:
            return
        counts: dict[int, dict[str, int]] = {}
        for outbox_id, status, count in session.execute(
                select(SmsPart.outbox_id, SmsPart.status, func.count())
                .where(SmsPart.outbox_id.in_(outbox_ids))
                .group_by(SmsPart.outbox_id, SmsPart.status)):
            counts.setdefault(outbox_id, {})[status] = count
        for message in session.scalars(select(OutboxMessage).where(
                OutboxMessage.id.in_(outbox_ids),
                OutboxMessage.status.in_([SmsStatus.SENDING, SmsStatus.SUBMITTED]))):
            parts = counts.get(message.id, {})
            if parts.get("undeliverable"):
                message.status, message.updated_at = SmsStatus.UNDELIVERABLE, now
                message.error = "the SMSC could not deliver it"
                if message.kind == "code" and message.order_id:
                    payments.code_sms_undeliverable(session, message.order_id, now)
            elif message.status == SmsStatus.SUBMITTED and \
                    parts.get("delivered") == message.parts:
                message.status, message.updated_at = SmsStatus.DELIVERED, now

    def _hand_over(self, item: _Inbound) -> int:
        """Give a viewer's reply to the inbound function; the status to answer the SMSC."""
        try:
            inbound.receive_sms(self.gw, sender=item.sender, text=item.text)
        except InvalidInput as exc:
            log.info("reply from %s not acted on: %s", phones.mask(item.sender), exc.detail)
        except Exception:
            log.exception("reply from %s could not be handled; the SMSC will redeliver it",
                          phones.mask(item.sender))
            return _RX_T_APPN
        return _ROK

    # --- keeping the link alive ------------------------------------------------------------------

    def _keep_alive(self, now: float) -> None:
        s = self.settings
        oldest = next(iter(self._inflight.values()), None)
        if oldest is not None and now - oldest.sent_at > s.SMPP_RESPONSE_TIMEOUT:
            raise _ConnectionLost(f"no answer to submit_sm for {s.SMPP_RESPONSE_TIMEOUT} s")
        if self._enquiry is not None and now - self._enquiry[1] > s.SMPP_RESPONSE_TIMEOUT:
            raise _ConnectionLost("no answer to enquire_link")
        if self._enquiry is None and now - self._last_io > s.SMPP_ENQUIRE_LINK_SECONDS:
            pdu = smpplib_smpp.make_pdu("enquire_link", client=self._client)
            self._enquiry = (pdu.sequence, now)
            self._send([pdu.generate()])
        for key, started in list(self._fragment_started.items()):
            if now - started > _MO_ASSEMBLY_SECONDS:  # unanswered parts come again later
                del self._fragment_started[key], self._fragments[key]
        if now >= self._next_query:
            self._next_query = now + min(5, self.settings.SMPP_DLR_TIMEOUT)
            self._query_silent_parts()

    def _query_silent_parts(self) -> None:
        """Ask the SMSC about parts whose receipt has not come within SMPP_DLR_TIMEOUT."""
        now = self.gw.clock()
        silent_since = now - timedelta(seconds=self.settings.SMPP_DLR_TIMEOUT)
        with self.gw.db.transaction() as session:
            parts = session.scalars(
                select(SmsPart)
                .where(SmsPart.provider == PROVIDER, SmsPart.status == "submitted",
                       SmsPart.submitted_at <= silent_since, SmsPart.queries < _MAX_QUERIES,
                       or_(SmsPart.queried_at.is_(None), SmsPart.queried_at <= silent_since))
                .order_by(SmsPart.submitted_at)
                .limit(50)
            ).all()
            pdus = []
            for part in parts:
                pdu = smpplib_smpp.make_pdu(
                    "query_sm", client=self._client, message_id=part.message_id,
                    source_addr_ton=self.settings.SMPP_SOURCE_TON,
                    source_addr_npi=self.settings.SMPP_SOURCE_NPI,
                    source_addr=self.settings.SMPP_SOURCE_ADDR)
                self._queries[pdu.sequence] = part.message_id
                part.queried_at, part.queries = now, part.queries + 1
                pdus.append(pdu.generate())
        self._send(pdus)
