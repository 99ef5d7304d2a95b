"""Double-entry ledger: the only code that moves money.

Every movement is a journal entry whose postings sum to zero. Customer accounts (a wallet, a
linked card, a TV device's stored value) keep their balance on the row and are debited with a
conditional UPDATE, so a balance can never go below zero however many orders race for it.
System accounts are only appended to:

    external:<CUR>  money entering from outside (seeding, top-ups); runs negative
    holds:<CUR>     funds reserved for pending orders
    merchant:<CUR>  captured revenue
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from gateway.store.db import insert_ignore, one_of, padded, rowcount
from gateway.store.models import Account, Hold, JournalEntry, Posting
from gateway.store.writes import insert_at_commit, insert_rows, write_at_commit

__all__ = [
    "InsufficientFunds", "Settled", "audit", "balance", "capture", "card_account", "charge",
    "device_account", "fund", "lock_accounts", "merchant_account", "open_account",
    "open_funded", "open_system_accounts", "place_hold", "release", "wallet_account",
]

_ACCOUNTS, _ENTRIES, _HOLDS = Account.__table__, JournalEntry.__table__, Hold.__table__
# Hot statements are built once: building one costs more Python than running it.
_MOVE = (update(_ACCOUNTS)
         .where(_ACCOUNTS.c.id == bindparam("account"),
                _ACCOUNTS.c.currency == bindparam("in_currency"),
                _ACCOUNTS.c.balance + bindparam("delta") >= 0)
         .values(balance=_ACCOUNTS.c.balance + bindparam("delta")))
_HELD_NOW = "ledger.held_now"  # session.info: orders whose hold this transaction placed
_SETTLE = (update(_HOLDS).where(_HOLDS.c.order_id == bindparam("order"), _HOLDS.c.status == "held")
           .values(status=bindparam("to_status"), settled_at=bindparam("at"))
           .returning(_HOLDS.c.account_id, _HOLDS.c.amount, _HOLDS.c.currency))
_HOLD_OF = select(_HOLDS.c.order_id).where(_HOLDS.c.order_id == bindparam("order"))
# Two statements, not one with OR: "id IN (list) OR id IN (subquery)" makes PostgreSQL scan
# every account (and, planned while holds was small, every hold) to lock a few.
_HELD_BY = select(_HOLDS.c.order_id, _HOLDS.c.account_id, _HOLDS.c.amount,
                  _HOLDS.c.currency).where(
    one_of(_HOLDS.c.order_id, "orders"), _HOLDS.c.status == "held")
# many holds settled in one statement, at commit: what ``lock_accounts`` read for them is theirs
_SETTLE_MANY = (update(_HOLDS).where(one_of(_HOLDS.c.order_id, "orders"),
                                     _HOLDS.c.status == "held")
                .values(status=bindparam("to_status"), settled_at=bindparam("at")))
_HELD = "ledger.held"  # session.info: order -> its hold (None: none held), as lock_accounts read
_SETTLING = "ledger.settling"  # session.info: (status, when) -> orders whose hold goes so
_LOCK = (select(_ACCOUNTS.c.id).where(one_of(_ACCOUNTS.c.id, "accounts"))
         .order_by(_ACCOUNTS.c.id).with_for_update(key_share=True))
CUSTOMER_KINDS = frozenset({"wallet", "card", "device"})
SYSTEM_KINDS = frozenset({"external", "holds", "merchant"})


class InsufficientFunds(Exception):
    """The account cannot cover the debit; nothing was written."""


class UnusableAccount(ValueError):
    """The account does not exist or keeps another currency; nothing was written."""


def wallet_account(wallet_id: str) -> str:
    return f"wallet:{wallet_id}"


def card_account(wallet_id: str) -> str:
    return f"card:{wallet_id}"


def device_account(device_id: str) -> str:
    return f"device:{device_id}"


def merchant_account(currency: str) -> str:
    return _system("merchant", currency)


def _system(kind: str, currency: str) -> str:
    return f"{kind}:{currency}"


def _kind(account_id: str) -> str:
    return account_id.split(":", 1)[0]


def open_account(session: Session, account_id: str, currency: str) -> None:
    insert_ignore(session, Account, id=account_id, kind=_kind(account_id), currency=currency,
                  balance=0)


def open_system_accounts(session: Session, currency: str) -> None:
    for kind in sorted(SYSTEM_KINDS):
        open_account(session, _system(kind, currency), currency)


def _post(session: Session, kind: str, legs: Sequence[tuple[str, int]], currency: str,
          now: datetime, order_id: str | None = None) -> None:
    """Write one balanced entry in one currency.

    An entry debits at most one customer account and debits it first, so an
    ``InsufficientFunds`` refusal leaves nothing written and the caller may try another source.
    """
    if sum(amount for _, amount in legs) != 0 or any(amount == 0 for _, amount in legs):
        raise ValueError(f"unbalanced or empty legs in {kind} entry: {legs}")
    customer = [(a, m) for a, m in legs if _kind(a) in CUSTOMER_KINDS]
    system = [a for a, _ in legs if _kind(a) not in CUSTOMER_KINDS]
    if any(a != _system(_kind(a), currency) for a in system):
        raise ValueError(f"{kind} entry mixes currencies: {legs} in {currency}")
    debits = [leg for leg in customer if leg[1] < 0]
    if len(debits) > 1:
        raise ValueError("an entry debits at most one customer account")
    sql = session.connection()  # plain SQL: nothing here is read back as an object
    for account_id, amount in debits + [leg for leg in customer if leg[1] > 0]:
        moved = sql.execute(_MOVE, {"account": account_id, "in_currency": currency,
                                    "delta": amount})
        if moved.rowcount != 1:
            account = session.get(Account, account_id)
            if amount > 0 or account is None or account.currency != currency:
                raise UnusableAccount(f"{account_id} is missing or not in {currency}")
            raise InsufficientFunds(account_id)
    # The balances moved above; the entry and its postings are written at commit, with the
    # transaction's other rows: nothing reads the journal back within a transaction.
    entry = insert_at_commit(session, JournalEntry, {"kind": kind, "order_id": order_id,
                                                     "created_at": now}, keyed=True)
    for account_id, amount in legs:
        insert_at_commit(session, Posting, {"entry_id": entry, "account_id": account_id,
                                            "amount": amount})


def fund(session: Session, account_id: str, amount: int, currency: str, now: datetime) -> None:
    """Bring money from outside into a customer account (seeding, top-up)."""
    _post(session, "fund", [(_system("external", currency), -amount), (account_id, amount)],
          currency, now)


def open_funded(session: Session, accounts: Sequence[tuple[str, int]], currency: str,
                now: datetime) -> None:
    """Open new customer accounts, each with its opening balance: what ``open_account`` and
    ``fund`` do for one (an entry ``fund`` a balance, debiting ``external``), for many in a few
    statements (seeding). An account that exists already fails the insert, and so the
    transaction: the caller opens only accounts it found missing."""
    if any(amount < 0 or _kind(a) not in CUSTOMER_KINDS for a, amount in accounts):
        raise ValueError(f"opening balances must be customer accounts' and >= 0: {accounts}")
    insert_rows(session, Account, *({"id": account_id, "kind": _kind(account_id),
                                     "currency": currency, "balance": amount}
                                    for account_id, amount in accounts))
    external = _system("external", currency)
    for account_id, amount in accounts:
        if amount:
            entry = insert_at_commit(session, JournalEntry, {
                "kind": "fund", "order_id": None, "created_at": now}, keyed=True)
            insert_at_commit(session, Posting, {"entry_id": entry, "account_id": external,
                                                "amount": -amount})
            insert_at_commit(session, Posting, {"entry_id": entry, "account_id": account_id,
                                                "amount": amount})


def place_hold(session: Session, order_id: str, source: str, amount: int, currency: str,
               now: datetime) -> bool:
    """Reserve ``amount`` on ``source`` for the order; False, with nothing written, when the
    source no longer covers it (another payment took the money since it was read)."""
    try:
        _post(session, "hold", [(source, -amount), (_system("holds", currency), amount)],
              currency, now, order_id)
    except (InsufficientFunds, UnusableAccount):
        return False
    insert_at_commit(session, Hold, {"order_id": order_id, "account_id": source,
                                     "amount": amount, "currency": currency, "status": "held",
                                     "created_at": now})
    session.info.setdefault(_HELD_NOW, set()).add(order_id)
    return True


def charge(session: Session, order_id: str, source: str, credit: str, amount: int,
           currency: str, now: datetime) -> None:
    """Pay an order at once from ``source`` to ``credit`` (a payment page: nothing to hold).

    :raise InsufficientFunds: ``source`` cannot cover it; nothing was written.
    """
    _post(session, "charge", [(source, -amount), (credit, amount)], currency, now, order_id)


class Settled(NamedTuple):
    """A hold just captured or released."""

    account_id: str
    amount: int
    currency: str


def _settle(session: Session, order_id: str, status: str, now: datetime) -> Settled:
    """Move a hold out of ``held`` exactly once, or raise if it was already settled.

    A hold ``lock_accounts`` read (the caller holds the order's lock, so nobody else settles
    it) is settled at the commit, with the transaction's other holds in one statement.
    """
    read = session.info.get(_HELD, {})
    if order_id in read:
        if (hold := read[order_id]) is None:
            raise RuntimeError(f"hold of order {order_id} is not held")
        read[order_id] = None  # settled now, whatever the database says until the commit
        session.info.setdefault(_SETTLING, {}).setdefault((status, now), []).append(order_id)
        write_at_commit(session, _write_settled)
        return hold
    row = session.connection().execute(
        _SETTLE, {"order": order_id, "to_status": status, "at": now}).first()
    if row is None:
        raise RuntimeError(f"hold of order {order_id} is not held")
    return Settled(*row)


def _write_settled(session: Session) -> None:
    for (status, now), orders in session.info.pop(_SETTLING, {}).items():
        settled = rowcount(session.connection().execute(_SETTLE_MANY, {
            "orders": padded(orders), "to_status": status, "at": now}))
        if settled != len(orders):  # the order lock should have made this impossible
            raise RuntimeError(f"{len(orders) - settled} of the holds of {orders} were settled "
                               "by another transaction")


def _refuse_held_now(session: Session, order_id: str) -> None:
    """A hold is written at its transaction's commit: releasing it in that transaction would
    find nothing and leave the money held (a capture finds nothing to settle, and raises)."""
    if order_id in session.info.get(_HELD_NOW, ()):
        raise RuntimeError(f"the hold of order {order_id} is settled where it was placed")


def capture(session: Session, order_id: str, now: datetime) -> Settled:
    """Turn the order's hold into merchant revenue."""
    hold = _settle(session, order_id, "captured", now)
    holds = _system("holds", hold.currency)
    merchant = merchant_account(hold.currency)
    _post(session, "capture", [(holds, -hold.amount), (merchant, hold.amount)], hold.currency,
          now, order_id)
    return hold


