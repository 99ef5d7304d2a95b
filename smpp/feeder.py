"""The worker's feeder: outbox rows from the Redis Stream, claimed in SQL, encoded into parts.

Runs in its own thread so that claiming rows never stalls the SMPP connection. Entries that a
dead worker left unacknowledged for ``SMPP_RECLAIM_AFTER`` are taken over (XAUTOCLAIM); the
claim in SQL (``queued`` → ``sending``, or a reclaimed ``sending`` row) keeps a row from being
sent twice by the service.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_, update

from gateway.context import Gateway
from gateway.db import OutboxMessage, padded
from gateway.sms.outbox import SmsStatus
from gateway.sms.stream import OutboundStream
from smpp import codec

__all__ = ["PROVIDER", "Feeder", "Message", "Part"]

log = logging.getLogger(__name__)

PROVIDER = "smpp"
_OUTBOX = OutboxMessage.__table__  # Core statements: this path runs thousands of times a second


@dataclass(eq=False)
class Message:
    """An outbox row on its way: changed by the SMPP thread only, read by the recorder after."""

    outbox_id: int
    entry_id: str
    destination: str
    expires_at: datetime | None
    data_coding: int = 0
    esm_class: int = 0
    parts: list[Part] = field(default_factory=list)
    answered: int = 0
    error: str | None = None


@dataclass(eq=False)
class Part:
    message: Message
    number: int
    payload: bytes
    sequence: int = 0
    sent_at: float = 0.0
    message_id: str | None = None


class Feeder:
    """Keeps ``parts`` stocked with encoded parts of claimed messages."""

    def __init__(self, gw: Gateway, stream: OutboundStream, consumer: str,
                 stopping: threading.Event) -> None:
        self.gw = gw
        self.stream = stream
        self.consumer = consumer
        self.stopping = stopping
        # Claim in batches of at least 100 rows: one commit per handful of messages would
        # make a small window wait on the database instead of the SMSC.
        self._batch = max(2 * gw.settings.SMPP_WINDOW, 500)
        self.parts: queue.Queue[Part] = queue.Queue(maxsize=2 * self._batch + 255)
        self._active: set[int] = set()  # claimed here, not yet settled
        self._lock = threading.Lock()
        self._reference = 0
        self.paused = threading.Event()  # set by the worker while it cannot keep up

    def settled(self, outbox_ids: list[int]) -> None:
        with self._lock:
            self._active.difference_update(outbox_ids)

    def run(self) -> None:
        reclaim_every = max(1.0, self.gw.settings.SMPP_RECLAIM_AFTER / 4)
        next_reclaim = 0.0
        while not self.stopping.is_set():
            try:
                if self.paused.is_set() or self.parts.qsize() > 2 * self._batch:
                    self.stopping.wait(0.005)
                    continue
                reclaimed = []
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + reclaim_every
                    reclaimed = self.stream.reclaim(
                        self.consumer, self.gw.settings.SMPP_RECLAIM_AFTER * 1000)
                fresh = self.stream.read(self.consumer, count=self._batch, block_ms=100)
                if fresh or reclaimed:
                    self._claim(fresh, reclaimed)
            except Exception:
                log.exception("feeder failed; retrying in 1 s")
                self.stopping.wait(1)

    def _claim(self, fresh: list[tuple[str, int]], reclaimed: list[tuple[str, int]]) -> None:
        """Claim the rows of new entries still queued, and of reclaimed entries a dead worker
        had claimed; acknowledge entries whose row needs nothing more."""
        with self._lock:
            reclaimed = [entry for entry in reclaimed if entry[1] not in self._active]
        entries = fresh + reclaimed
        retaken = [outbox_id for _, outbox_id in reclaimed]
        rows = _OUTBOX.c
        with self.gw.db.transaction() as session:
            claimed_rows = session.execute(
                update(_OUTBOX)
                .where(rows.id.in_(padded(outbox_id for _, outbox_id in entries)),
                       or_(rows.status == SmsStatus.QUEUED,
                           and_(rows.status == SmsStatus.SENDING,
                                rows.id.in_(padded(retaken) or [0]))))
                .values(status=SmsStatus.SENDING, provider=PROVIDER, updated_at=self.gw.clock())
                .returning(rows.id, rows.to_phone, rows.body, rows.expires_at)
            ).all()
        claimed = {row.id: row for row in claimed_rows}
        done = []
        for entry_id, outbox_id in entries:
            row = claimed.pop(outbox_id, None)
            if row is None:  # handled already, or a second entry for the same row
                done.append(entry_id)
                continue
            self._reference = (self._reference + 1) % 256
            coding, esm_class, payloads = codec.encode_parts(row.body, self._reference)
            message = Message(outbox_id, entry_id, row.to_phone.lstrip("+"), row.expires_at,
                              coding, esm_class)
            message.parts = [Part(message, n, payload)
                             for n, payload in enumerate(payloads, start=1)]
            with self._lock:
                self._active.add(outbox_id)
            for part in message.parts:
                while not self.stopping.is_set():
                    try:
                        self.parts.put(part, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        self.stream.ack(done)
