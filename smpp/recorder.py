"""The worker's recorder: what the SMSC answered, written to SQL in batches, then acknowledged.

Runs in its own thread so that SQL never stalls the SMPP connection. Each batch is one
transaction: parts the SMSC accepted (with their message ids), messages whose every part was
answered, delivery receipts, and messages handed back at shutdown. Only after the commit are
stream entries acknowledged and the receipts' ``deliver_sm_resp`` released; the batch's
viewers' replies are then acted on together (one transaction for all of them,
``inbound.receive_together``) before their ``deliver_sm_resp`` are released. A committed batch
is never written again: only what follows the commit is retried. The recorder also picks the
parts whose receipt is overdue, for the SMPP thread to ask about.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, distinct, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.domain.sms import SmsStatus
from gateway.messaging import delivery, inbound
from gateway.messaging.stream import OutboundStream
from gateway.store.db import one_of, padded, rowcount
from gateway.store.models import OutboxMessage, SmsPart
from gateway.store.writes import insert_rows
from smpp import codec
from smpp.feeder import PROVIDER, Message, Part

__all__ = ["Inbound", "Recorder", "Release"]

log = logging.getLogger(__name__)

ROK, RX_T_APPN = 0x00, 0x64
# Core statements on the tables: this path runs thousands of times a second.
_OUTBOX = OutboxMessage.__table__
_PARTS = SmsPart.__table__


@dataclass
class Inbound:
    """A receipt or a viewer's reply, and the deliver_sm it acknowledges on one connection."""

    generation: int
    sequences: list[int]
    receipt: codec.Receipt | None = None
    sender: str = ""
    text: str = ""


@dataclass(frozen=True)
class Release:
    """Messages claimed but never started, handed back (at a stop, or after the bind has been
    down for SMS_FAILOVER_AFTER) for the relay to route again, to any worker."""

    outbox_ids: frozenset[int]


# What the SMPP thread hands over: a part the SMSC accepted, a message whose every part was
# answered, an Inbound, or a Release.
Result = Part | Message | Inbound | Release

_MAX_QUERIES = 3
# A receipt can come before its part is recorded (another worker's bind got it first): it is
# refused for a while, so that the SMSC offers it again, and dropped only after this long.
_UNKNOWN_RECEIPT_PATIENCE = 60.0