def release(session: Session, order_id: str, now: datetime) -> Settled | None:
    """Give a held amount back to its source; no-op for an order that holds nothing."""
    read = session.info.get(_HELD, {})
    if order_id in read:
        if read[order_id] is None:
            return None
    elif session.connection().scalar(_HOLD_OF, {"order": order_id}) is None:
        _refuse_held_now(session, order_id)
        return None
    hold = _settle(session, order_id, "released", now)
    holds = _system("holds", hold.currency)
    _post(session, "release", [(holds, -hold.amount), (hold.account_id, hold.amount)],
          hold.currency, now, order_id)
    return hold


def lock_accounts(session: Session, account_ids: Iterable[str] = (), *,
                  held_by: Sequence[str] = ()) -> None:
    """Lock customer accounts in one fixed order: ``account_ids`` and the accounts the orders
    ``held_by`` hold money on.

    A transaction about to move money on several accounts takes these locks first, so two
    such transactions can never wait on each other's accounts in opposite orders.
    """
    sql = session.connection()
    accounts = set(account_ids)
    if held_by:
        read: dict[str, Settled | None] = session.info.setdefault(_HELD, {})
        found = {order_id: Settled(*hold)
                 for order_id, *hold in sql.execute(_HELD_BY, {"orders": padded(held_by)})}
        accounts.update(hold.account_id for hold in found.values())
        for order_id in held_by:  # one read before stands: a hold settled since is not held
            read.setdefault(order_id, found.get(order_id))
    if accounts:
        sql.execute(_LOCK, {"accounts": padded(sorted(accounts))})


