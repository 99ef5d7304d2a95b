"""The ESMEs' sessions with the SMSC, and the deliver_sm the SMSC owes them."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smpp.pdu import Pdu

__all__ = ["BIND_COMMANDS", "Deliveries", "Delivery", "EsmeSession"]

BIND_COMMANDS = {"bind_transceiver", "bind_transmitter", "bind_receiver"}


@dataclass(frozen=True)
class Delivery:
    """A deliver_sm the SMSC owes an ESME: a phone's reply or a delivery receipt."""

    fields: dict[str, Any]
    tlvs: dict[int, bytes]
    reply: bool


@dataclass(eq=False)
class EsmeSession:
    """One ESME's connection: how it is bound, and the deliveries it has not acknowledged."""

    writer: asyncio.StreamWriter
    bound_as: str | None = None
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # deliveries sent and not acknowledged yet: sequence -> (delivery, sent at)
    unacknowledged: dict[int, tuple[Delivery, float]] = field(default_factory=dict)

    @property
    def receives(self) -> bool:
        return self.bound_as in ("bind_transceiver", "bind_receiver")


class Deliveries:
    """The deliver_sm the SMSC owes, handed to the bound receivers in turn.

    Each is offered until acknowledged: again when refused, when its session ends, or when
    not acknowledged within ``redeliver_after`` seconds.
    """

    def __init__(self, sessions: set[EsmeSession],
                 send: Callable[[EsmeSession, Pdu], None], redeliver_after: float) -> None:
        self.redeliver_after = redeliver_after
        self._sessions = sessions
        self._send = send
        self._queue: deque[Delivery] = deque()
        self._waiting: asyncio.Event | None = None  # set when there is something to deliver

    def add(self, item: Delivery) -> None:
        self._queue.append(item)
        self._wake()

    def put_back(self, session: EsmeSession) -> None:
        """What an ended session did not acknowledge is delivered again, first."""
        self._queue.extendleft(reversed([d for d, _ in session.unacknowledged.values()]))
        self._wake()

    def _wake(self) -> None:
        if self._waiting is not None:
            self._waiting.set()

    async def run(self) -> None:
        """Hand queued replies and receipts to a bound receiver, each until acknowledged.

        What is not acknowledged within ``redeliver_after`` seconds is offered again.
        """
        self._waiting = asyncio.Event()
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        while True:
            try:
                await asyncio.wait_for(self._waiting.wait(), timeout=0.25)
            except TimeoutError:
                pass
            self._waiting.clear()
            now = loop.time()
            if now >= next_sweep:
                next_sweep = now + min(0.25, self.redeliver_after / 4)
                for session in self._sessions:
                    late = [seq for seq, (_, sent) in session.unacknowledged.items()
                            if now - sent > self.redeliver_after]
                    for sequence in late:
                        self._queue.append(session.unacknowledged.pop(sequence)[0])
            # like SMSCs that spread deliveries over every bind of the same account
            receivers = itertools.cycle([s for s in self._sessions if s.receives
                                         and not s.writer.is_closing()] or [None])
            while self._queue and (receiver := next(receivers)) is not None:
                item = self._queue.popleft()
                sequence = next(receiver.sequence)
                receiver.unacknowledged[sequence] = (item, now)
                self._send(receiver, Pdu("deliver_sm", sequence, fields=item.fields,
                                         tlvs=item.tlvs))
