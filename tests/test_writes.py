"""Rows written at a transaction's commit (``gateway.store.writes``): each journal entry with
its own postings (on PostgreSQL in one statement, the rows as arrays), however many there
are."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select, text

from gateway.context import Gateway
from gateway.payment import ledger
from gateway.store.models import JournalEntry, Posting

WALLETS = [ledger.wallet_account(f"writes-{i}") for i in range(3)]


def fund_in_one_transaction(gw: Gateway, now, amounts: list[int]) -> None:
    with gw.db.transaction() as session:
        ledger.open_system_accounts(session, "CNY")
        for account in WALLETS:
            ledger.open_account(session, account, "CNY")
        for i, amount in enumerate(amounts):
            ledger.fund(session, WALLETS[i % len(WALLETS)], amount, "CNY", now)


def funding_entries(gw: Gateway) -> list[list[tuple[str, int]]]:
    """Each funding entry of the test's wallets, as its postings."""
    with gw.db.read() as session:
        rows = session.execute(
            select(Posting.entry_id, Posting.account_id, Posting.amount)
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(JournalEntry.kind == "fund", JournalEntry.id.in_(
                select(Posting.entry_id).where(Posting.account_id.in_(WALLETS))))
            .order_by(Posting.entry_id, Posting.amount)).all()
    entries: dict[int, list[tuple[str, int]]] = {}
    for entry_id, account, amount in rows:
        entries.setdefault(entry_id, []).append((account, amount))
    return list(entries.values())


def test_entries_posted_in_one_transaction_each_keep_their_own_postings(gw, clock):
    amounts = [100, 250, 7, 4000, 1]
    fund_in_one_transaction(gw, clock(), amounts)
    assert funding_entries(gw) == [
        [("external:CNY", -amount), (WALLETS[i % 3], amount)] for i, amount in enumerate(amounts)]
    with gw.db.read() as session:
        assert ledger.audit(session) == []
        assert [ledger.balance(session, account) for account in WALLETS] == [4100, 251, 7]


def test_a_transaction_of_thousands_of_entries_is_written_whole(gw, clock):
    amounts = [1 + i % 97 for i in range(4000)]  # 4,000 entries, 8,000 postings
    fund_in_one_transaction(gw, clock(), amounts)
    entries = funding_entries(gw)
    assert len(entries) == 4000
    assert Counter(account for entry in entries for account, _ in entry) == {
        "external:CNY": 4000, WALLETS[0]: 1334, WALLETS[1]: 1333, WALLETS[2]: 1333}
    assert all(sum(amount for _, amount in entry) == 0 for entry in entries)
    with gw.db.read() as session:
        assert ledger.audit(session) == []
        assert sum(ledger.balance(session, account) for account in WALLETS) == sum(amounts)


def test_rows_of_a_transaction_that_fails_are_not_written(gw, clock):
    with pytest.raises(RuntimeError), gw.db.transaction() as session:
        ledger.open_system_accounts(session, "CNY")
        ledger.open_account(session, WALLETS[0], "CNY")
        ledger.fund(session, WALLETS[0], 500, "CNY", clock())
        raise RuntimeError("the use case fails after posting")
    assert funding_entries(gw) == []
    with gw.db.read() as session:
        assert ledger.balance(session, WALLETS[0]) == 0


def test_times_written_at_commit_are_utc_whatever_the_servers_time_zone(gw, clock):
    """The rows go as arrays cast to the columns' types: an aware time must be made naive UTC
    first, as for any other statement, or the cast turns it to the server's zone."""
    if gw.db.dialect != "postgresql":
        pytest.skip("SQLite has no time zone of its own")
    with gw.db.transaction() as session:
        session.execute(text("SET LOCAL TIME ZONE 'Asia/Shanghai'"))
        ledger.open_system_accounts(session, "CNY")
        ledger.open_account(session, WALLETS[0], "CNY")
        ledger.fund(session, WALLETS[0], 500, "CNY", clock())
    with gw.db.read() as session:
        written = session.scalar(select(JournalEntry.created_at).join(
            Posting, Posting.entry_id == JournalEntry.id).where(Posting.account_id == WALLETS[0]))
    assert written == clock()
