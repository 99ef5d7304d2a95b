"""Rows written at a transaction's commit (``gateway.store.writes``): each journal entry with
its own postings (on PostgreSQL in one statement, each table's rows as JSON), however many
there are; rows written together, and rows picked by a list of values, whatever their text."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select, text

from gateway.context import Gateway
from gateway.payment import ledger
from gateway.store.db import one_of, padded
from gateway.store.models import JournalEntry, OutboxMessage, Posting
from gateway.store.writes import insert_rows

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
    """The rows go as JSON read into the columns' types: an aware time must be made naive UTC
    first, as for any other statement, or the server would read it in its own zone."""
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


AWKWARD_TEXTS = ['【TV Pay】"引号" \\ 反斜杠', "line\nbreak\ttab", "emoji 😀 and ' quote", "{}[],:",
                 "null", ""]


def test_many_rows_written_together_keep_every_value(gw, clock):
    now = clock()
    rows = [{"to_phone": f"+861380013{i:04d}", "kind": "link",
             "body": AWKWARD_TEXTS[i % len(AWKWARD_TEXTS)], "redacted_body": f"#{i}",
             "status": "queued", "expires_at": None if i % 2 else now,
             "created_at": now, "updated_at": now} for i in range(300)]
    with gw.db.transaction() as session:
        insert_rows(session, OutboxMessage, *rows)
    with gw.db.read() as session:
        written = session.execute(
            select(OutboxMessage.to_phone, OutboxMessage.body, OutboxMessage.redacted_body,
                   OutboxMessage.expires_at, OutboxMessage.created_at)
            .where(OutboxMessage.to_phone.like("+861380013%")).order_by(OutboxMessage.id)).all()
    assert [tuple(row) for row in written] == [
        (row["to_phone"], row["body"], row["redacted_body"], row["expires_at"], now)
        for row in rows]


@pytest.mark.parametrize("count", [1, 7, 300])
def test_one_of_picks_exactly_the_rows_named(gw, clock, count):
    now = clock()
    phones = [f"+861390013{i:04d}" for i in range(400)]
    with gw.db.transaction() as session:
        insert_rows(session, OutboxMessage, *(
            {"to_phone": phone, "kind": "link", "body": "b", "redacted_body": "b",
             "status": "queued", "created_at": now, "updated_at": now} for phone in phones))
    wanted = phones[::3][:count]
    with gw.db.read() as session:
        found = session.scalars(select(OutboxMessage.to_phone)
                                .where(one_of(OutboxMessage.to_phone, "phones")),
                                {"phones": padded(wanted)}).all()
        ids = session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.to_phone.in_(wanted))).all()
        by_id = session.scalars(select(OutboxMessage.to_phone)
                                .where(one_of(OutboxMessage.id, "ids")),
                                {"ids": padded(ids)}).all()
    assert sorted(found) == sorted(by_id) == sorted(wanted)
