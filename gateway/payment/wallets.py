"""Payment role: which wallet a phone is bound to, what can pay from it, and page sign-in."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from ipaddress import ip_address, ip_network
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from gateway import phones
from gateway.config import Settings
from gateway.context import Gateway
from gateway.domain.errors import InvalidInput, RateLimited
from gateway.domain.funding import Funding, Source
from gateway.payment import ledger
from gateway.store import outbox
from gateway.store.db import insert_ignore
from gateway.store.models import Account, Card, PhoneBinding, Wallet
from gateway.store.redis_store import Limit

__all__ = ["Payer", "bind_phone", "bound_wallet", "card_of", "payer", "sign_in", "sources",
           "unlock"]

log = logging.getLogger(__name__)

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


_TRIES_PER_CLIENT_HOUR = 30  # sign-in tries of one address, any accounts; a right one is free


def sign_in(gw: Gateway, account: object, password: object, *, client: str) -> str:
    """Check a wallet's account (its id or a bound phone) and payment password from the client
    address ``client``; return the wallet's id.

    Throttled as NIST SP 800-63B 5.2.2 asks, so that a guesser is slowed rather than the owner
    locked out: a client waits longer and longer between tries after
    ``WAP_PASSWORD_MAX_ATTEMPTS`` wrong passwords for one account (up to ``WAP_LOCK_SECONDS``;
    each try counts as wrong until it proves right, so tries sent at once wait too), and may
    try 30 times an hour in all. After ``WAP_PASSWORD_LOCK_AFTER`` wrong passwords in a row from
    anywhere, the wallet's page payments stop until the operator's ``wallets unlock``, and its
    phones are told by SMS; its payments by SMS code go on.

    An unknown account, a wrong password and a stopped wallet get the same answer, after the
    same slow hash and the same round trip. The count is updated under the wallet's row lock,
    so parallel guesses cannot exceed the cap.

    :raise InvalidInput: ``missing_credentials``, or ``sign_in_failed``.
    :raise RateLimited: ``sign_in_limited`` (with ``retry_after`` seconds).
    """
    if not (isinstance(account, str) and isinstance(password, str)
            and account.strip() and password and len(account) <= 64 and len(password) <= 64):
        raise InvalidInput("enter the account and the payment password",
                           code="missing_credentials")
    settings, now = gw.settings, gw.clock()
    with gw.db.read() as session:
        wallet = _find_wallet(session, account.strip(), settings.PHONE_COUNTRIES)
    who = wallet.id if wallet is not None else _unknown(account.strip(), settings)
    client = _client_block(client)
    attempt = secrets.token_hex(8)
    per_client = Limit("sign_in_limited", f"client:{client}:sign-ins",
                       _TRIES_PER_CLIENT_HOUR, 3600)
    wait = gw.sign_in_delays.take(who, client, now, free=settings.WAP_PASSWORD_MAX_ATTEMPTS,
                                  longest=settings.WAP_LOCK_SECONDS)
    if not wait:
        refusal = gw.limiter.acquire([per_client], attempt, now)
        wait = refusal.retry_after if refusal else 0
    if wait:
        raise RateLimited("too many sign-in attempts", code="sign_in_limited", retry_after=wait)
    usable = wallet if wallet is not None and \
        wallet.web_failed_attempts < settings.WAP_PASSWORD_LOCK_AFTER else None
    right = check_password_hash(usable.password_hash if usable else _DUMMY_HASH, password) \
        and usable is not None
    right = _count(gw, wallet.id if wallet is not None else None, right)
    if right:
        gw.limiter.forget(per_client, attempt)
        gw.sign_in_delays.cleared(who, client)
        return who
    raise InvalidInput("the account or the payment password is wrong", code="sign_in_failed")


def _unknown(account: str, settings: Settings) -> str:
    """The bucket of an account no wallet has: a phone number however it is written, as a
    wallet's are (its spellings share one), else the text."""
    try:
        return "unknown:" + phones.parse(account, settings.PHONE_COUNTRIES)
    except InvalidInput:
        return "unknown:" + account.lower()


def _client_block(address: str) -> str:
    """A client address as limits count it: an IPv6 client is its /64 (one subscriber's)."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    return str(ip_network(f"{parsed}/64", strict=False)) if parsed.version == 6 else address


def _count(gw: Gateway, wallet_id: str | None, right: bool) -> bool:
    """Record a try of the wallet's password under its row lock; return whether it signs in
    (not when the wallet stopped meanwhile). The try that reaches the cap stops the wallet's
    page payments and tells its phones. An unknown account (None) costs the same round trip,
    so that its answer takes as long."""
    cap = gw.settings.WAP_PASSWORD_LOCK_AFTER
    with gw.db.transaction() as session:
        row = session.get(Wallet, wallet_id or "", with_for_update=True, populate_existing=True)
        if row is None or row.web_failed_attempts >= cap:
            return False
        if right:
            row.web_failed_attempts = 0
            return True
        row.web_failed_attempts += 1
        if row.web_failed_attempts == cap:
            now = gw.clock()
            phones_of = session.scalars(select(PhoneBinding.phone)
                                        .where(PhoneBinding.wallet_id == wallet_id))
            for phone in phones_of:
                outbox.queue(session, to=phone, kind="notice", now=now,
                             body=gw.texts.render("page_payments_stopped"))
            log.warning("wallet %s: page payments stopped after %d wrong passwords in a row",
                        wallet_id, cap)
        return False


def unlock(gw: Gateway, wallet_id: str) -> bool:
    """Let the wallet pay on pages again (the operator, once its owner asked); say whether the
    wallet exists."""
    with gw.db.transaction() as session:
        row = session.get(Wallet, wallet_id, with_for_update=True)
        if row is None:
            return False
        row.web_failed_attempts = 0
    log.info("wallet %s: page payments unlocked", wallet_id)
    return True
