"""Replying to the service number with the code: right, wrong, expired, reused, exhausted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway.domain import otp
from gateway.store.models import JournalEntry
from tests.conftest import (
    CARD_ONLY,
    INBOUND_SECRET,
    RICH,
    UNBOUND,
    balance,
    code_sent_to,
    codes_sent_to,
    order,
    reply,
    sms_to,
    stored_order,
)


def captures(gw, order_id: str) -> int:
    with gw.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.order_id == order_id, JournalEntry.kind == "capture"))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_the_right_code_pays_and_activates_the_package(client, seeded, clock):
    created = order(client, RICH, "vip_year", device="tv-42").get_json()
    reply(client, RICH, code_sent_to(seeded, RICH))

    read = client.get(f"/api/v1/orders/{created['id']}").get_json()
    assert (read["status"], read["reason"]) == ("activated", None)
    assert balance(seeded, "wallet:w-rich") == 30000
    assert balance(seeded, "holds:CNY") == 0
    assert balance(seeded, "merchant:CNY") == 20000
    until = (clock.now + timedelta(days=365)).isoformat().replace("+00:00", "Z")
    assert client.get("/api/v1/devices/tv-42/entitlements").get_json()["entitlements"] == [
        {"package_id": "vip_year", "active_until": until}]
    [confirmation] = sms_to(seeded, RICH, "confirmed")
    assert "支付成功" in confirmation.body and "VIP会员包年已开通" in confirmation.body
    assert "******" in sms_to(seeded, RICH, "code")[0].body


def test_a_second_purchase_extends_the_running_entitlement(client, seeded, clock):
    order(client, RICH, "vip_month", device="tv-7")
    reply(client, RICH, code_sent_to(seeded, RICH))
    clock.advance(days=10)
    order(client, RICH, "vip_month", device="tv-7")
    reply(client, RICH, code_sent_to(seeded, RICH))
    [entitlement] = client.get("/api/v1/devices/tv-7/entitlements").get_json()["entitlements"]
    first_start = clock.now - timedelta(days=10)
    expected = first_start + timedelta(days=60)
    assert entitlement["active_until"] == expected.isoformat().replace("+00:00", "Z")


def test_the_card_hold_is_captured_from_the_card(client, seeded):
    order(client, CARD_ONLY, "vip_month")
    reply(client, CARD_ONLY, code_sent_to(seeded, CARD_ONLY))
    assert balance(seeded, "card:w-card") == 97000
    assert balance(seeded, "wallet:w-card") == 1000
    assert balance(seeded, "merchant:CNY") == 3000


def test_a_code_with_spaces_or_full_width_digits_is_understood(client, seeded):
    created = order(client).get_json()
    code = code_sent_to(seeded, RICH)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code)
    reply(client, RICH, f" {full_width[:3]} {full_width[3:]} ")
    assert stored_order(seeded, created["id"]).status == "activated"


def test_a_wrong_code_says_how_many_tries_are_left(client, seeded):
    created = order(client).get_json()
    reply(client, RICH, wrong(code_sent_to(seeded, RICH)))
    assert stored_order(seeded, created["id"]).status == "awaiting_code"
    assert sms_to(seeded, RICH, "reply")[-1].body == "【TV Pay】验证码错误，还可尝试4次。"
    assert balance(seeded, "holds:CNY") == 20000


def test_five_wrong_codes_fail_the_order_and_release_the_hold(client, seeded):
    created = order(client).get_json()
    code = code_sent_to(seeded, RICH)
    for _ in range(5):
        reply(client, RICH, wrong(code))
    read = client.get(f"/api/v1/orders/{created['id']}").get_json()
    assert (read["status"], read["reason"]) == ("failed", "too_many_attempts")
    assert balance(seeded, "wallet:w-rich") == 50000
    assert "次数过多" in sms_to(seeded, RICH, "reply")[-1].body
    reply(client, RICH, code)  # the right code is now worthless
    assert stored_order(seeded, created["id"]).status == "failed"
    assert captures(seeded, created["id"]) == 0
    assert "已关闭" in sms_to(seeded, RICH, "reply")[-1].body


def test_an_expired_code_pays_nothing(client, seeded, clock):
    created = order(client).get_json()
    clock.advance(seconds=301)
    reply(client, RICH, code_sent_to(seeded, RICH))
    read = client.get(f"/api/v1/orders/{created['id']}").get_json()
    assert (read["status"], read["reason"]) == ("expired", "expired")
    assert balance(seeded, "wallet:w-rich") == 50000
    assert "已过期" in sms_to(seeded, RICH, "reply")[-1].body


def test_a_reused_code_pays_once(client, seeded):
    created = order(client).get_json()
    code = code_sent_to(seeded, RICH)
    reply(client, RICH, code)
    reply(client, RICH, code)
    assert captures(seeded, created["id"]) == 1
    assert balance(seeded, "wallet:w-rich") == 30000
    assert len(sms_to(seeded, RICH, "confirmed")) == 1
    assert "已使用" in sms_to(seeded, RICH, "reply")[-1].body


def test_a_code_from_another_phone_pays_nothing(client, seeded):
    created = order(client, RICH).get_json()
    reply(client, CARD_ONLY, code_sent_to(seeded, RICH))
    assert stored_order(seeded, created["id"]).status == "awaiting_code"
    assert "6位验证码" in sms_to(seeded, CARD_ONLY, "reply")[-1].body  # help: nothing pending


def test_a_text_that_is_no_code_gets_help(client, seeded):
    reply(client, UNBOUND, "你好")
    [help_sms] = sms_to(seeded, UNBOUND, "reply")
    assert help_sms.body.startswith("【TV Pay】确认电视订单请回复6位验证码。指令：余额、账单、缴费")
    assert len(help_sms.body) <= 70  # one SMS in UCS-2


@pytest.mark.settings(LIMIT_PHONE_INTERVAL_SECONDS=0)
def test_two_pending_orders_of_one_phone_have_different_codes(client, seeded, monkeypatch):
    drawn = iter(["111111", "111111", "222222"])  # the second draw collides and is redrawn
    monkeypatch.setattr(otp, "new_code", lambda: next(drawn))
    first = order(client, RICH, "vip_month", device="tv-1").get_json()
    second = order(client, RICH, "vip_month", device="tv-2").get_json()
    assert codes_sent_to(seeded, RICH) == ["111111", "222222"]
    codes = codes_sent_to(seeded, RICH)
    reply(client, RICH, codes[0])
    assert stored_order(seeded, first["id"]).status == "activated"
    assert stored_order(seeded, second["id"]).status == "awaiting_code"


def test_inbound_needs_the_shared_secret(client, seeded):
    created = order(client).get_json()
    payload = {"from": RICH, "text": code_sent_to(seeded, RICH)}
    for headers in ({}, {"X-Inbound-Secret": "guess"}):
        response = client.post("/sms/inbound", headers=headers, json=payload)
        assert response.status_code == 403
        assert response.get_json()["code"] == "forbidden"
    assert stored_order(seeded, created["id"]).status == "awaiting_code"


def test_inbound_accepts_form_posts(client, seeded):
    created = order(client).get_json()
    response = client.post("/sms/inbound", headers={"X-Inbound-Secret": INBOUND_SECRET},
                           data={"from": "13800138000", "to": "10690000",
                                 "text": code_sent_to(seeded, RICH)})
    assert response.status_code == 200
    assert stored_order(seeded, created["id"]).status == "activated"


@pytest.mark.parametrize("payload, code", [
    ({"text": "123456"}, "missing_field"),
    ({"from": "not a phone", "text": "123456"}, "invalid_phone"),
    ({"from": RICH, "text": "1" * 2000}, "invalid_text"),
    ({"from": RICH, "text": 123456}, "invalid_text"),
])
def test_bad_inbound_messages_are_refused_clearly(client, seeded, payload, code):
    response = client.post("/sms/inbound", headers={"X-Inbound-Secret": INBOUND_SECRET},
                           json=payload)
    assert response.status_code == 400
    assert response.get_json()["code"] == code
    assert sms_to(seeded, RICH) == []
