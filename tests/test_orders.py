"""The TV's order flow over the API: binding branches, card fallback, funds, cancel, reads."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gateway.domain import tokens
from gateway.store.models import Hold, OrderEvent
from tests.conftest import (
    CARD_ONLY,
    POOR,
    RICH,
    UNBOUND,
    balance,
    order,
    sms_to,
    stored_order,
)


def test_packages_are_listed_with_prices_in_minor_units(client, seeded):
    response = client.get("/api/v1/packages")
    assert response.status_code == 200
    assert response.get_json() == {"packages": [
        {"id": "vip_month", "name": "VIP 月卡", "price": 3000, "currency": "CNY",
         "period_days": 30},
        {"id": "vip_year", "name": "VIP会员包年", "price": 20000, "currency": "CNY",
         "period_days": 365},
    ]}


def test_bound_phone_gets_a_code_sms_and_the_wallet_is_held(client, seeded):
    response = order(client, RICH, "vip_year")
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "awaiting_code"
    assert body["channel"] == "sms_code"
    assert body["reason"] is None
    assert body["phone"] == "138****8000"
    assert (body["amount"], body["currency"]) == (20000, "CNY")
    assert response.headers["Location"] == f"/api/v1/orders/{body['id']}"
    assert balance(seeded, "wallet:w-rich") == 50000 - 20000
    assert balance(seeded, "card:w-rich") == 100000
    assert balance(seeded, "holds:CNY") == 20000
    [sms] = sms_to(seeded, RICH, "code")
    assert re.fullmatch(r"【TV Pay】您通过钱包支付VIP会员包年，金额200\.00元，"
                        r"确认支付请回复 \d{6}（5分钟内有效）。", sms.body)
    assert sms.expires_at == stored_order(seeded, body["id"]).expires_at


def test_card_pays_when_the_wallet_cannot(client, seeded):
    body = order(client, CARD_ONLY, "vip_month").get_json()
    assert body["status"] == "awaiting_code"
    assert balance(seeded, "wallet:w-card") == 1000
    assert balance(seeded, "card:w-card") == 100000 - 3000
    [sms] = sms_to(seeded, CARD_ONLY, "code")
    assert "尾号4321的CMB银行卡" in sms.body and "金额30.00元" in sms.body


def test_neither_source_covering_the_price_fails_at_once(client, seeded):
    response = order(client, POOR, "vip_year")
    assert response.status_code == 201
    body = response.get_json()
    assert (body["status"], body["reason"]) == ("failed", "insufficient_funds")
    assert balance(seeded, "wallet:w-poor") == 500 and balance(seeded, "card:w-poor") == 1000
    assert sms_to(seeded, POOR) == []
    with seeded.db.transaction() as session:
        assert session.get(Hold, body["id"]) is None


def test_unbound_phone_gets_a_single_use_payment_link(client, seeded):
    body = order(client, UNBOUND, "vip_month").get_json()
    assert (body["status"], body["channel"]) == ("awaiting_wap", "wap")
    [sms] = sms_to(seeded, UNBOUND, "link")
    assert "VIP 月卡" in sms.body and "30.00元" in sms.body
    url = re.search(r"https://pay\.example/w/(\S+)", sms.body)
    assert url, sms.body
    token = url.group(1)
    assert len(token) >= 22  # at least 128 bits of base64url
    stored = stored_order(seeded, body["id"])
    assert stored.link_token_hash == tokens.token_hash(token) != token
    assert token not in sms.redacted_body
    assert balance(seeded, "holds:CNY") == 0


def test_a_pending_order_reads_back_and_its_history_is_kept(client, seeded):
    created = order(client).get_json()
    read = client.get(f"/api/v1/orders/{created['id']}")
    assert read.status_code == 200 and read.get_json() == created
    with seeded.db.transaction() as session:
        statuses = session.scalars(select(OrderEvent.status).where(
            OrderEvent.order_id == created["id"]).order_by(OrderEvent.id)).all()
    assert statuses == ["created", "awaiting_code"]


def test_cancel_releases_the_hold_and_closes_the_code(client, seeded):
    created = order(client).get_json()
    response = client.post(f"/api/v1/orders/{created['id']}/cancel")
    assert response.status_code == 200
    assert (response.get_json()["status"], response.get_json()["reason"]) == \
        ("cancelled", "cancelled")
    assert balance(seeded, "wallet:w-rich") == 50000
    assert balance(seeded, "holds:CNY") == 0
    [sms] = sms_to(seeded, RICH, "code")
    assert "******" in sms.body  # the code is no longer readable anywhere

    again = client.post(f"/api/v1/orders/{created['id']}/cancel")
    assert again.status_code == 409
    assert again.get_json()["code"] == "order_not_pending"
    assert balance(seeded, "wallet:w-rich") == 50000


def test_unknown_order_is_a_404_problem(client, seeded):
    for response in (client.get("/api/v1/orders/ord_nope"),
                     client.post("/api/v1/orders/ord_nope/cancel")):
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"
        assert response.get_json()["code"] == "order_not_found"


def test_a_device_without_orders_has_no_entitlements(client, seeded):
    response = client.get("/api/v1/devices/tv-new/entitlements")
    assert response.get_json() == {"device_id": "tv-new", "entitlements": []}


@pytest.mark.settings(SMS_LANGUAGE="en")
def test_texts_follow_sms_language(client, seeded):
    order(client, CARD_ONLY, "vip_month")
    [sms] = sms_to(seeded, CARD_ONLY, "code")
    assert re.fullmatch(r"\[TV Pay\] Pay 30\.00 CNY for VIP 月卡 from your CMB card ending 4321: "
                        r"reply \d{6} within 5 min\.", sms.body)
