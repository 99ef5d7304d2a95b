"""Payment role: which wallet a phone is bound to, and what can pay from it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway import ledger
from gateway.db import Card, PhoneBinding, Wallet

__all__ = ["FundingSource", "bound_wallet", "describe_source", "funding_sources"]


@dataclass(frozen=True)
class FundingSource:
    kind: str  # "wallet" or "card"
    card: Card | None = None


def bound_wallet(session: Session, phone: str, *, lock: bool = False) -> Wallet | None:
    """The wallet bound to ``phone``; ``lock`` serialises concurrent orders of one phone."""
    binding = session.get(PhoneBinding, phone, with_for_update=lock)
    return None if binding is None else session.get(Wallet, binding.wallet_id)


def funding_sources(session: Session, wallet: Wallet) -> list[str]:
    """Accounts to try in order: the wallet balance, then the linked bank card."""
    sources = [ledger.wallet_account(wallet.id)]
    if session.get(Card, wallet.id) is not None:
        sources.append(ledger.card_account(wallet.id))
    return sources


def describe_source(session: Session, account_id: str) -> FundingSource:
    kind, wallet_id = account_id.split(":", 1)
    return FundingSource(kind, session.get(Card, wallet_id) if kind == "card" else None)
