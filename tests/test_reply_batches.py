"""Replies that arrive together (an SMPP worker's batch) are acted on in one transaction, each
exactly once, each phone's in the order they came; one that fails costs the others nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from gateway import metrics
from gateway.backend import activation
from gateway.messaging import inbound
from gateway.payment import ledger
from gateway.store import outbox
from gateway.store.models import Hold, JournalEntry, Order
from tests.conftest import code_sent_to, order, sms_to, stored_order
from tests.processes import seed_payers

PACKAGE = {"id": "batch_month", "name": "Batch 月卡", "price": 3000, "currency": "CNY",
           "period_days": 30}
PHONES = [f"+861390000{n:04d}" for n in range(10)]


@pytest.fixture
def orders(client, gw, tmp_path) -> dict[str, str]:
    """One order waiting for its code for each phone (three wallets share the phones, so a
    batch moves money on the same accounts for several phones); phone -> order id."""
    seed_payers(gw, tmp_path, PACKAGE, PHONES, 3, "batch-tv")
    made = {}
    for n, phone in enumerate(PHONES):
        created = order(client, phone, PACKAGE["id"], device=f"tv-batch-{n}")
        assert created.status_code == 201, created.get_json()
        made[phone] = created.get_json()["id"]
    return made


def captures(gw) -> dict[str, int]:
    """Capture entries by order."""
    with gw.db.read() as session:
        return dict(session.execute(
            select(JournalEntry.order_id, func.count()).where(JournalEntry.kind == "capture")
            .group_by(JournalEntry.order_id)).all())


def audit(gw) -> list[str]:
    with gw.db.read() as session:
        return ledger.audit(session)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_batch_of_replies_for_many_phones_confirms_each_once_in_one_commit(gw, orders):
    codes = {phone: code_sent_to(gw, phone) for phone in PHONES}
    first, second = PHONES[0], PHONES[1]
    batch = ([(first, wrong(codes[first]))]  # a wrong try, then the right code: in order
             + [(phone, codes[phone]) for phone in PHONES]
             + [(second, codes[second])])  # the same code again: already used
    commits = []

    def committed(connection):
        commits.append(connection)

    event.listen(gw.db.engine, "commit", committed)
    try:
        dealt = inbound.receive_together(gw, batch)
    finally:
        event.remove(gw.db.engine, "commit", committed)

    assert dealt == [True] * len(batch)
    assert len(commits) == 1
    for phone, order_id in orders.items():
        assert stored_order(gw, order_id).status == "activated"
        assert len(sms_to(gw, phone, "confirmed")) == 1
    assert captures(gw) == {order_id: 1 for order_id in orders.values()}
    assert stored_order(gw, orders[first]).code_attempts == 1
    assert [m.body for m in sms_to(gw, first, "reply")] == [
        gw.texts.render("wrong_code", left=gw.settings.CODE_MAX_ATTEMPTS - 1)]
    assert [m.body for m in sms_to(gw, second, "reply")] == [gw.texts.render("code_used")]
    assert audit(gw) == []


def test_a_reply_that_fails_in_a_batch_neither_loses_nor_doubles_the_others(
        gw, orders, monkeypatch):
    broken_phone = PHONES[3]
    codes = {phone: code_sent_to(gw, phone) for phone in PHONES}
    really_activate = activation.activate

    def activate(session, device_id, package, now):
        if device_id == "tv-batch-3":
            raise RuntimeError("the entitlements table is having a bad day")
        return really_activate(session, device_id, package, now)

    monkeypatch.setattr(activation, "activate", activate)
    dealt = inbound.receive_together(gw, [(phone, codes[phone]) for phone in PHONES])

    assert dealt == [phone != broken_phone for phone in PHONES]  # that one comes again
    broken = stored_order(gw, orders[broken_phone])
    assert broken.status == "awaiting_code" and broken.code_attempts == 0
    assert captures(gw) == {orders[p]: 1 for p in PHONES if p != broken_phone}
    assert all(stored_order(gw, orders[p]).status == "activated"
               for p in PHONES if p != broken_phone)
    assert audit(gw) == []

    monkeypatch.setattr(activation, "activate", really_activate)
    assert inbound.receive_together(gw, [(broken_phone, codes[broken_phone])]) == [True]
    assert stored_order(gw, orders[broken_phone]).status == "activated"
    assert captures(gw) == {order_id: 1 for order_id in orders.values()}
    assert sum(len(sms_to(gw, phone, "confirmed")) for phone in PHONES) == len(PHONES)
    assert audit(gw) == []


def test_a_batch_acts_on_commands_and_bad_senders_without_holding_up_codes(gw, orders):
    phone, other = PHONES[4], PHONES[5]
    dealt = inbound.receive_together(gw, [
        ("not a phone", "123456"),  # refused, acknowledged: the carrier must not resend it
        (other, "HELP"),  # a command: acted on alone
        (other, code_sent_to(gw, other)),  # that phone's code after its command, in order
        (phone, code_sent_to(gw, phone)),
    ])
    assert dealt == [True, True, True, True]
    assert stored_order(gw, orders[phone]).status == "activated"
    assert stored_order(gw, orders[other]).status == "activated"
    with gw.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)
                              .where(Order.status == "activated")) == 2


def test_a_batch_sends_no_confirmation_to_a_phone_that_opted_out(gw, orders, clock):
    quiet = PHONES[6]
    codes = {phone: code_sent_to(gw, phone) for phone in PHONES[6:9]}
    with gw.db.transaction() as session:
        outbox.opt_out(session, quiet, "sms STOP", clock())
    assert inbound.receive_together(gw, list(codes.items())) == [True] * 3
    assert all(stored_order(gw, orders[phone]).status == "activated" for phone in codes)
    [refused] = sms_to(gw, quiet, "confirmed")
    assert (refused.status, refused.error) == ("failed", "the recipient opted out")
    assert [m.status for p in PHONES[7:9] for m in sms_to(gw, p, "confirmed")] == ["queued"] * 2


def test_an_effect_failing_after_the_commit_does_not_act_on_the_batch_again(gw, orders):
    """The batch is committed: a failing after-commit handler (a counter, a stream wake-up)
    must not make it look failed, or each reply would be acted on again, alone."""
    phone = PHONES[9]

    def broken(_items):
        raise RuntimeError("the metrics folder is full")

    gw.db.on_commit(metrics.COUNTED, broken)
    assert inbound.receive_together(gw, [(phone, code_sent_to(gw, phone))]) == [True]
    assert stored_order(gw, orders[phone]).status == "activated"
    assert sms_to(gw, phone, "reply") == []  # no "code already used" from a second go
    assert captures(gw) == {orders[phone]: 1}


def test_two_payments_for_one_tv_in_a_batch_extend_its_package_twice(client, gw, tmp_path,
                                                                      clock):
    """The first starts the entitlement and the second extends it, though neither is written
    until the batch commits; both holds are captured once."""
    phones = ["+8613900009001", "+8613900009002"]
    seed_payers(gw, tmp_path, PACKAGE, phones, 2, "same-tv")
    made = [order(client, phone, PACKAGE["id"], device="tv-twice").get_json()["id"]
            for phone in phones]
    batch = [(phone, code_sent_to(gw, phone)) for phone in phones]
    assert inbound.receive_together(gw, batch) == [True, True]
    with gw.db.read() as session:
        [entitlement] = activation.active_entitlements(session, "tv-twice", clock())
        held = dict(session.execute(select(Hold.order_id, Hold.status)
                                    .where(Hold.order_id.in_(made))).all())
    assert entitlement.active_until == clock() + timedelta(days=2 * PACKAGE["period_days"])
    assert held == {order_id: "captured" for order_id in made}
    assert captures(gw) == {order_id: 1 for order_id in made}
    assert audit(gw) == []


def test_a_hold_released_once_stays_released_when_its_accounts_are_locked_again(gw, orders,
                                                                                 clock):
    """The hold's row says "held" until the commit: a second lock must not read it back as
    held, or a second release would pay the money back twice."""
    order_id = orders[PHONES[0]]
    with gw.db.transaction() as session:
        ledger.lock_accounts(session, held_by=[order_id])
        first = ledger.release(session, order_id, clock())
        ledger.lock_accounts(session, held_by=[order_id])
        second = ledger.release(session, order_id, clock())
    assert first is not None and second is None
    with gw.db.read() as session:
        assert session.scalar(select(Hold.status).where(Hold.order_id == order_id)) == "released"
    assert audit(gw) == []