class Recorder:
    def __init__(self, gw: Gateway, stream: OutboundStream,
                 settled: Callable[[list[int]], None],
                 respond: Callable[[int, int, int], None]) -> None:
        self.gw = gw
        self.stream = stream
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.queries: queue.SimpleQueue[str] = queue.SimpleQueue()  # message ids to query_sm
        self.finishing = threading.Event()
        self._settled = settled  # tells the feeder which outbox ids are done
        self._respond = respond  # (generation, sequence, status): queue a deliver_sm_resp
        self._query_every = min(5, gw.settings.SMPP_DLR_TIMEOUT)
        self._next_query = 0.0
        self._unknown_since: dict[str, float] = {}  # receipt ids not matched yet: first seen
        self._unmatched: set[str] = set()  # of the batch being recorded
        self._waiting_replies: dict[tuple[str, str], Inbound] = {}  # (sender, text): queued
        self._replies_lock = threading.Lock()

    def add_reply(self, generation: int, sequences: list[int], sender: str, text: str) -> None:
        """Queue a viewer's reply to hand over. A copy of a reply still waiting here (the SMSC
        offered it again, its answer being late) joins it, to be answered with it: acting on
        every copy would answer each too late again while the worker is behind (a slow
        database), and the SMSC would offer them again and again."""
        with self._replies_lock:
            waiting = self._waiting_replies.get((sender, text))
            if waiting is not None:
                if waiting.generation != generation:  # its connection is gone, and its copies
                    waiting.generation, waiting.sequences = generation, []
                waiting.sequences.extend(sequences)
                return
            item = Inbound(generation, list(sequences), sender=sender, text=text)
            self._waiting_replies[sender, text] = item
        self.results.put(item)

    def run(self) -> None:
        """Record batches until ``finishing`` is set and nothing is left."""
        backoff = 0.1
        batch: list[Result] = []
        committed = False
        while True:
            if not batch:
                batch, committed = self._take(), False
            try:
                if not batch:
                    if self.finishing.is_set():
                        return
                    self._find_silent_parts()
                    continue
                if not committed:
                    self._commit(batch)
                    committed = True
                self._after_commit(batch)
            except Exception:
                if self.finishing.is_set():
                    log.exception("stopping with %d answers not fully recorded; their "
                                  "messages and receipts will come again", len(batch))
                    return
                log.exception("could not record SMSC answers; retrying in %.1f s", backoff)
                self.finishing.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            batch, backoff = [], 0.1

    def _take(self) -> list[Result]:
        """The next batch: whatever has arrived, up to 5,000 items. It never waits for company:
        under light load an answer goes alone at once, and under load the answers that came
        while the last batch was written go together, one commit for all."""
        try:
            items = [self.results.get(timeout=0.02)]
        except queue.Empty:
            return []
        while len(items) < 5000:
            try:
                items.append(self.results.get_nowait())
            except queue.Empty:
                break
        return items

    def _commit(self, batch: list[Result]) -> None:
        accepted = [item for item in batch if isinstance(item, Part)]
        settled = [item for item in batch if isinstance(item, Message)]
        receipts = [item.receipt for item in batch
                    if isinstance(item, Inbound) and item.receipt is not None]
        released = {i for item in batch if isinstance(item, Release) for i in item.outbox_ids}
        now = self.gw.clock()
        with self.gw.db.transaction() as session:
            insert_rows(session, SmsPart, *(
                {"outbox_id": p.message.outbox_id, "part": p.number,
                 "total": len(p.message.parts), "provider": PROVIDER,
                 "connection": self.stream.connection,
                 "message_id": p.message_id, "status": "submitted", "submitted_at": now,
                 "queries": 0} for p in accepted))
            touched = _settle(session, settled, now)
            delivered, others, self._unmatched = _apply_receipts(
                session, receipts, now, self.stream.connection)
            if delivered:
                done = session.execute(
                    update(_OUTBOX).where(one_of(_OUTBOX.c.id, "ids"),
                                          _OUTBOX.c.status == SmsStatus.SUBMITTED)
                    .values(status=SmsStatus.DELIVERED, updated_at=now),
                    {"ids": padded(delivered)})
                delivery.reached(session, PROVIDER, SmsStatus.DELIVERED, now,
                                 count=rowcount(done))
            _conclude(session, touched | others, now)
            if released:
                session.execute(
                    update(_OUTBOX).where(one_of(_OUTBOX.c.id, "ids"),
                                          _OUTBOX.c.status == SmsStatus.SENDING)
                    .values(status=SmsStatus.QUEUED, lease_until=None, updated_at=now,
                            relay_ref=None),  # for the next relay round to route again
                    {"ids": padded(released)})

    def _after_commit(self, batch: list[Result]) -> None:
        """Acknowledge what the commit recorded. Only the stream ack can fail, and it comes
        first, so a retry never answers or hands over anything twice."""
        settled = [item for item in batch if isinstance(item, Message)]
        self.stream.ack([message.entry_id for message in settled])
        self._settled([message.outbox_id for message in settled])
        replies = [item for item in batch if isinstance(item, Inbound) and item.receipt is None]
        for item in batch:
            if isinstance(item, Inbound) and item.receipt is not None:
                self._answer(item, self._receipt_status(item.receipt.message_id))
        if not replies:
            return
        # One transaction for the batch's replies; each phone's in the order they came.
        dealt = inbound.receive_together(self.gw, [(item.sender, item.text) for item in replies])
        for item, done in zip(replies, dealt, strict=True):
            with self._replies_lock:  # copies that came meanwhile are answered too
                if self._waiting_replies.get((item.sender, item.text)) is item:
                    del self._waiting_replies[item.sender, item.text]
            self._answer(item, ROK if done else RX_T_APPN)

    def _answer(self, item: Inbound, status: int) -> None:
        for sequence in item.sequences:
            self._respond(item.generation, sequence, status)

    def _receipt_status(self, message_id: str) -> int:
        """ROK for a receipt recorded; a temporary refusal for one whose part is not known
        yet, until it has been unknown for too long."""
        now = time.monotonic()
        if message_id not in self._unmatched:
            self._unknown_since.pop(message_id, None)
            return ROK
        first_seen = self._unknown_since.setdefault(message_id, now)
        if now - first_seen < _UNKNOWN_RECEIPT_PATIENCE:
            return RX_T_APPN
        log.warning("dropping a receipt for unknown message id %s", message_id)
        del self._unknown_since[message_id]
        return ROK

    def _find_silent_parts(self) -> None:
        """Pick parts whose receipt has not come within SMPP_DLR_TIMEOUT, to ask the SMSC."""
        if time.monotonic() < self._next_query:
            return
        self._next_query = time.monotonic() + self._query_every
        now = self.gw.clock()
        silent_since = now - timedelta(seconds=self.gw.settings.SMPP_DLR_TIMEOUT)
        parts = _PARTS.c
        with self.gw.db.transaction() as session:
            due = session.execute(
                select(parts.id, parts.message_id)
                .where(parts.provider == PROVIDER, parts.connection == self.stream.connection,
                       parts.status == "submitted",
                       parts.submitted_at <= silent_since, parts.queries < _MAX_QUERIES,
                       or_(parts.queried_at.is_(None), parts.queried_at <= silent_since))
                .order_by(parts.submitted_at)
                .limit(50)
            ).all()
            if due:
                session.execute(update(_PARTS).where(one_of(parts.id, "ids"))
                                .values(queried_at=now, queries=parts.queries + 1),
                                {"ids": padded(r.id for r in due)})
        for row in due:
            self.queries.put(row.message_id)


