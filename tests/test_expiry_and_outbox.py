"""The worker: lapsed orders expire and release their holds; the outbox drains masked."""

from __future__ import annotations

import logging

from gateway.backend import checkout
from gateway.background import Worker
from tests.conftest import RICH, UNBOUND, balance, code_sent_to, order, sms_to, stored_order


def test_the_sweeper_expires_lapsed_orders_and_releases_holds(client, seeded, clock):
    code_order = order(client, RICH, device="tv-1").get_json()
    link_order = order(client, UNBOUND, device="tv-2").get_json()
    assert checkout.expire_lapsed(seeded) == 0
    clock.advance(seconds=301)
    assert checkout.expire_lapsed(seeded) == 1  # the code lapsed; the link lives 15 minutes
    assert stored_order(seeded, code_order["id"]).status == "expired"
    assert balance(seeded, "wallet:w-rich") == 50000
    clock.advance(seconds=600)
    assert checkout.expire_lapsed(seeded) == 1
    assert (stored_order(seeded, link_order["id"]).reason) == "expired"
    assert checkout.expire_lapsed(seeded) == 0


def test_reads_never_show_a_lapsed_order_as_pending(client, seeded, clock):
    created = order(client).get_json()
    clock.advance(seconds=300)
    read = client.get(f"/api/v1/orders/{created['id']}").get_json()
    assert (read["status"], read["reason"]) == ("expired", "expired")
    assert balance(seeded, "holds:CNY") == 0
    assert client.post(f"/api/v1/orders/{created['id']}/cancel").status_code == 409


def test_the_worker_sends_queued_sms_and_logs_them_masked_without_code(
        client, seeded, caplog):
    order(client, RICH)
    code = code_sent_to(seeded, RICH)
    caplog.set_level(logging.INFO)
    expired, sent = Worker(seeded).run_once()
    assert (expired, sent) == (0, 1)
    [sms] = sms_to(seeded, RICH)
    assert (sms.status, sms.provider) == ("sent", "log")
    logged = caplog.text
    assert "138****8000" in logged and "******" in logged
    assert code not in logged and "13800138000" not in logged
    assert Worker(seeded).run_once() == (0, 0)


def test_a_code_sms_still_queued_when_its_order_ends_is_never_sent(client, seeded, clock):
    order(client, RICH)
    clock.advance(seconds=301)
    Worker(seeded).run_once()
    [sms] = sms_to(seeded, RICH, "code")
    assert (sms.status, sms.error) == ("failed", "order closed while the SMS waited to be sent")
    assert "******" in sms.body


def test_no_full_phone_number_or_code_reaches_any_log(client, seeded, caplog):
    caplog.set_level(logging.DEBUG)
    order(client, RICH)
    code = code_sent_to(seeded, RICH)
    client.post("/sms/inbound", headers={"X-Inbound-Secret": "test-inbound-secret"},
                json={"from": "13800138000", "text": code})
    Worker(seeded).run_once()
    logging.getLogger("test").info("a caller logging a raw +8613800138000 by mistake")
    assert "activated" in caplog.text
    assert "13800138000" not in caplog.text and code not in caplog.text
