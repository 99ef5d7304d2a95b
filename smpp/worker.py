"""The SMPP worker (``python -m smpp``): one transceiver bind carries SMS to and from the SMSC.

Three threads, each doing one kind of waiting, joined by queues:

    feeder    Redis Stream → claim rows in SQL → encode (GSM 03.38 or UCS-2, concatenated)
       │ parts
    SMPP      submit_sm while fewer than SMPP_WINDOW are unanswered and the token bucket of
       │      SMPP_MAX_TPS allows; reads every PDU; answers enquire_link; keeps the link alive
       │ answers, receipts, replies                ▲ deliver_sm_resp, once recorded
    recorder  one SQL transaction per batch, then stream acknowledgements (feeder.py, recorder.py)

A code SMS carries its code's expiry as validity period and is never sent after it. Throttling
(``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``) puts parts back in front and pauses all sending, with
growing pauses; other temporary errors are retried a few times, then fail the message. A part
with no receipt after ``SMPP_DLR_TIMEOUT`` is asked about with ``query_sm`` (the recorder picks
them). A lost connection puts unanswered parts back in front, in order, and binds again with
backoff. SIGTERM stops taking work, finishes the messages it has started, hands the others
back (``queued``) for any worker, waits briefly for answers, records them, and unbinds.

Failover (``SMS_PROVIDER=smpp,twilio``): every second while bound, and while its submits are
not failing again and again, the worker stamps its bind in Redis (``gateway.messaging.health``); the
background worker sends by the next provider when no bind was stamped for
``SMS_FAILOVER_AFTER`` seconds. The feeder claims nothing while the bind is down, and after
``SMS_FAILOVER_AFTER`` seconds down the worker hands back the messages it has not started, so
the next provider can take them; a message with parts at the SMSC stays to be finished here.
"""

from __future__ import annotations

import logging
import os
import queue
import select as io_select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
import smpplib.client
import smpplib.consts
import smpplib.exceptions
from smpplib import smpp as smpplib_smpp

from gateway import metrics, phones
from gateway.context import Gateway
from gateway.messaging.health import ProviderHealth
from gateway.messaging.stream import OutboundStream
from smpp import codec
from smpp import pdu as strict_pdu
from smpp.feeder import Feeder, Part
from smpp.recorder import Inbound, Recorder, Release

__all__ = ["SmppWorker", "TokenBucket"]

log = logging.getLogger(__name__)

