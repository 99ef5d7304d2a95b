"""The worker: lapsed orders expire and release their holds; the outbox drains masked."""

from __future__ import annotations

import logging
import re

from gateway.backend import checkout
from gateway.background import Worker
from tests.conftest import (
    CARD_ONLY,
    RICH,
    UNBOUND,
    balance,
    code_sent_to,
    order,
    reply,
    sms_to,
    stored_order,
)
from tests.test_pairing_and_retry import pairing_code, send_page_code


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


PAIRING_PHONE = "+8613500135000"


def test_no_sms_of_any_kind_keeps_its_secret_once_sent(client, seeded, clock):
    waiting = order(client, CARD_ONLY, device="tv-1").get_json()  # its code SMS, order open
    order(client, UNBOUND, device="tv-2")  # a payment link
    order(client, RICH, device="tv-3")
    reply(client, RICH, "000000" if code_sent_to(seeded, RICH) != "000000" else "111111")
    reply(client, RICH, code_sent_to(seeded, RICH))  # a wrong-code answer, then the confirmation
    send_page_code(client, pairing_code(client, "tv-4")["code"], PAIRING_PHONE)
    secrets = {
        "code": code_sent_to(seeded, CARD_ONLY),
        "link": re.search(r"/w/([A-Za-z0-9_-]{20,})", sms_to(seeded, UNBOUND)[0].body).group(1),
        "pairing": re.search(r"验证码 (\d{6})", sms_to(seeded, PAIRING_PHONE)[0].body).group(1),
    }

    def rows():
        return [m for phone in (CARD_ONLY, UNBOUND, RICH, PAIRING_PHONE)
                for m in sms_to(seeded, phone)]

    kinds = {m.kind for m in rows()}
    assert kinds == {"code", "link", "pairing", "reply", "confirmed"}
    assert {m.kind for m in rows() if any(s in m.body for s in secrets.values())} == \
        {"code", "link", "pairing"}  # queued: the secrets are there to be sent

    Worker(seeded).run_once()
    assert {m.status for m in rows()} == {"sent", "failed"}  # RICH's code: its order ended
    assert sms_to(seeded, CARD_ONLY, "code")[0].status == "sent"
    for message in rows():
        assert message.body == message.redacted_body, message.kind
        assert not any(secret in message.body for secret in secrets.values()), message.kind
    assert stored_order(seeded, waiting["id"]).status == "awaiting_code"
    assert "******" in sms_to(seeded, CARD_ONLY, "code")[0].body
