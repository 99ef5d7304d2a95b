"""The fault run's audit finds what it looks for: on a clean flow nothing but a pending order,
and on rows damaged one way per property, each of those (then rolled back)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.background import Worker
from gateway.store.models import JournalEntry, OrderEvent, OutboxMessage, Posting
from tests.conftest import CARD_ONLY, RICH, code_sent_to, order, reply
from tests.faults.audit import PROPERTIES, audit


def test_the_audit_passes_a_clean_flow_and_finds_each_kind_of_damage(client, seeded, clock):
    activated = order(client, RICH, device="tv-1").get_json()["id"]
    reply(client, RICH, code_sent_to(seeded, RICH))
    pending = order(client, CARD_ONLY, device="tv-2").get_json()["id"]
    Worker(seeded).run_once()  # the SMS are sent (by the log provider)
    with Session(seeded.db.engine) as session:  # never committed: rolled back on close
        assert audit(session) == {
            name: [f"order {pending} is awaiting_code"] if name == PROPERTIES[0] else []
            for name in PROPERTIES}

        money = JournalEntry(kind="fund", created_at=clock())  # money out of nowhere
        second_payment = JournalEntry(kind="charge", order_id=activated, created_at=clock())
        session.add_all([money, second_payment])
        session.flush()
        session.add(Posting(entry_id=money.id, account_id="merchant:CNY", amount=100))
        session.add(OrderEvent(device_id="tv-1", order_id=activated, status="paid",
                               at=clock()))  # the code accepted a second time
        sms = session.scalars(select(OutboxMessage)
                              .where(OutboxMessage.order_id == pending)).one()
        sms.status, sms.error = "failed", None  # ... without a reason
        session.flush()
        found = audit(session)
    assert found[PROPERTIES[0]] == [f"order {pending} is awaiting_code"]
    assert f"entry {money.id} sums to 100" in found[PROPERTIES[1]]
    assert f"activated order {activated} was paid 2 times" in found[PROPERTIES[2]]
    assert found[PROPERTIES[3]] == [f"sms #{sms.id} (code) is failed without a reason"]
    assert f"order {activated} became paid 2 times" in found[PROPERTIES[4]]