def balance(session: Session, account_id: str) -> int:
    if _kind(account_id) in CUSTOMER_KINDS:
        return session.scalar(select(Account.balance).where(Account.id == account_id)) or 0
    total = session.scalar(select(func.sum(Posting.amount)).where(Posting.account_id == account_id))
    return int(total or 0)


def audit(session: Session) -> list[str]:
    """Check the ledger's invariants from the database alone; return what is violated."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(Posting.entry_id, func.sum(Posting.amount))
        .group_by(Posting.entry_id)
        .having(func.sum(Posting.amount) != 0)
    ).all()
    problems += [f"entry {entry} sums to {total}" for entry, total in unbalanced]
    mixed = session.execute(
        select(Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .group_by(Posting.entry_id)
        .having(func.count(func.distinct(Account.currency)) > 1)
    ).scalars().all()
    problems += [f"entry {entry} mixes currencies" for entry in mixed]
    sums = dict(
        session.execute(select(Posting.account_id, func.sum(Posting.amount))
                        .group_by(Posting.account_id)).all()
    )
    for account in session.scalars(select(Account)):
        posted = int(sums.get(account.id) or 0)
        if account.kind in CUSTOMER_KINDS and account.balance != posted:
            problems.append(f"{account.id} balance {account.balance} != postings {posted}")
        if account.balance < 0 or (account.kind in CUSTOMER_KINDS and posted < 0):
            problems.append(f"{account.id} is negative")
    held = dict(
        session.execute(select(Hold.currency, func.sum(Hold.amount))
                        .where(Hold.status == "held").group_by(Hold.currency)).all()
    )
    for currency in {a.currency for a in session.scalars(select(Account))}:
        in_holds = int(sums.get(_system("holds", currency)) or 0)
        if in_holds != int(held.get(currency) or 0):
            problems.append(f"holds:{currency} has {in_holds} but open holds total "
                            f"{held.get(currency) or 0}")
    return problems
