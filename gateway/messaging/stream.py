"""The Redis Stream between the SQL outbox and the SMPP worker.

The relay (run by the background worker) adds the id of each queued outbox row to the stream;
the SMPP worker reads the stream in the consumer group ``smpp``, claims the rows in SQL and
acknowledges an entry once the SMSC has answered for the message. The SQL row stays the record,
so nothing is lost with Redis: the relay adds a row again when
  - Redis lost the stream (each row remembers the stream *epoch* it went into),
  - its worker died while sending it (the row's lease ran out), or
  - it has waited long and its entry is no longer in the stream.
The worker's claim in SQL keeps a row from being sent twice by live workers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

import redis
from redis.typing import StreamIdT
from sqlalchemy import and_, or_, select

from gateway.domain.sms import SmsStatus
from gateway.store.db import Database
from gateway.store.models import OutboxMessage
from gateway.store.outbox import fail_if_expired

__all__ = ["GROUP", "OutboundStream", "relay"]

GROUP = "smpp"


class OutboundStream:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self.key = f"{prefix}sms:out:smpp"
        self._epoch_key = f"{prefix}sms:out:smpp:epoch"

    def epoch(self) -> str:
        """This stream's life: a new one begins whenever Redis has lost the stream."""
        self._client.set(self._epoch_key, secrets.token_hex(6), nx=True)
        return str(self._client.get(self._epoch_key))

    def add(self, outbox_ids: list[int]) -> list[str]:
        pipe = self._client.pipeline(transaction=False)
        for outbox_id in outbox_ids:
            pipe.xadd(self.key, {"id": outbox_id})
        return [str(entry) for entry in pipe.execute()]

    def ensure_group(self) -> None:
        try:
            self._client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, consumer: str, count: int, block_ms: int | None) -> list[tuple[str, int]]:
        """New entries for ``consumer``: ``(entry id, outbox id)`` pairs."""
        try:
            reply = self._client.xreadgroup(GROUP, consumer, {self.key: ">"}, count=count,
                                            block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # Redis lost the stream: start a new one
            return []
        # redis-py types the reply of either protocol; in RESP2, this client's, with decoded
        # responses it is [[stream, [(entry id, fields), ...]], ...]
        streams = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
        return [_entry(entry_id, fields) for _, entries in streams
                for entry_id, fields in entries if fields]

    def reclaim(self, consumer: str, min_idle_ms: int, count: int = 200) -> list[tuple[str, int]]:
        """Take over entries another consumer read but left unacknowledged for ``min_idle_ms``."""
        try:
            _cursor, claimed, *_ = self._client.xautoclaim(self.key, GROUP, consumer,
                                                           min_idle_ms, "0-0", count=count)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()
            return []
        return [_entry(entry_id, fields) for entry_id, fields in claimed if fields]

    def touch(self, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of entries in hand, so that no one takes them over."""
        for start in range(0, len(entry_ids), 1000):
            chunk: list[StreamIdT] = list(entry_ids[start:start + 1000])
            self._client.xclaim(self.key, GROUP, consumer, 0, chunk, justid=True)

    def present(self, entry_ids: list[str]) -> set[str]:
        """The entries that are still in the stream."""
        pipe = self._client.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xrange(self.key, entry_id, entry_id, count=1)
        return {entry_id for entry_id, found in zip(entry_ids, pipe.execute(), strict=True)
                if found}

    def ack(self, entry_ids: list[str]) -> None:
        """Acknowledge and delete handled entries, so the stream stays small."""
        if entry_ids:
            pipe = self._client.pipeline(transaction=False)
            pipe.xack(self.key, GROUP, *entry_ids)
            pipe.xdel(self.key, *entry_ids)
            pipe.execute()


def _entry(entry_id: object, fields: dict[str, str]) -> tuple[str, int]:
    return str(entry_id), int(fields["id"])


def relay(db: Database, stream: OutboundStream, clock: Callable[[], datetime],
          batch: int = 500, stale_after: timedelta = timedelta(minutes=1)) -> int:
    """Add to the stream the rows that need a worker's attention; return how many were seen."""
    epoch = stream.epoch()
    now = clock()
    sms = OutboxMessage
    with db.transaction() as session:
        messages = session.scalars(
            select(sms)
            .where(or_(
                and_(sms.status == SmsStatus.QUEUED,
                     or_(sms.relay_ref.is_(None), sms.relay_ref.not_like(f"{epoch}/%"),
                         sms.updated_at < now - stale_after)),
                and_(sms.status == SmsStatus.SENDING,
                     or_(sms.lease_until.is_(None), sms.lease_until < now))))
            .order_by(sms.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        # Queued rows of this epoch are here because they waited long: is their entry still in
        # the stream (the workers are just behind), or was it lost?
        stale = {ref.split("/", 1)[1]: m for m in messages
                 if m.status == SmsStatus.QUEUED
                 and (ref := m.relay_ref or "").startswith(f"{epoch}/")}
        behind = {stale[entry].id for entry in stream.present(list(stale))}
        for message in stale.values():
            message.updated_at = now  # looked at: not again before stale_after
        live = [m for m in messages if m.id not in behind and not fail_if_expired(m, now)]
        for message, entry in zip(live, stream.add([m.id for m in live]), strict=True):
            message.status, message.lease_until = SmsStatus.QUEUED, None
            message.relay_ref, message.provider = f"{epoch}/{entry}", "smpp"
            message.updated_at = now
        return len(live)