def _settle(session: Session, settled: list[Message], now: datetime) -> set[int]:
    """Mark messages whose every part was answered; return those whose receipts came first."""
    accepted: dict[int, list[int]] = {}
    for message in settled:
        if message.error is None:
            accepted.setdefault(len(message.parts), []).append(message.outbox_id)
            continue
        log.warning("sms #%s failed: %s", message.outbox_id, message.error)
        failed = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == message.outbox_id, _OUTBOX.c.status == SmsStatus.SENDING)
            .values(status=SmsStatus.FAILED, error=message.error, parts=len(message.parts),
                    updated_at=now))
        delivery.reached(session, PROVIDER, SmsStatus.FAILED, now, count=rowcount(failed),
                         messages=[message])
    for count, ids in accepted.items():
        submitted = session.execute(
            update(_OUTBOX)
            .where(one_of(_OUTBOX.c.id, "ids"), _OUTBOX.c.status == SmsStatus.SENDING)
            .values(status=SmsStatus.SUBMITTED, parts=count, error=None, updated_at=now),
            {"ids": padded(ids)})
        delivery.reached(session, PROVIDER, SmsStatus.SUBMITTED, now, count=rowcount(submitted))
    # Receipts can only have come first for a part of a message of several parts.
    ids = [outbox_id for count, group in accepted.items() if count > 1 for outbox_id in group]
    if not ids:
        return set()
    return set(session.scalars(select(_PARTS.c.outbox_id).where(
        one_of(_PARTS.c.outbox_id, "ids"), _PARTS.c.status != "submitted"),
        {"ids": padded(ids)}))


