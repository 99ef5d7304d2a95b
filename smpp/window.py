"""The SMPP worker's submit window: parts at the SMSC, and the answers to their ``submit_sm``.

At most ``SMPP_WINDOW`` parts wait for an answer, submitted no faster than the token bucket of
``SMPP_MAX_TPS`` allows. Throttling (``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``) puts a part back in
front and pauses all sending, with growing pauses; other temporary errors are retried a few
times, then fail the message; a part whose message expired is never sent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import smpplib.consts

from gateway import metrics
from gateway.context import Gateway
from gateway.messaging.connections import DEFAULT_ID
from smpp import codec
from smpp.feeder import Feeder, Part
from smpp.recorder import Recorder
from smpp.session import ROK, SmppSession, pdu_text

__all__ = ["SubmitWindow", "TokenBucket"]

log = logging.getLogger("smpp.worker")  # the worker's log lines, whichever module writes them

_THROTTLED = {0x14: "ESME_RMSGQFUL", 0x58: "ESME_RTHROTTLED"}  # slow down, then again
_TEMPORARY = {0x08: "ESME_RSYSERR", 0x64: "ESME_RX_T_APPN"}  # again, a few times
_MAX_ATTEMPTS = 3
_FAILING_SUBMITS = 10  # temporary refusals in a row after which this bind is unhealthy


class TokenBucket:
    """At most ``rate`` tokens a second, with a burst of a twentieth of a second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 20)
        self.tokens = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = threading.Lock()  # one bucket for a connection's binds, each a thread

    def take(self) -> float:
        """Take a token and return 0, or return the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


class SubmitWindow:
    """The parts in flight (``inflight``, by sequence) and those to send again (``retry``),
    before the feeder's new ones. Finished messages go to the recorder."""

    def __init__(self, gw: Gateway, session: SmppSession, feeder: Feeder, recorder: Recorder,
                 stopping: threading.Event, bucket: TokenBucket | None = None,
                 connection: str = DEFAULT_ID) -> None:
        self.gw = gw
        self.settings = session.settings  # the connection's: its window, rate, source
        self.session = session
        self.feeder = feeder
        self.recorder = recorder
        self.stopping = stopping
        self.retry: deque[Part] = deque()  # parts to send again, before new ones
        self.inflight: dict[int, Part] = {}
        self.failing_submits = 0
        self._bucket = bucket or TokenBucket(self.settings.SMPP_MAX_TPS)
        self._submits = metrics.SMPP_SUBMITS.labels(connection)
        self._throttled = metrics.SMPP_THROTTLED.labels(connection)
        self.submitted = 0  # submit_sm sent by this bind, and those answered "throttled"
        self.throttled = 0
        self._submit: Any = None  # the submit_sm filled for each part (_encode_submit)
        self._paused_until = 0.0
        self._throttle_backoff = 0.05

    @property
    def healthy(self) -> bool:
        """Whether the SMSC is not refusing submits again and again."""
        return self.failing_submits < _FAILING_SUBMITS

    def take_back(self) -> None:
        """The connection is gone: every unanswered part goes back in front, in order."""
        self.retry.extendleft(reversed(list(self.inflight.values())))
        self.inflight.clear()

    def keep_started(self) -> None:
        """Keep only the parts of messages already started (the others are handed back)."""
        while True:
            try:
                self.retry.append(self.feeder.parts.get_nowait())
            except queue.Empty:
                break
        self.retry = deque(p for p in self.retry if p.message.sent)

    def oldest_sent_at(self) -> float | None:
        oldest = next(iter(self.inflight.values()), None)
        return None if oldest is None else oldest.sent_at

    def _next_part(self) -> Part | None:
        if self.retry:
            return self.retry.popleft()
        if self.stopping.is_set():
            return None
        try:
            return self.feeder.parts.get_nowait()
        except queue.Empty:
            return None

    def submit_ready(self, now: float, backlog: bool) -> float:
        """Send what the window and the rate allow; return how long the loop may wait."""
        if now < self._paused_until or backlog:
            return 0.01
        window = self.settings.SMPP_WINDOW
        out: list[bytes] = []
        utc_now = self.gw.clock()
        wait = 0.01
        while len(self.inflight) < window and (part := self._next_part()) is not None:
            message = part.message
            if message.expires_at is not None and utc_now >= message.expires_at:
                self._refuse(part, "expired before sending")
                continue
            if (wait := self._bucket.take()) > 0:
                self.retry.appendleft(part)
                break
            part.sequence, encoded = self._encode_submit(part)
            part.sent_at = now
            part.attempts += 1
            message.sent += part.attempts == 1
            self.inflight[part.sequence] = part
            out.append(encoded)
        self.session.send(out)
        if out:
            self._submits.inc(len(out))
            self.submitted += len(out)
        return min(wait, 0.01) if len(self.inflight) < window else 0.01

    def _encode_submit(self, part: Part) -> tuple[int, bytes]:
        """The part's submit_sm: its sequence number and its octets.

        One smpplib PDU is kept and filled again for each part; making a new one a part cost
        15 µs of the 37 that encoding takes. Every field that differs between parts is set."""
        message, s = part.message, self.settings
        if self._submit is None:
            self._submit = self.session.make_pdu(
                "submit_sm", source_addr_ton=s.SMPP_SOURCE_TON,
                source_addr_npi=s.SMPP_SOURCE_NPI, source_addr=s.SMPP_SOURCE_ADDR,
                dest_addr_ton=1, dest_addr_npi=1, registered_delivery=1)
        pdu = self._submit
        assert self.session.client is not None
        pdu.sequence = self.session.client.next_sequence()
        pdu.destination_addr = message.destination
        pdu.esm_class = message.esm_class
        pdu.data_coding = message.data_coding
        pdu.short_message = part.payload
        pdu.validity_period = (codec.smpp_absolute_time(message.expires_at)
                               if message.expires_at else "")
        return pdu.sequence, pdu.generate()

    def on_answer(self, pdu: Any, retry: list[Part]) -> None:
        """A submit_sm_resp, or a generic_nack to a submit_sm; parts to send again to ``retry``."""
        part = self.inflight.pop(pdu.sequence, None)
        if part is None:
            log.warning("answer to an unknown submit_sm (sequence %s)", pdu.sequence)
            return
        status = int(pdu.status)
        self.failing_submits = 0 if status == ROK else self.failing_submits + (
            status in _THROTTLED or status in _TEMPORARY)
        if status == ROK and pdu.command == "submit_sm_resp":
            part.message_id = pdu_text(pdu.message_id)
            self.recorder.results.put(part)
            self._throttle_backoff = 0.05
            self._answered(part)
        elif status in _THROTTLED:
            self._throttled.inc()
            self.throttled += 1
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
