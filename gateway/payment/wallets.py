"""Payment role: which wallet a phone is bound to, what can pay from it, and page sign-in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from gateway import phones
from gateway.context import Gateway
from gateway.domain.errors import InvalidInput, RateLimited
from gateway.domain.funding import Funding, Source
from gateway.payment import ledger
from gateway.store import outbox
from gateway.store.db import insert_ignore
from gateway.store.models import Account, Card, PhoneBinding, Wallet

__all__ = ["Payer", "bind_phone", "bound_wallet", "card_of", "payer", "sign_in", "sources"]

_WALLET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Checked against when the account is unknown, so that a wrong account takes as long as a
# wrong password and response times do not tell which accounts exist.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


_BOUND = (select(Wallet).join(PhoneBinding, PhoneBinding.wallet_id == Wallet.id)
          .where(PhoneBinding.phone == bindparam("phone")))


def bound_wallet(session: Session, phone: str) -> Wallet | None:
    """The wallet bound to ``phone``."""
    return session.scalar(_BOUND, {"phone": phone})


_WALLET_ACCOUNT, _CARD_ACCOUNT = Account.__table__.alias("wallet_account"), \
    Account.__table__.alias("card_account")


def _with_sources(table: type[PhoneBinding | Wallet], wallet_id: Any) -> Select[Any]:
    """One read of a wallet, its linked card and both balances, from ``table``."""
    return (select(wallet_id, _WALLET_ACCOUNT.c.balance, _WALLET_ACCOUNT.c.currency, Card.bank,
                   Card.last4, _CARD_ACCOUNT.c.balance, _CARD_ACCOUNT.c.currency)
            .select_from(table)
            .outerjoin(_WALLET_ACCOUNT, _WALLET_ACCOUNT.c.id == "wallet:" + wallet_id)
            .outerjoin(Card, Card.wallet_id == wallet_id)
            .outerjoin(_CARD_ACCOUNT, _CARD_ACCOUNT.c.id == "card:" + wallet_id))


# the binding's row lock serialises concurrent orders of one phone
_OF_PHONE = (_with_sources(PhoneBinding, PhoneBinding.wallet_id)
             .add_columns(outbox.opted_out(PhoneBinding.phone))
             .where(PhoneBinding.phone == bindparam("phone")).with_for_update(of=PhoneBinding))
_OF_WALLET = _with_sources(Wallet, Wallet.id).where(Wallet.id == bindparam("wallet"))


def _funding(row: Sequence[Any] | None) -> Funding | None:
    if row is None:
        return None
    wallet_id, balance, currency, bank, last4, card_balance, card_currency = row[:7]
    sources = []
    if balance is not None:
        sources.append(Source(ledger.wallet_account(wallet_id), "wallet", balance, currency))
    if bank is not None and card_balance is not None:
        sources.append(Source(ledger.card_account(wallet_id), "card", card_balance,
                              card_currency, bank, last4))
    return Funding(wallet_id, tuple(sources))


class Payer(NamedTuple):
    """A bound phone, as an order reads it."""

    funding: Funding
    sms_opted_out: bool  # the phone said STOP: no code SMS can reach it


def payer(session: Session, phone: str) -> Payer | None:
    """The wallet bound to ``phone``, what it can pay from and whether the phone takes SMS,
    in one read, its binding locked; None when the phone is bound to no wallet."""
    row = session.execute(_OF_PHONE, {"phone": phone}).first()
    found = _funding(row)
    return None if row is None or found is None else Payer(found, bool(row[7]))


def sources(session: Session, wallet_id: str) -> tuple[Source, ...]:
    """What the wallet can pay from, wallet first, for the viewer to choose from."""
    found = _funding(session.execute(_OF_WALLET, {"wallet": wallet_id}).first())
    return found.sources if found else ()


def card_of(session: Session, account_id: str) -> Card | None:
    """The card an account (``card:<wallet>``) is; None for any other account."""
    kind, wallet_id = account_id.split(":", 1)
    return session.get(Card, wallet_id) if kind == "card" else None


def bind_phone(session: Session, phone: str, wallet_id: str, now: datetime) -> bool:
    """Bind ``phone`` to the wallet unless it is bound already; say whether it is bound to it.

    A phone bound to another wallet stays so: rebinding needs that wallet's consent, which a
    payment page cannot give.
    """
    insert_ignore(session, PhoneBinding, phone=phone, wallet_id=wallet_id, created_at=now)
    binding = session.get(PhoneBinding, phone, populate_existing=True)
    return binding is not None and binding.wallet_id == wallet_id


def _find_wallet(session: Session, account: str, regions: tuple[str, ...]) -> Wallet | None:
    """The wallet named by its id or by a phone bound to it."""
    if _WALLET_ID.fullmatch(account) and (wallet := session.get(Wallet, account)) is not None:
        return wallet
    try:
        phone = phones.parse(account, regions)
    except InvalidInput:
        return None
    return bound_wallet(session, phone)


def sign_in(gw: Gateway, account: object, password: object) -> str:
    """Check a wallet's account (its id or a bound phone) and payment password; return its id.

    ``WAP_PASSWORD_MAX_ATTEMPTS`` wrong passwords in a row lock the wallet's page payments for
    ``WAP_LOCK_SECONDS``. The slow password hash is checked outside any transaction; the count
    is then updated under the wallet's row lock, so parallel guesses cannot exceed it.

    :raise InvalidInput: ``missing_credentials``, ``unknown_account`` or ``wrong_password``
        (with ``tries_left``).
    :raise RateLimited: ``wallet_locked`` (with ``retry_after`` seconds).
    """
    if not (isinstance(account, str) and isinstance(password, str)
            and account.strip() and password and len(account) <= 64 and len(password) <= 64):
        raise InvalidInput("enter the account and the payment password",
                           code="missing_credentials")
    settings = gw.settings
    with gw.db.read() as session:
        wallet = _find_wallet(session, account.strip(), settings.PHONE_COUNTRIES)
        locked_until = wallet.web_locked_until if wallet else None
    if wallet is None:
        check_password_hash(_DUMMY_HASH, password)
        raise InvalidInput("no wallet has this account", code="unknown_account")
    if locked_until is not None and locked_until > gw.clock():
        raise _locked(locked_until, gw.clock())
    right = check_password_hash(wallet.password_hash, password)
    with gw.db.transaction() as session:
        now = gw.clock()
        row = session.get(Wallet, wallet.id, with_for_update=True, populate_existing=True)
        assert row is not None
        if row.web_locked_until is not None and row.web_locked_until > now:
            failure: Exception = _locked(row.web_locked_until, now)
        elif right:
            row.web_failed_attempts, row.web_locked_until = 0, None
            return row.id
        else:
            row.web_failed_attempts += 1
            left = settings.WAP_PASSWORD_MAX_ATTEMPTS - row.web_failed_attempts
            if left > 0:
                failure = InvalidInput("the payment password is wrong", code="wrong_password",
                                       tries_left=left)
            else:
                row.web_failed_attempts = 0
                row.web_locked_until = now + timedelta(seconds=settings.WAP_LOCK_SECONDS)
                failure = _locked(row.web_locked_until, now)
    raise failure


def _locked(until: datetime, now: datetime) -> RateLimited:
    return RateLimited("too many wrong passwords: page payments of this wallet are locked",
                       code="wallet_locked", retry_after=max(1, int((until - now).total_seconds())))
