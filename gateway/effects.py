"""Side effects after commit: the one mechanism for what may happen only once a transaction
has committed (a counter to add to, a live stream to wake).

Code that makes a change notes the effect on its SQL session (``after_commit``); after the
session commits, the handlers the process registered for that kind of effect
(``gateway.store.db.Database.on_commit``, wired by ``gateway.wiring.connect``) receive the
transaction's notes; a rollback drops them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

__all__ = ["Handler", "after_commit", "drop", "run"]

Handler = Callable[[list[Any]], None]
_EFFECTS = "effects.after_commit"

log = logging.getLogger(__name__)


def after_commit(session: Session, kind: str, item: Any) -> None:
    """Note an effect of ``kind`` that happens once ``session``'s transaction commits."""
    session.info.setdefault(_EFFECTS, {}).setdefault(kind, []).append(item)


def run(session: Session, handlers: Mapping[str, Sequence[Handler]]) -> None:
    """After a commit: hand each kind's notes to its handlers.

    A handler that fails is logged, never raised: the change is committed, and a caller told
    otherwise would answer "failed" for it or do it again (``inbound.receive_together`` acts
    on each message alone when its shared transaction raises).
    """
    for kind, items in session.info.pop(_EFFECTS, {}).items():
        for handler in handlers.get(kind, ()):
            try:
                handler(items)
            except Exception:
                log.exception("an after-commit effect (%s) failed; the change stands", kind)


def drop(session: Session) -> None:
    """After a rollback: nothing noted happens."""
    session.info.pop(_EFFECTS, None)