def _apply_receipts(session: Session, receipts: list[codec.Receipt], now: datetime,
                    connection: str) -> tuple[set[int], set[int], set[str]]:
    """Record final receipts on their parts, those of the ``connection`` they came on (its
    SMSC gave the ids).

    Returns the outbox ids now known delivered (their only part was), the outbox ids whose
    outcome needs their other parts looked at, and the receipts' ids that match no part.
    """
    if not receipts:
        return set(), set(), set()
    columns = _PARTS.c

    def find(ids: set[str]) -> dict[str, Any]:
        """Parts by message id; the newest part wins where an SMSC reused an id."""
        return {row.message_id: row for row in session.execute(
            select(columns.id, columns.outbox_id, columns.message_id, columns.status,
                   columns.total)
            .where(columns.provider == PROVIDER, columns.connection == connection,
                   one_of(columns.message_id, "ids"))
            .order_by(columns.id), {"ids": padded(ids)})}

    parts = find({r.message_id for r in receipts})
    missing = [r for r in receipts if r.message_id not in parts]
    if missing:  # this SMSC writes ids differently in receipts: try hex and decimal
        parts.update(find({v for r in missing for v in codec.message_id_variants(r.message_id)}))
    delivered: dict[int, int] = {}  # part id -> outbox id
    failed: dict[int, dict[str, Any]] = {}  # part id -> the parameters of its update
    unmatched: set[str] = set()
    for receipt in receipts:
        part = parts.get(receipt.message_id) or next(
            (parts[v] for v in codec.message_id_variants(receipt.message_id) if v in parts),
            None)
        if part is None:
            unmatched.add(receipt.message_id)
        elif receipt.final and part.status == "submitted":
            if receipt.delivered:
                delivered[part.id] = part.outbox_id
            else:
                state = codec.MESSAGE_STATES.get(receipt.state, str(receipt.state))
                failed[part.id] = {"part_id": part.id, "new_done_at": now,
                                   "new_error": f"{state} err:{receipt.error}"
                                   if receipt.error else state}
    if delivered:
        session.execute(update(_PARTS).where(one_of(columns.id, "ids"))
                        .values(status="delivered", done_at=now), {"ids": padded(delivered)})
    if failed:
        session.execute(
            update(_PARTS).where(columns.id == bindparam("part_id"))
            .values(status="undeliverable", error=bindparam("new_error"),
                    done_at=bindparam("new_done_at")), list(failed.values()))
    single = {row.outbox_id for row in parts.values()
              if row.id in delivered and row.total == 1}
    others = {row.outbox_id for row in parts.values()
              if row.id in failed or (row.id in delivered and row.total > 1)}
    return single, others, unmatched


def _conclude(session: Session, outbox_ids: set[int], now: datetime) -> None:
    """Decide messages' outcomes from their parts: one undeliverable part is enough."""
    if not outbox_ids:
        return
    ids = {"ids": padded(outbox_ids)}
    parts, outbox = _PARTS.c, _OUTBOX.c
    failed = session.execute(
        select(outbox.id, outbox.kind, outbox.order_id)
        .where(one_of(outbox.id, "ids"),
               outbox.status.in_([SmsStatus.SENDING, SmsStatus.SUBMITTED]),
               outbox.id.in_(select(parts.outbox_id).where(parts.status == "undeliverable"))),
        ids).all()
    for message in failed:
        session.execute(update(_OUTBOX).where(outbox.id == message.id)
                        .values(status=SmsStatus.UNDELIVERABLE, updated_at=now,
                                error="the SMSC could not deliver it"))
    delivery.reached(session, PROVIDER, SmsStatus.UNDELIVERABLE, now, messages=failed)
    # distinct part numbers: a part sent again after a crash has a row of its own
    delivered_parts = (select(func.count(distinct(parts.part)))
                       .where(parts.outbox_id == outbox.id, parts.status == "delivered")
                       .scalar_subquery())
    done = session.execute(update(_OUTBOX)
                           .where(one_of(outbox.id, "ids"),
                                  outbox.status == SmsStatus.SUBMITTED,
                                  outbox.parts == delivered_parts)
                           .values(status=SmsStatus.DELIVERED, updated_at=now), ids)
    delivery.reached(session, PROVIDER, SmsStatus.DELIVERED, now, count=rowcount(done))
