"""What the service holds about a phone number: exported, erased on request (all but what the
ledger keeps, masked), and old SMS dropped after RETENTION_DAYS."""

from __future__ import annotations

import json

from sqlalchemy import select

from gateway.background import Worker
from gateway.store.models import Base, OutboxMessage
from tests.conftest import RICH, UNBOUND, balance, code_sent_to, order, reply, sms_to
from tests.test_pairing_and_retry import pairing_code

NATIONAL = RICH.removeprefix("+86")  # 13800138000


def everything_stored(gw) -> str:
    """Every row of every table, as text."""
    with gw.db.read() as session:
        return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in session.execute(select(table)))


def test_export_prints_everything_held_about_the_number(app, client, seeded):
    paid = order(client, RICH, "vip_month", device="tv-1").get_json()
    reply(client, RICH, code_sent_to(seeded, RICH))
    reply(client, RICH, f"BIND {pairing_code(client, 'tv-2')['code']}")
    order(client, UNBOUND, device="tv-3")  # someone else's
    result = app.test_cli_runner().invoke(args=["privacy", "export", NATIONAL])
    assert result.exit_code == 0, result.output
    held = json.loads(result.output)
    assert held["phone"] == RICH
    assert held["wallet_binding"]["wallet_id"] == "w-rich"
    assert [tv["device_id"] for tv in held["paired_tvs"]] == ["tv-2"]
    assert [(o["id"], o["status"], o["amount"]) for o in held["orders"]] == \
        [(paid["id"], "activated", 3000)]
    assert {m["kind"] for m in held["sms"]} >= {"code", "confirmed", "reply"}
    assert UNBOUND not in result.output
    bad = app.test_cli_runner().invoke(args=["privacy", "export", "12345"])
    assert bad.exit_code != 0 and "phone" in bad.output


def test_erase_leaves_the_number_nowhere_but_the_ledger_keeps_its_money(app, client, seeded,
                                                                      clock):
    paid = order(client, RICH, "vip_month", device="tv-1").get_json()
    reply(client, RICH, code_sent_to(seeded, RICH))
    reply(client, RICH, f"BIND {pairing_code(client, 'tv-2')['code']}")
    pending = order(client, RICH, "vip_year", device="tv-4").get_json()  # its SMS not sent
    Worker(seeded).run_once()
    order(client, UNBOUND, device="tv-3")
    before = balance(seeded, "wallet:w-rich")
    assert NATIONAL in everything_stored(seeded)

    runner = app.test_cli_runner()
    erased = runner.invoke(args=["privacy", "erase", NATIONAL])
    assert erased.exit_code == 0, erased.output
    for line in ("pending orders cancelled: 1", "wallet binding removed: 1", "TVs unpaired: 1",
                 "orders masked: 2"):
        assert line in erased.output
    assert client.get(f"/api/v1/orders/{pending['id']}").get_json()["status"] == "cancelled"
    stored = everything_stored(seeded)
    assert NATIONAL not in stored and RICH not in stored
    assert UNBOUND in stored  # nobody else's
    # What the ledger must keep: the money, the order's amount and a masked number.
    assert balance(seeded, "wallet:w-rich") == before + pending["amount"]  # its hold released
    assert balance(seeded, "holds:CNY") == 0
    shown = client.get(f"/api/v1/orders/{paid['id']}").get_json()
    assert (shown["status"], shown["amount"], shown["phone"]) == ("activated", 3000,
                                                                 "138****8000")
    assert client.get(f"/api/v1/orders/{pending['id']}").get_json()["phone"] == "138****8000"
    assert client.get("/api/v1/devices/tv-2/pairing").get_json()["paired"] is False
    with seeded.db.read() as session:
        kept = session.scalars(select(OutboxMessage).where(
            OutboxMessage.to_phone == "138****8000")).all()
    assert kept and {m.body for m in kept} == {""}
    # Nothing is sent to the number any more, and its next order starts unbound.
    Worker(seeded).run_once()
    clock.advance(seconds=61)  # the phone's one order a minute
    assert order(client, RICH, "vip_month", device="tv-5").get_json()["status"] == "awaiting_wap"

    again = runner.invoke(args=["privacy", "erase", "+86 138 0013 8000"])
    assert again.exit_code == 0
    assert "orders masked: 1" in again.output  # only the order made since
    assert "pending orders cancelled: 1" in again.output


def test_erasing_a_number_never_seen_changes_nothing(app, seeded):
    result = app.test_cli_runner().invoke(args=["privacy", "erase", "13500135000"])
    assert result.exit_code == 0 and "nothing changed" in result.output


def test_sms_older_than_the_retention_are_dropped_by_the_worker(client, seeded, clock):
    order(client, RICH, device="tv-1")
    clock.advance(days=60)
    order(client, UNBOUND, device="tv-2")
    Worker(seeded).run_once()
    clock.advance(days=31)  # the first SMS is 91 days old, the second 31
    Worker(seeded).run_once()
    assert sms_to(seeded, RICH) == []
    assert [m.kind for m in sms_to(seeded, UNBOUND)] == ["link"]
