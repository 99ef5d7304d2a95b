"""What a code the phone sent does to that phone's orders: the rule, without I/O.

A right code pays its order if it still waits for a code; a code of an order that has lapsed,
been paid or closed says so. A wrong code counts against every order of the phone still waiting
for a code (a guesser cannot spread tries over orders), and fails those that run out of tries.
Orders whose code has lapsed are expired first, whatever the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from gateway.domain.orders import Status, is_lapsed

__all__ = ["CodeOrder", "CodeOutcome", "CodeResult", "ReplyDecision", "WrongTry", "decide"]


class CodeOutcome(StrEnum):
    CONFIRMED = "confirmed"
    WRONG = "wrong_code"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    EXPIRED = "code_expired"
    ALREADY_USED = "code_used"
    CLOSED = "order_closed"
    NO_ORDER = "no_order"


@dataclass(frozen=True)
class CodeResult:
    """What the viewer is told: the outcome, the order it concerns, tries left after a wrong
    code."""

    outcome: CodeOutcome
    order_id: str | None = None
    tries_left: int | None = None


class CodeOrder(NamedTuple):  # tuples: a reply builds a few, and a dataclass costs more
    """What the rule needs to know of one of the phone's orders that had a code."""

    id: str
    status: str
    expires_at: datetime | None
    code_attempts: int
    matches: bool  # the code is this order's (its keyed digest matched)


class WrongTry(NamedTuple):
    """A wrong code counted against a waiting order: its attempts now, and whether it fails."""

    order_id: str
    attempts: int
    tries_left: int

    @property
    def fails(self) -> bool:
        return self.tries_left <= 0


class ReplyDecision(NamedTuple):
    """The changes a reply makes, and what the viewer is told.

    ``confirm``: the order the code pays (the caller settles its bill, captures its hold and
    activates it; if the bill was paid by another order first, the answer becomes ``CLOSED``).
    """

    result: CodeResult
    expire: tuple[str, ...] = ()
    confirm: str | None = None
    wrong: tuple[WrongTry, ...] = ()


_TOLD_OF_MATCH: dict[str, CodeOutcome] = {
    Status.EXPIRED: CodeOutcome.EXPIRED, Status.PAID: CodeOutcome.ALREADY_USED,
    Status.ACTIVATED: CodeOutcome.ALREADY_USED}


def decide(orders: Sequence[CodeOrder], now: datetime, max_attempts: int) -> ReplyDecision:
    """Decide what a code reply does to the phone's ``orders`` (in their order of id)."""
    expire = tuple(o.id for o in orders if is_lapsed(o.status, o.expires_at, now))
    status: dict[str, str] = {o.id: Status.EXPIRED if o.id in expire else o.status
                              for o in orders}
    matches = sorted((o for o in orders if o.matches),
                     key=lambda o: status[o.id] != Status.AWAITING_CODE)
    if matches:
        order = matches[0]
        if status[order.id] == Status.AWAITING_CODE:
            return ReplyDecision(CodeResult(CodeOutcome.CONFIRMED, order.id), expire,
                                 confirm=order.id)
        outcome = _TOLD_OF_MATCH.get(status[order.id], CodeOutcome.CLOSED)
        return ReplyDecision(CodeResult(outcome, order.id), expire)
    waiting = [o for o in orders if status[o.id] == Status.AWAITING_CODE]
    if not waiting:
        return ReplyDecision(CodeResult(CodeOutcome.NO_ORDER), expire)
    wrong = tuple(WrongTry(o.id, o.code_attempts + 1, max_attempts - o.code_attempts - 1)
                  for o in waiting)
    still = [w for w in wrong if not w.fails]
    if not still:
        return ReplyDecision(CodeResult(CodeOutcome.TOO_MANY_ATTEMPTS, wrong[-1].order_id),
                             expire, wrong=wrong)
    nearest = min(still, key=lambda w: w.tries_left)
    return ReplyDecision(CodeResult(CodeOutcome.WRONG, nearest.order_id, nearest.tries_left),
                         expire, wrong=wrong)
