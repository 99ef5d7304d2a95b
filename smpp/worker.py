"""An SMPP worker: one transceiver bind of one connection carries SMS to and from its SMSC.

``python -m smpp`` runs one for each bind of each connection (``SMPP_CONFIG``, or the one of
``SMPP_*``); it reads its connection's stream, to which the relay routed the messages.

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

The SMPP thread is ``SmppWorker`` (its life cycle and loop) and its parts: ``session.py`` the
bind (connect, write and read PDUs, enquire_link), ``window.py`` the submit window (the rate,
throttling, the answers to submit_sm), ``deliver_sm.py`` receipts and replies made whole.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import socket
import threading
import time
from typing import Any

import redis
import smpplib.exceptions

from gateway.context import Gateway
from gateway.messaging.connections import DEFAULT_ID, Connection, connection_settings
from gateway.messaging.health import BindSlots, ProviderHealth
from gateway.messaging.stream import OutboundStream
from smpp import codec
from smpp.bind_figures import BindFigures
from smpp.deliver_sm import DeliverSmHandler
from smpp.feeder import Feeder, Part
from smpp.recorder import Inbound, Recorder, Release
from smpp.session import ROK, ConnectionLost, SmppSession
from smpp.window import SubmitWindow, TokenBucket

__all__ = ["SmppWorker", "TokenBucket"]

log = logging.getLogger(__name__)

_HOLD_SECONDS = 2.5  # of sending a bind's feeder claims ahead


class SmppWorker:
    """One bind of one connection (``connection``, else ``default``: the one of SMPP_*).

    A connection's binds in one process share ``bucket``, its ``max_tps``. ``elsewhere``: the
    messages have another way out (another connection, or another provider), so after
    ``SMS_FAILOVER_AFTER`` seconds down this bind hands back the ones it has not started.
    """

    def __init__(self, gw: Gateway, *, host: str, port: int, consumer: str | None = None,
                 connection: Connection | None = None, bucket: TokenBucket | None = None,
                 elsewhere: bool = False, slots: BindSlots | None = None) -> None:
        self.gw = gw
        self.connection_id = connection.id if connection else DEFAULT_ID
        self.settings = connection_settings(gw.settings, connection)
        self.host, self.port = host, port
        self.elsewhere = elsewhere or len(gw.settings.SMS_PROVIDER) > 1
        self.stopping = threading.Event()
        self.bound = threading.Event()
        stream = OutboundStream(gw.redis, gw.settings.REDIS_PREFIX, self.connection_id)
        self.stream = stream
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{self.connection_id}"
        # one of several binds holds two windows, or what it may send in a few seconds of its
        # share of the connection's rate if more, and leaves the rest to the others
        binds = connection.binds if connection else 1
        share = math.ceil(self.settings.SMPP_MAX_TPS / binds * _HOLD_SECONDS)
        batch = max(2 * self.settings.SMPP_WINDOW, min(500, share)) if binds > 1 else None
        self.feeder = Feeder(gw, stream, self.consumer, self.stopping, batch)
        self.feeder.paused.set()  # nothing to claim until bound
        self.health = ProviderHealth(gw.redis, gw.settings.REDIS_PREFIX,
                                     gw.settings.SMS_FAILOVER_AFTER)
        self._stamped = 0.0
        self._responses: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        self.recorder = Recorder(gw, stream, self.feeder.settled,
                                 lambda *answer: self._responses.put(answer))
        self.session = SmppSession(self.settings, host, port)
        self.deliver_sm = DeliverSmHandler(self.recorder, self.session.respond)
        self._generation = 0  # which connection a deliver_sm came on
        self.window = SubmitWindow(gw, self.session, self.feeder, self.recorder, self.stopping,
                                   bucket, self.connection_id)
        self.figures = BindFigures(self.connection_id)
        self._queries: dict[int, str] = {}  # query_sm sequence -> message id asked about
        self._feeder_thread: threading.Thread | None = None
        self._handed_back = False
        # with SMPP_CONFIG: the connection's binds are slots shared by every SMPP process
        self.slots = slots
        self._binds = connection.binds if connection else 1
        self.slot: int | None = None  # the slot this worker holds

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
        down_since: float | None = time.monotonic()
        while not self.stopping.is_set():
            if not self._hold_slot():  # every bind of the connection is kept elsewhere
                self._hand_over()
                self.stopping.wait(1.0)
                continue
            try:
                self._connect()
                delay, down_since = 0.5, None
                self._serve()
            except (ConnectionLost, smpplib.exceptions.ConnectionError,
                    smpplib.exceptions.PDUError, OSError) as exc:
                log.warning("SMSC %s:%s: %s; binding again in %.1f s", self.host, self.port,
                            str(exc) or type(exc).__name__, delay)
            except Exception:
                log.exception("SMPP worker failed; binding again in %.1f s", delay)
            else:
                continue
            self._drop_connection()
            down_since = down_since or time.monotonic()
            if self.elsewhere and \
                    time.monotonic() - down_since > self.settings.SMS_FAILOVER_AFTER:
                self._release_unstarted()  # for the next connection or provider to send
            self._wait_keeping_slot(delay)
            delay = min(delay * 2, 30.0)
        self._hand_back()  # when the SMSC was away at the stop
        self._unbind()
        self._let_slot_go()
        self._stamp(up=False)
        self.recorder.finishing.set()
        recorder_thread.join(timeout=30)
        self.session.disconnect()
        log.info("SMPP worker stopped")

    def stop(self) -> None:
        self.stopping.set()

    def _connect(self) -> None:
        self.session.connect()
        self._generation += 1
        self.window.failing_submits, self._stamped = 0, 0.0
        self._report_health(time.monotonic())
        log.info("bound to SMSC %s:%s as %s (connection %s)", self.host, self.port,
                 self.settings.SMPP_SYSTEM_ID, self.connection_id)
        self.figures.up(True)
        self.bound.set()

    def _drop_connection(self) -> None:
        """Forget the connection; put every unanswered part back in front, in order."""
        self.feeder.paused.set()  # first: whoever sees the bind gone sees the feeder stopped
        self.bound.clear()
        self.figures.up(False)
        self._stamp(up=False)
        self.window.take_back()
        self.figures.window(0)
        self._queries.clear()
        self.deliver_sm.forget()  # replies not handed over yet will be delivered again
        self.session.disconnect()

    def _unbind(self) -> None:
        if self.session.client is None:
            return
        try:
            self._send_responses()
            self._send([self.session.make_pdu("unbind").generate()])
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                self._receive(0.1)
        except (ConnectionLost, OSError):
            pass
        self.bound.clear()
        self.figures.up(False)

    # --- the loop ------------------------------------------------------------------------------

    def _serve(self) -> None:
        drain_until: float | None = None
        while True:
            now = time.monotonic()
            if self.stopping.is_set():
                if drain_until is None:
                    drain_until = now + self.settings.SMPP_RESPONSE_TIMEOUT
                    self._hand_back()
                if not (self.window.inflight or self.window.retry) or now > drain_until:
                    return
            backlog = self.recorder.results.qsize() > 20 * self.settings.SMPP_WINDOW
            if backlog:  # let the recorder catch up before taking more work
                self.feeder.paused.set()
            else:
                self.feeder.paused.clear()
            self._send_responses()
            self._send_queries()
            wait = self.window.submit_ready(now, backlog)
            self._receive(wait)
            self._keep_alive(time.monotonic())
            self._report_health(time.monotonic())
            self.figures.window(len(self.window.inflight))

    def _report_health(self, now: float) -> None:
        """Stamp this bind in Redis once a second while its submits are not failing (and
        renew its slot: a bind whose slot another worker took over ends)."""
        if now - self._stamped >= 1.0:
            self._stamped = now
            if not self._hold_slot():
                raise ConnectionLost("another SMPP worker holds this bind's slot now")
            self._stamp(up=self.window.healthy)

    def _hold_slot(self) -> bool:
        """Take or keep a slot of the connection's binds; True without slots. A Redis that
        does not answer keeps a slot held (the bind goes on), and gives none."""
        if self.slots is None:
            return True
        with contextlib.suppress(redis.RedisError):
            self.slot = self.slots.take(self.connection_id, self._binds, self.consumer,
                                        self.slot)
        return self.slot is not None

    def _wait_keeping_slot(self, seconds: float) -> None:
        """Wait before binding again, renewing the slot's lease meanwhile: a bind whose SMSC
        is away keeps its slot, so no standby worker takes it only to fail the same way."""
        deadline = time.monotonic() + seconds
        while not self.stopping.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            self._hold_slot()

    def _hand_over(self) -> None:
        """Standing by without a slot: give back every message in hand, started or not, for
        a bound worker to send (parts the SMSC accepted are recorded and not sent again)."""
        self.window.take_back()
        self.window.keep_started()  # the feeder's queue, emptied into the window
        self.window.retry.clear()
        held = [message.outbox_id for message in self.feeder.held()]
        if held:
            self.feeder.settled(held)
            self.recorder.results.put(Release(frozenset(held)))
            log.info("no bind slot: handing back %d messages", len(held))

    def _let_slot_go(self) -> None:
        if self.slots is not None and self.slot is not None:
            with contextlib.suppress(redis.RedisError):  # else its lease runs out
                self.slots.release(self.connection_id, self.slot, self.consumer)
            self.slot = None

    def _stamp(self, *, up: bool) -> None:
        try:
            if up:
                self.health.smpp_up(self.consumer, self.connection_id, self.figures.stamp(
                    len(self.window.inflight), self.window.submitted, self.window.throttled))
            else:
                self.health.smpp_down(self.consumer, self.connection_id)
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
        self.window.keep_started()
        untouched = {m.outbox_id for m in self.feeder.held() if not (m.sent or m.answered)}
        if untouched:
            self.feeder.settled(list(untouched))
            self.recorder.results.put(Release(frozenset(untouched)))
            log.info("handing back %d messages not started", len(untouched))

    def _send(self, pdus: list[bytes]) -> None:
        self.session.send(pdus)

    def _send_queries(self) -> None:
        """Ask the SMSC about the parts the recorder found silent too long."""
        pdus = []
        while True:
            try:
                message_id = self.recorder.queries.get_nowait()
            except queue.Empty:
                break
            pdu = self.session.make_pdu(
                "query_sm", message_id=message_id,
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
                out.append(self.session.respond("deliver_sm_resp", sequence, status))
        self._send(out)

    # --- reading -------------------------------------------------------------------------------

    def _receive(self, timeout: float) -> None:
        """Read and act on every PDU that arrives within ``timeout`` seconds."""
        replies: list[bytes] = []
        retry: list[Part] = []
        try:
            for raw in self.session.read(timeout):
                self._dispatch(raw, replies, retry)
        finally:  # parts to send again are kept even when the connection breaks right after
            self.window.retry.extendleft(reversed(retry))
        self._send(replies)

    def _dispatch(self, raw: bytes, replies: list[bytes], retry: list[Part]) -> None:
        pdu = self.session.parse(raw, replies)
        if pdu is None:
            return
        command = pdu.command
        if command == "generic_nack":
            self._on_generic_nack(pdu, retry)
        elif command == "submit_sm_resp":
            self.window.on_answer(pdu, retry)
        elif command == "deliver_sm":
            self.deliver_sm.on_deliver(self._generation, pdu, replies)
        elif command == "query_sm_resp":
            self._on_query_resp(pdu)
        elif command == "enquire_link":
            replies.append(self.session.respond("enquire_link_resp", pdu.sequence))
        elif command == "enquire_link_resp":
            self.session.enquiry = None
        elif command == "unbind":
            self._send(replies + [self.session.respond("unbind_resp", pdu.sequence)])
            replies.clear()
            raise ConnectionLost("the SMSC unbound")
        elif command == "unbind_resp" and self.stopping.is_set():  # ours is only sent then
            raise ConnectionLost("unbound")
        else:
            log.info("ignoring %s from the SMSC", command)

    def _on_generic_nack(self, pdu: Any, retry: list[Part]) -> None:
        """The SMSC could not read one of our PDUs: a part is refused, a question forgotten."""
        if pdu.sequence in self.window.inflight:
            self.window.on_answer(pdu, retry)
        elif self.session.enquiry is not None and self.session.enquiry[0] == pdu.sequence:
            self.session.enquiry = None  # it answered: the link is alive
        else:
            self._queries.pop(pdu.sequence, None)
            log.warning("generic_nack %#04x from the SMSC", int(pdu.status))

    def _on_query_resp(self, pdu: Any) -> None:
        message_id = self._queries.pop(pdu.sequence, None)
        if message_id is None or int(pdu.status) != ROK:
            return
        receipt = codec.Receipt(message_id, int(pdu.message_state or 0))
        if receipt.final:
            self.recorder.results.put(Inbound(self._generation, [], receipt))

    # --- keeping the link alive ------------------------------------------------------------------

    def _keep_alive(self, now: float) -> None:
        s = self.settings
        oldest = self.window.oldest_sent_at()
        if oldest is not None and now - oldest > s.SMPP_RESPONSE_TIMEOUT:
            raise ConnectionLost(f"no answer to submit_sm for {s.SMPP_RESPONSE_TIMEOUT} s")
        self.session.keep_alive(now)
        self._send(self.deliver_sm.give_up_late_parts(now))