_THROTTLED = {0x14: "ESME_RMSGQFUL", 0x58: "ESME_RTHROTTLED"}  # slow down, then again
_TEMPORARY = {0x08: "ESME_RSYSERR", 0x64: "ESME_RX_T_APPN"}  # again, a few times
_MAX_ATTEMPTS = 3
_ROK, _RINVCMDID, _RINVCMDLEN, _RX_T_APPN, _RX_P_APPN = 0x00, 0x03, 0x02, 0x64, 0x65
_MO_ASSEMBLY_SECONDS = 120
_DELIVER_SM = (0x00000005).to_bytes(4, "big")
_FAILING_SUBMITS = 10  # temporary refusals in a row after which this bind is unhealthy


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
        self.stopping = threading.Event()
        self.bound = threading.Event()
        stream = OutboundStream(gw.redis, gw.settings.REDIS_PREFIX)
        self.stream = stream
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.feeder = Feeder(gw, stream, self.consumer, self.stopping)
        self.feeder.paused.set()  # nothing to claim until bound
        self.health = ProviderHealth(gw.redis, gw.settings.REDIS_PREFIX,
                                     gw.settings.SMS_FAILOVER_AFTER)
        self._failing_submits = 0
        self._stamped = 0.0
        self._responses: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        self.recorder = Recorder(gw, stream, self.feeder.settled,
                                 lambda *answer: self._responses.put(answer))
        self._client: smpplib.client.Client | None = None
        self._generation = 0  # which connection a deliver_sm came on
        self._buffer = bytearray()
        self._bucket = TokenBucket(self.settings.SMPP_MAX_TPS)
        self._retry: deque[Part] = deque()  # parts to send again, before new ones
        self._inflight: dict[int, Part] = {}
        # a reply in parts: (sender, reference, total) -> part number -> (text, sequences)
        self._fragments: dict[tuple[str, int, int], dict[int, tuple[str, list[int]]]] = {}
        self._fragment_started: dict[tuple[str, int, int], float] = {}
        self._queries: dict[int, str] = {}  # query_sm sequence -> message id asked about
        self._feeder_thread: threading.Thread | None = None
        self._handed_back = False
        self._paused_until = 0.0
        self._throttle_backoff = 0.05
        self._last_io = time.monotonic()
        self._enquiry: tuple[int, float] | None = None  # our enquire_link: sequence, sent at

    # --- life cycle ----------------------------------------------------------------------------

    def run(self) -> None:
        """Bind, serve, and bind again after a failure, until ``stopping`` is set."""
        self.stream.ensure_group()
        self._feeder_thread = threading.Thread(target=self.feeder.run, name="smpp-feeder",
                                               daemon=True)
        recorder_thread = threading.Thread(target=self.recorder.run, name="smpp-recorder",
                                           daemon=True)
        self._feeder_thread.start()
        recorder_thread.start()
        delay = 0.5
        down_since = time.monotonic()
        while not self.stopping.is_set():
            try:
                self._connect()
                delay, down_since = 0.5, None
                self._serve()
            except (_ConnectionLost, smpplib.exceptions.ConnectionError,
                    smpplib.exceptions.PDUError, OSError) as exc:
                log.warning("SMSC %s:%s: %s; binding again in %.1f s", self.host, self.port,
                            str(exc) or type(exc).__name__, delay)
            except Exception:
                log.exception("SMPP worker failed; binding again in %.1f s", delay)
            else:
                continue
            self._drop_connection()
            down_since = down_since or time.monotonic()
            if (len(self.settings.SMS_PROVIDER) > 1
                    and time.monotonic() - down_since > self.settings.SMS_FAILOVER_AFTER):
                self._release_unstarted()  # for the next provider to send
            self.stopping.wait(delay)
            delay = min(delay * 2, 30.0)
        self._hand_back()  # when the SMSC was away at the stop
        self._unbind()
        self._stamp(up=False)
        self.recorder.finishing.set()
        recorder_thread.join(timeout=30)
        self._disconnect()
        log.info("SMPP worker stopped")

    def stop(self) -> None:
        self.stopping.set()

    def _connect(self) -> None:
        client = smpplib.client.Client(self.host, self.port,
                                       timeout=self.settings.SMPP_RESPONSE_TIMEOUT,
                                       allow_unknown_opt_params=True)
        self._client = client
        client.connect()
        # Small PDUs answer each other: without this, Nagle's algorithm and delayed ACKs add up
        # to 40 ms to a round trip.
        client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.bind_transceiver(system_id=self.settings.SMPP_SYSTEM_ID,
                                password=self.settings.SMPP_PASSWORD,
                                system_type=self.settings.SMPP_SYSTEM_TYPE)
        self._generation += 1
        self._buffer.clear()
        self._last_io = time.monotonic()
        self._enquiry = None
        self.bound.set()
        self._failing_submits, self._stamped = 0, 0.0
        self._report_health(time.monotonic())
        log.info("bound to SMSC %s:%s as %s", self.host, self.port, self.settings.SMPP_SYSTEM_ID)

    def _drop_connection(self) -> None:
        """Forget the connection; put every unanswered part back in front, in order."""
        self.bound.clear()
        self.feeder.paused.set()
        self._stamp(up=False)
        self._retry.extendleft(reversed(list(self._inflight.values())))
        self._inflight.clear()
        metrics.SMPP_WINDOW_IN_USE.set(0)
        self._queries.clear()
        self._fragments.clear()  # replies not handed over yet will be delivered again
        self._fragment_started.clear()
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
            self._send_responses()
            self._send([smpplib_smpp.make_pdu("unbind", client=self._client).generate()])
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                self._receive(0.1)
        except (_ConnectionLost, OSError):
            pass
        self.bound.clear()

    # --- the loop ------------------------------------------------------------------------------

    def _serve(self) -> None:
        drain_until: float | None = None
        while True:
            now = time.monotonic()
            if self.stopping.is_set():
                if drain_until is None:
                    drain_until = now + self.settings.SMPP_RESPONSE_TIMEOUT
                    self._hand_back()
                if not (self._inflight or self._retry) or now > drain_until:
                    return
            backlog = self.recorder.results.qsize() > 20 * self.settings.SMPP_WINDOW
            if backlog:  # let the recorder catch up before taking more work
                self.feeder.paused.set()
            else:
                self.feeder.paused.clear()
            self._send_responses()
            self._send_queries()
            wait = self._submit_ready(now, backlog)
            self._receive(wait)
            self._keep_alive(time.monotonic())
            self._report_health(time.monotonic())
            metrics.SMPP_WINDOW_IN_USE.set(len(self._inflight))

    def _report_health(self, now: float) -> None:
        """Stamp this bind in Redis once a second while its submits are not failing."""
        if now - self._stamped >= 1.0:
            self._stamped = now
            self._stamp(up=self._failing_submits < _FAILING_SUBMITS)

    def _stamp(self, *, up: bool) -> None:
        try:
            if up:
                self.health.smpp_up(self.consumer)
            else:
                self.health.smpp_down(self.consumer)
        except redis.RedisError as exc:  # Redis away must not cost the bind
            log.warning("cannot report the bind's health to Redis: %s", type(exc).__name__)

    def _hand_back(self) -> None:
        """At a stop: keep the started messages to finish; give the others back to the queue."""
        if self._handed_back:
            return
        self._handed_back = True
        if self._feeder_thread is not None:
            self._feeder_thread.join(timeout=10)  # no more claims from here on
        self._release_unstarted()

    def _release_unstarted(self) -> None:
        """Give the messages not started back to the queue, for any worker or provider."""
        while True:
            try:
                self._retry.append(self.feeder.parts.get_nowait())
            except queue.Empty:
                break
        self._retry = deque(p for p in self._retry if p.message.sent)
        untouched = {m.outbox_id for m in self.feeder.held() if not (m.sent or m.answered)}
        if untouched:
            self.feeder.settled(list(untouched))
            self.recorder.results.put(Release(frozenset(untouched)))
            log.info("handing back %d messages not started", len(untouched))

    def _next_part(self) -> Part | None:
        if self._retry:
            return self._retry.popleft()
        if self.stopping.is_set():
            return None
        try:
            return self.feeder.parts.get_nowait()
        except queue.Empty:
            return None

    def _submit_ready(self, now: float, backlog: bool) -> float:
        """Send what the window and the rate allow; return how long the loop may wait."""
        if now < self._paused_until or backlog:
            return 0.01
        window = self.settings.SMPP_WINDOW
        out: list[bytes] = []
        utc_now = self.gw.clock()
        wait = 0.01
        while len(self._inflight) < window and (part := self._next_part()) is not None:
            message = part.message
            if message.expires_at is not None and utc_now >= message.expires_at:
                self._refuse(part, "expired before sending")
                continue
            if (wait := self._bucket.take()) > 0:
                self._retry.appendleft(part)
                break
            pdu = self._submit_pdu(part)
            part.sequence, part.sent_at = pdu.sequence, now
            part.attempts += 1
            message.sent += part.attempts == 1
            self._inflight[pdu.sequence] = part
            out.append(pdu.generate())
        self._send(out)
        return min(wait, 0.01) if len(self._inflight) < window else 0.01

    def _submit_pdu(self, part: Part) -> Any:
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

    def _send_queries(self) -> None:
        """Ask the SMSC about the parts the recorder found silent too long."""
        pdus = []
        while True:
            try:
                message_id = self.recorder.queries.get_nowait()
            except queue.Empty:
                break
            pdu = smpplib_smpp.make_pdu(
                "query_sm", client=self._client, message_id=message_id,
                source_addr_ton=self.settings.SMPP_SOURCE_TON,
                source_addr_npi=self.settings.SMPP_SOURCE_NPI,
                source_addr=self.settings.SMPP_SOURCE_ADDR)
            self._queries[pdu.sequence] = message_id
            pdus.append(pdu.generate())
        self._send(pdus)

    def _send_responses(self) -> None:
        """Release the deliver_sm_resp of what the recorder has committed (this connection's)."""
        out = []
        while True:
            try:
                generation, sequence, status = self._responses.get_nowait()
            except queue.Empty:
                break
            if generation == self._generation:
                out.append(self._respond("deliver_sm_resp", sequence, status))
        self._send(out)

    # --- reading -------------------------------------------------------------------------------

    def _receive(self, timeout: float) -> None:
        """Read and act on every PDU that arrives within ``timeout`` seconds."""
        assert self._client is not None
        sock = self._client._socket
        replies: list[bytes] = []
        retry: list[Part] = []
        try:
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
        finally:  # parts to send again are kept even when the connection breaks right after
            self._retry.extendleft(reversed(retry))
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

    def _dispatch(self, raw: bytes, replies: list[bytes], retry: list[Part]) -> None:
        sequence = int.from_bytes(raw[12:16], "big")
        try:
            if raw[4:8] == _DELIVER_SM:  # smpplib reads a cut-short body as fields: check it
                strict_pdu.decode(raw)
            pdu = smpplib_smpp.parse_pdu(raw, client=self._client, allow_unknown_opt_params=True)
        except strict_pdu.PduError as exc:
            log.warning("malformed deliver_sm from the SMSC (%s); answering generic_nack", exc)
            replies.append(self._respond("generic_nack", sequence, exc.status))
            return
        except smpplib.exceptions.UnknownCommandError:
            replies.append(self._respond("generic_nack", sequence, _RINVCMDID))
            return
        except Exception as exc:  # a malformed PDU from the SMSC must not stop the worker
            log.warning("unreadable PDU from the SMSC (%s); answering generic_nack",
                        type(exc).__name__)
            replies.append(self._respond("generic_nack", sequence, _RINVCMDLEN))
            return
        if pdu is None:
            replies.append(self._respond("generic_nack", sequence, _RINVCMDID))
            return
        command = pdu.command
        if command == "generic_nack":
            self._on_generic_nack(pdu, retry)
        elif command == "submit_sm_resp":
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
        elif command == "unbind_resp" and self.stopping.is_set():  # ours is only sent then
            raise _ConnectionLost("unbound")
        else:
            log.info("ignoring %s from the SMSC", command)

    def _on_generic_nack(self, pdu: Any, retry: list[Part]) -> None:
        """The SMSC could not read one of our PDUs: a part is refused, a question forgotten."""
        if pdu.sequence in self._inflight:
            self._on_submit_resp(pdu, retry)
        elif self._enquiry is not None and self._enquiry[0] == pdu.sequence:
            self._enquiry = None  # it answered: the link is alive
        else:
            self._queries.pop(pdu.sequence, None)
            log.warning("generic_nack %#04x from the SMSC", int(pdu.status))

    def _on_submit_resp(self, pdu: Any, retry: list[Part]) -> None:
        part = self._inflight.pop(pdu.sequence, None)
        if part is None:
            log.warning("answer to an unknown submit_sm (sequence %s)", pdu.sequence)
            return
        status = int(pdu.status)
        self._failing_submits = 0 if status == _ROK else self._failing_submits + (
            status in _THROTTLED or status in _TEMPORARY)
        if status == _ROK and pdu.command == "submit_sm_resp":
            part.message_id = _text(pdu.message_id)
            self.recorder.results.put(part)
            self._throttle_backoff = 0.05
            self._answered(part)
        elif status in _THROTTLED:
            retry.append(part)
            self._paused_until = time.monotonic() + self._throttle_backoff
            log.info("SMSC answered %s; pausing %.2f s", _THROTTLED[status],
                     self._throttle_backoff)
            self._throttle_backoff = min(self._throttle_backoff * 2, 5.0)
        elif status in _TEMPORARY and part.attempts < _MAX_ATTEMPTS:
            retry.append(part)
        else:
            description = smpplib.consts.DESCRIPTIONS.get(status, "error")
            self._refuse(part, f"SMSC refused part {part.number}: {description} "
                               f"({status:#04x})")

    def _refuse(self, part: Part, error: str) -> None:
        part.message.error = part.message.error or error
        self._answered(part)

    def _answered(self, part: Part) -> None:
        message = part.message
        message.answered += 1
        if message.answered == len(message.parts):
            self.recorder.results.put(message)

    def _on_deliver(self, pdu: Any, replies: list[bytes]) -> None:
        esm_class = int(pdu.esm_class or 0)
        receipted = _text(getattr(pdu, "receipted_message_id", None))
        if esm_class & 0x3C in (codec.ESM_DELIVERY_RECEIPT, 0x08, 0x10, 0x20) or receipted:
            state = getattr(pdu, "message_state", None)
            receipt = codec.parse_receipt(_text(pdu.short_message), receipted or None,
                                          None if state is None else int(state))
            if receipt is None:
                log.warning("unreadable delivery receipt; acknowledged and dropped")
                replies.append(self._respond("deliver_sm_resp", pdu.sequence))
            else:
                self.recorder.results.put(Inbound(self._generation, [pdu.sequence], receipt))
            return
        self._on_reply(pdu, replies)

    def _on_reply(self, pdu: Any, replies: list[bytes]) -> None:
        """A viewer's SMS: hand it over whole, once its every part has arrived."""
        sender = _text(pdu.source_addr)
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
            self.recorder.add_reply(self._generation, [pdu.sequence], sender, text)
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
            self.recorder.add_reply(self._generation, [seq for _, seqs in ordered for seq in seqs],
                                    sender, "".join(t for t, _ in ordered))

    def _on_query_resp(self, pdu: Any) -> None:
        message_id = self._queries.pop(pdu.sequence, None)
        if message_id is None or int(pdu.status) != _ROK:
            return
        receipt = codec.Receipt(message_id, int(pdu.message_state or 0))
        if receipt.final:
            self.recorder.results.put(Inbound(self._generation, [], receipt))

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
        expired = [key for key, started in self._fragment_started.items()
                   if now - started > _MO_ASSEMBLY_SECONDS]
        answers = []
        for key in expired:  # a reply whose other parts never came: the SMSC may offer it again
            del self._fragment_started[key]
            answers += [self._respond("deliver_sm_resp", seq, _RX_T_APPN)
                        for _, seqs in self._fragments.pop(key).values() for seq in seqs]
        self._send(answers)
