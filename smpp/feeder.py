"""The worker's feeder: outbox rows from the Redis Stream, claimed in SQL, encoded into parts.

Runs in its own thread so that claiming rows never stalls the SMPP connection.

Who sends a row is decided in SQL, not in Redis: a claim moves it from ``queued`` to
``sending`` with a lease (``lease_until``) that this worker renews while the row is in its
hands; only a row whose lease has run out (its worker died, or could not renew it in time:
then two workers may send it, the one risk of a double send) can be claimed again. Stream
entries only say "look at this row": entries a dead worker left unacknowledged are taken over
with XAUTOCLAIM after ``SMPP_RECLAIM_AFTER`` seconds, and the feeder touches its own entries
so that no live worker's entries look abandoned.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, or_, select, update

from gateway.context import Gateway
from gateway.domain.sms import SmsStatus
from gateway.messaging import delivery
from gateway.messaging.stream import OutboundStream
from gateway.store.db import one_of, padded
from gateway.store.models import OutboxMessage, SmsPart
from smpp import codec

__all__ = ["PROVIDER", "Feeder", "Message", "Part"]

log = logging.getLogger(__name__)

PROVIDER = "smpp"
_OUTBOX = OutboxMessage.__table__  # Core statements: this path runs thousands of times a second
_PARTS = SmsPart.__table__


@dataclass(eq=False)
class Message:
    """An outbox row on its way: changed by the SMPP thread only, read by the recorder after."""

    outbox_id: int
    entry_id: str
    kind: str
    order_id: str | None
    destination: str
    expires_at: datetime | None
    data_coding: int = 0
    esm_class: int = 0
    parts: list[Part] = field(default_factory=list)
    sent: int = 0  # parts handed to the SMSC at least once
    answered: int = 0
    error: str | None = None


@dataclass(eq=False)
class Part:
    message: Message
    number: int
    payload: bytes
    sequence: int = 0
    sent_at: float = 0.0
    attempts: int = 0
    message_id: str | None = None


class Feeder:
    """Keeps ``parts`` stocked with encoded parts of claimed messages."""

    def __init__(self, gw: Gateway, stream: OutboundStream, consumer: str,
                 stopping: threading.Event, batch: int | None = None) -> None:
        self.gw = gw
        self.stream = stream
        self.consumer = consumer
        self.stopping = stopping
        self.lease = timedelta(seconds=gw.settings.SMPP_RECLAIM_AFTER)
        # Claim in batches of at least 100 rows: one commit per handful of messages would
        # make a small window wait on the database instead of the SMSC. ``batch``: less, for
        # one of a connection's binds, so that they share its messages (SmppWorker).
        self._batch = batch or max(2 * gw.settings.SMPP_WINDOW, 500)
        self.parts: queue.Queue[Part] = queue.Queue(maxsize=2 * self._batch + 255)
        self._active: dict[int, Message] = {}  # claimed here and not yet recorded as settled
        self._lock = threading.Lock()
        self.paused = threading.Event()  # set by the worker while it cannot keep up

    def settled(self, outbox_ids: list[int]) -> None:
        """The recorder has recorded these messages: this worker holds them no longer."""
        with self._lock:
            for outbox_id in outbox_ids:
                self._active.pop(outbox_id, None)

    def held(self) -> list[Message]:
        with self._lock:
            return list(self._active.values())

    def run(self) -> None:
        every = max(0.5, self.gw.settings.SMPP_RECLAIM_AFTER / 3)
        next_round = 0.0
        while not self.stopping.is_set():
            try:
                reclaimed = []
                if time.monotonic() >= next_round:
                    next_round = time.monotonic() + every
                    self._keep_leases()
                    # Only a feeder that can send takes over others' entries: one paused (its
                    # bind down, or standing by for a bind slot) would hold them unread.
                    if not self.paused.is_set():
                        reclaimed = self.stream.reclaim(
                            self.consumer, self.gw.settings.SMPP_RECLAIM_AFTER * 1000)
                if self.paused.is_set():
                    self.stopping.wait(0.005)
                    continue
                if self.parts.qsize() > 2 * self._batch or len(self._active) >= self._batch:
                    if reclaimed:  # taken over just now: claim them, or they idle a while
                        self._claim(reclaimed)
                    self.stopping.wait(0.005)  # a batch in hand is enough
                    continue
                fresh = self.stream.read(self.consumer, count=self._batch, block_ms=100)
                if fresh or reclaimed:
                    self._claim(fresh + reclaimed)
            except Exception:
                log.exception("feeder failed; retrying in 1 s")
                self.stopping.wait(1)

    def _keep_leases(self) -> None:
        """Renew the leases of the rows in hand, and touch their stream entries."""
        held = self.held()
        if not held:
            return
        now = self.gw.clock()
        with self.gw.db.transaction() as session:
            session.execute(update(_OUTBOX)
                            .where(one_of(_OUTBOX.c.id, "ids"),
                                   _OUTBOX.c.status == SmsStatus.SENDING)
                            .values(lease_until=now + self.lease),
                            {"ids": padded(m.outbox_id for m in held)})
        self.stream.touch(self.consumer, [m.entry_id for m in held])

    def _claim(self, entries: list[tuple[str, int]]) -> None:
        """Claim the rows still queued, or whose worker's lease ran out; acknowledge entries
        whose row needs nothing from this worker."""
        with self._lock:
            mine = {outbox_id for _, outbox_id in entries if outbox_id in self._active}
        wanted = {outbox_id for _, outbox_id in entries} - mine
        rows = _OUTBOX.c
        now = self.gw.clock()
        claimed_rows: Sequence[Row[*tuple[Any, ...]]] = []
        if wanted:
            with self.gw.db.transaction() as session:
                claimed_rows = session.execute(
                    update(_OUTBOX)
                    .where(one_of(rows.id, "ids"),
                           or_(rows.status == SmsStatus.QUEUED,
                               and_(rows.status == SmsStatus.SENDING,
                                    or_(rows.lease_until.is_(None), rows.lease_until < now))))
                    .values(status=SmsStatus.SENDING, provider=PROVIDER, updated_at=now,
                            lease_until=now + self.lease, connection=self.stream.connection)
                    .returning(rows.id, rows.to_phone, rows.body, rows.kind, rows.order_id,
                               rows.expires_at),
                    {"ids": padded(wanted)}).all()
                # parts a dead worker had got accepted are not sent again
                accepted = set(session.execute(
                    select(_PARTS.c.outbox_id, _PARTS.c.part)
                    .where(one_of(_PARTS.c.outbox_id, "ids")),
                    {"ids": padded(r.id for r in claimed_rows)})
                ) if claimed_rows else set()
        claimed = {row.id: row for row in claimed_rows}
        done: list[str] = []
        complete: list[Message] = []
        for entry_id, outbox_id in entries:
            row = claimed.pop(outbox_id, None)
            if row is None:  # handled already, held here or by a live worker, or a duplicate
                done.append(entry_id)
                continue
            # The reference follows from the row, so a message sent again after a crash is cut
            # into the very same parts and the phone joins old and new ones.
            coding, esm_class, payloads = codec.encode_parts(row.body, outbox_id % 256)
            message = Message(outbox_id, entry_id, row.kind, row.order_id,
                              row.to_phone.lstrip("+"), row.expires_at, coding, esm_class)
            message.parts = [Part(message, n, payload)
                             for n, payload in enumerate(payloads, start=1)]
            to_send = [p for p in message.parts if (outbox_id, p.number) not in accepted]
            message.sent = message.answered = len(message.parts) - len(to_send)
            if not to_send:  # a dead worker got it all out; only the record was missing
                complete.append(message)
                continue
            with self._lock:
                self._active[outbox_id] = message
            for part in to_send:
                while not self.stopping.is_set():
                    try:
                        self.parts.put(part, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        if complete:
            with self.gw.db.transaction() as session:
                for message in complete:
                    session.execute(update(_OUTBOX).where(_OUTBOX.c.id == message.outbox_id)
                                    .values(status=SmsStatus.SUBMITTED, lease_until=None,
                                            parts=len(message.parts), updated_at=now))
                delivery.reached(session, PROVIDER, SmsStatus.SUBMITTED, now,
                                 count=len(complete))
            done += [message.entry_id for message in complete]
        self.stream.ack(done)
