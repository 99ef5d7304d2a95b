"""The Redis Streams between the SQL outbox and the SMPP workers, one per SMPP connection.

The relay (run by the background worker) routes each queued outbox row to a connection
(``gateway.messaging.routing``: by prefix or carrier, priority and weight, skipping the
connections with no live bind) and adds its id to that connection's stream; the connection's
SMPP workers read the stream in the consumer group ``smpp``, claim the rows in SQL and
acknowledge an entry once the SMSC has answered for the message. The SQL row stays the record,
so nothing is lost with Redis: the relay adds a row again when
  - Redis lost the streams (each row remembers the streams' *epoch* it went into),
  - its worker died while sending it (the row's lease ran out),
  - it has waited long and its entry is no longer in the stream, or
  - its connection has had no live bind for ``failover_after``: then it goes by the next one.
The workers' claim in SQL keeps a row from being sent twice, whichever streams hold it, while
the claiming worker's lease holds (``smpp.feeder``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import cast

import redis
from redis.typing import StreamIdT
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.domain.sms import SmsStatus
from gateway.messaging import delivery
from gateway.messaging.connections import DEFAULT_ID
from gateway.messaging.routing import Miss
from gateway.store.db import Database
from gateway.store.models import OutboxMessage
from gateway.store.outbox import fail_if_expired

__all__ = ["GROUP", "HANDED_ON", "NO_ROUTE", "OutboundStream", "Route", "relay", "streams_of"]

GROUP = "smpp"
NO_ROUTE = Miss.NO_ROUTE.value  # the error of an SMS no connection's routes match
# The relay_ref of a queued SMS none of whose connections has a live bind, handed on to the
# next provider of SMS_PROVIDER (Twilio), which takes it from there.
HANDED_ON = "next-provider"
# A destination's connection now, or Miss.NO_ROUTE; given the connections usable now.
Route = Callable[[str], "str | Miss"]


class OutboundStream:
    """The stream of one SMPP connection (``default``: the one of ``SMPP_*``)."""

    def __init__(self, client: redis.Redis, prefix: str, connection: str = DEFAULT_ID) -> None:
        self._client = client
        self.connection = connection
        self.key = f"{prefix}sms:out:smpp" + ("" if connection == DEFAULT_ID else f"@{connection}")
        self._epoch_key = f"{prefix}sms:out:smpp:epoch"  # one epoch: one Redis holds them all

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


def relay(db: Database, streams: Callable[[str], OutboundStream],
          clock: Callable[[], datetime], route: Route = lambda _phone: DEFAULT_ID,
          unusable: Collection[str] = (), known: Collection[str] = (DEFAULT_ID,),
          handing_on: bool = False, batch: int = 500, stale_after: timedelta = timedelta(minutes=1),
          failover_after: timedelta = timedelta(seconds=30)) -> int:
    """Add to the streams the rows that need a worker's attention; return how many were
    passed on (added to a stream, failed for want of a route, or left to wait again).

    ``streams(connection)``: that connection's stream. ``route(phone)``: the connection to
    send by now (``Miss.NONE_USABLE``: by the next provider, ``HANDED_ON``). A row queued for
    ``failover_after`` to a connection with no live bind
    (``unusable``), or to one the configuration no longer has (not in ``known``), is routed
    again. New rows are taken first, so that rows waiting on a connection never hold them up.
    """
    epoch = streams(DEFAULT_ID).epoch()
    now = clock()
    sms = OutboxMessage
    connection = func.coalesce(sms.connection, DEFAULT_ID)
    this_epoch = sms.relay_ref.like(f"{epoch}/%")
    stranded_rows = and_(or_(connection.in_(list(unusable)), connection.not_in(list(known))),
                         sms.updated_at < now - failover_after)
    with db.transaction() as session:
        def take(condition: ColumnElement[bool], limit: int) -> list[OutboxMessage]:
            return list(session.scalars(select(sms).where(condition).order_by(sms.id)
                                        .limit(limit).with_for_update(skip_locked=True)))

        # rows handed on to the next provider are its own while it takes them (handing_on)
        elsewhere = and_(~this_epoch, sms.relay_ref != HANDED_ON) if handing_on else ~this_epoch
        new = take(or_(and_(sms.status == SmsStatus.QUEUED,
                            or_(sms.relay_ref.is_(None), elsewhere)),
                       and_(sms.status == SmsStatus.SENDING,
                            or_(sms.lease_until.is_(None), sms.lease_until < now))), batch)
        waited = take(and_(sms.status == SmsStatus.QUEUED, this_epoch,
                           or_(sms.updated_at < now - stale_after, stranded_rows)),
                      batch - len(new)) if len(new) < batch else []
        # Rows of this epoch that waited: on a connection with no live bind (or none at all)
        # they are routed again; else, is their entry still in the stream (the workers are
        # just behind), or was it lost?
        live: list[OutboxMessage] = list(new)
        stranded: set[int] = set()  # in their connection's stream still
        stale: dict[str, dict[str, OutboxMessage]] = {}  # connection -> entry id -> row
        for message in waited:
            name = message.connection or DEFAULT_ID
            if (name in unusable or name not in known) and \
                    message.updated_at < now - failover_after:
                live.append(message)
                stranded.add(message.id)
            else:
                entry = (message.relay_ref or "").split("/", 1)[1]
                stale.setdefault(name, {})[entry] = message
        for stream_of, entries in stale.items():
            present = streams(stream_of).present(list(entries))
            for entry, message in entries.items():
                message.updated_at = now  # looked at: not again before stale_after
                if entry not in present:
                    live.append(message)
        by_connection: dict[str, list[OutboxMessage]] = {}
        passed = 0
        for message in sorted(live, key=lambda m: m.id):
            if fail_if_expired(message, now):
                continue
            chosen = route(message.to_phone)
            passed += 1
            if chosen is Miss.NO_ROUTE:
                _no_route(session, message, now)
            elif chosen is Miss.NONE_USABLE:  # route gives it only with a next provider
                message.relay_ref, message.connection = HANDED_ON, None
                message.status, message.lease_until, message.updated_at = (
                    SmsStatus.QUEUED, None, now)
            elif message.id in stranded and chosen == message.connection:
                message.updated_at = now  # none better now: it waits where it is
            else:
                by_connection.setdefault(str(chosen), []).append(message)
        for chosen_id, routed in by_connection.items():
            added = streams(chosen_id).add([m.id for m in routed])
            for message, entry in zip(routed, added, strict=True):
                message.status, message.lease_until = SmsStatus.QUEUED, None
                message.relay_ref, message.provider = f"{epoch}/{entry}", "smpp"
                message.connection, message.updated_at = chosen_id, now
        return passed


def _no_route(session: Session, message: OutboxMessage, now: datetime) -> None:
    """No connection takes this destination: the SMS fails, and a code SMS's order with it."""
    message.status, message.error, message.updated_at = SmsStatus.FAILED, NO_ROUTE, now
    metrics.count_sms(session, "smpp", SmsStatus.FAILED)
    delivery.unreachable(session, [message], now)


def streams_of(client: redis.Redis, prefix: str) -> Callable[[str], OutboundStream]:
    """Each connection's stream, made once."""
    made: dict[str, OutboundStream] = {}

    def stream(connection: str) -> OutboundStream:
        if connection not in made:
            made[connection] = OutboundStream(client, prefix, connection)
        return made[connection]

    return stream
