"""Which account pays for a code order (CN103530766A): the wallet's balance, else the balance
of the bank card linked to the wallet. The rule, without I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WALLET_FIRST", "Funding", "Source", "choose"]

WALLET_FIRST = ("wallet", "card")  # the order in which sources are asked to pay


@dataclass(frozen=True)
class Source:
    """An account a wallet can pay from, as read just before the decision."""

    account_id: str
    kind: str  # "wallet" or "card"
    balance: int
    currency: str
    bank: str = ""  # a card's, as the code SMS names it
    last4: str = ""


@dataclass(frozen=True)
class Funding:
    """The wallet a phone is bound to, and what it can pay from."""

    wallet_id: str
    sources: tuple[Source, ...]


def choose(sources: Sequence[Source], amount: int, currency: str) -> Source | None:
    """The first source, wallet before card, that holds ``amount`` in ``currency``; None if
    none does (the order fails with ``insufficient_funds``)."""
    for kind in WALLET_FIRST:
        for source in sources:
            if source.kind == kind and source.currency == currency and source.balance >= amount:
                return source
    return None
