"""Pairing a phone with a TV (by SMS and on the pairing page), ordering with the paired phone,
and retrying a failed order."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gateway.backend import pairing
from gateway.store.models import Order
from tests.conftest import (
    CARD_ONLY,
    POOR,
    RICH,
    UNBOUND,
    code_sent_to,
    order,
    reply,
    sms_to,
    stored_order,
)
from tests.smpp_helpers import running, wait_until

TV = "tv-42"


def pairing_code(client, device: str = TV) -> dict:
    response = client.post(f"/api/v1/devices/{device}/pairing")
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def paired_order(client, device: str = TV, **fields):
    return client.post("/api/v1/orders", json={"device_id": device, "package_id": "vip_month",
                                               "use_paired_phone": True, **fields})


def test_a_pairing_code_is_short_unambiguous_and_shown_as_a_qr_code(client, seeded):
    created = pairing_code(client)
    assert re.fullmatch(f"[{pairing.ALPHABET}]{{6}}", created["code"])
    assert created["expires_at"].endswith("Z") and created["sms"] == f"BIND {created['code']}"
    image = client.get(created["qr_url"])
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert client.get(f"/api/v1/devices/tv-other/pairing/{created['code']}/qr.png"
                      ).status_code == 404
    # A new code replaces the TV's unused one.
    second = pairing_code(client)
    assert client.get(created["qr_url"]).status_code == 404
    assert client.get(second["qr_url"]).status_code == 200


def test_bind_by_sms_then_order_with_the_paired_phone(client, seeded):
    code = pairing_code(client)["code"]
    reply(client, RICH, f"bind {code.lower()}")  # any case; answered in the command's language
    assert f"paired with TV {TV}" in sms_to(seeded, RICH, "reply")[-1].body
    assert client.get(f"/api/v1/devices/{TV}/pairing").get_json() == {
        "device_id": TV, "paired": True, "phone": "138****8000"}

    created = paired_order(client)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["status"] == "awaiting_code" and body["phone"] == "138****8000"
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert stored_order(seeded, body["id"]).status == "activated"
    # The code is used up: a second phone cannot take the TV with it.
    reply(client, CARD_ONLY, f"绑定 {code}")
    assert "配对码无效" in sms_to(seeded, CARD_ONLY, "reply")[-1].body


def test_ordering_with_the_paired_phone_needs_a_pairing_and_no_number(client, seeded):
    refused = paired_order(client)
    assert refused.status_code == 409 and refused.get_json()["code"] == "device_not_paired"
    both = paired_order(client, phone=RICH)
    assert both.status_code == 400
    assert paired_order(client, use_paired_phone="yes").status_code == 400


def test_unpair_from_the_tv_or_by_sms(client, seeded):
    reply(client, RICH, f"BIND {pairing_code(client)['code']}")
    reply(client, RICH, f"绑定{pairing_code(client, 'tv-bedroom')['code']}")
    assert client.delete(f"/api/v1/devices/{TV}/pairing").status_code == 204
    assert client.get(f"/api/v1/devices/{TV}/pairing").get_json()["paired"] is False
    assert client.get("/api/v1/devices/tv-bedroom/pairing").get_json()["paired"] is True
    reply(client, RICH, "unbind")
    assert "Unpaired 1 TV" in sms_to(seeded, RICH, "reply")[-1].body
    assert client.get("/api/v1/devices/tv-bedroom/pairing").get_json()["paired"] is False
    assert paired_order(client, device="tv-bedroom").status_code == 409


def test_guessing_pairing_codes_is_cut_off(client, seeded):
    real = pairing_code(client)["code"]
    for guess in ("AAAAAA", "BBBBBB", "CCCCCC", "DDDDDD", "EEEEEE"):
        reply(client, UNBOUND, f"BIND {guess}")
    assert "wrong or has expired" in sms_to(seeded, UNBOUND, "reply")[-1].body
    reply(client, UNBOUND, f"绑定 {real}")  # right, but after five tries in the hour
    assert "尝试次数过多" in sms_to(seeded, UNBOUND, "reply")[-1].body
    assert client.get(f"/api/v1/devices/{TV}/pairing").get_json()["paired"] is False


def test_pairing_codes_expire(client, seeded, clock):
    code = pairing_code(client)["code"]
    clock.advance(seconds=seeded.settings.PAIRING_CODE_TTL_SECONDS)
    reply(client, RICH, f"绑定{code}")
    assert "配对码无效或已过期" in sms_to(seeded, RICH, "reply")[-1].body


def test_the_pairing_page_confirms_the_phone_by_an_sms_code(client, seeded):
    code = pairing_code(client)["code"]
    page = client.get(f"/w/pair/{code}")
    assert page.status_code == 200 and TV in page.text
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    sent = client.post(f"/w/pair/{code}/phone", data={"csrf_token": csrf, "phone": CARD_ONLY})
    assert sent.status_code == 303
    assert "139****9000" in client.get(f"/w/pair/{code}").text
    [sms] = sms_to(seeded, CARD_ONLY, "pairing")
    confirm = re.search(r"验证码 (\d{6})", sms.body).group(1)

    wrong = client.post(f"/w/pair/{code}/confirm", data={"csrf_token": csrf, "code": "000000"
                                                         if confirm != "000000" else "111111"})
    assert wrong.status_code == 400 and "还可以尝试4次" in wrong.text
    done = client.post(f"/w/pair/{code}/confirm", data={"csrf_token": csrf, "code": confirm})
    assert done.status_code == 200 and "绑定成功" in done.text
    assert client.get(f"/api/v1/devices/{TV}/pairing").get_json()["phone"] == "139****9000"
    assert client.get(f"/w/pair/{code}").status_code == 404  # used up


def test_the_pairing_page_refuses_bad_input_without_changing_anything(client, seeded):
    code = pairing_code(client)["code"]
    page = client.get(f"/w/pair/{code}")
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    bad = client.post(f"/w/pair/{code}/phone", data={"csrf_token": csrf, "phone": "12"})
    assert bad.status_code == 400 and "请输入正确的手机号" in bad.text
    no_csrf = client.post(f"/w/pair/{code}/phone", data={"phone": RICH})
    assert no_csrf.status_code == 400
    not_sent = client.post(f"/w/pair/{code}/confirm", data={"csrf_token": csrf, "code": "1"})
    assert not_sent.status_code == 404
    assert client.get("/w/pair/NOPE00").status_code == 404
    assert sms_to(seeded, RICH) == []
    assert client.get(f"/api/v1/devices/{TV}/pairing").get_json()["paired"] is False


def page_csrf(client, code: str) -> str:
    page = client.get(f"/w/pair/{code}")
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)


def send_page_code(client, code: str, phone: str):
    return client.post(f"/w/pair/{code}/phone",
                       data={"csrf_token": page_csrf(client, code), "phone": phone})


def wrong_page_code(client, code: str, right: str):
    return client.post(f"/w/pair/{code}/confirm", data={
        "csrf_token": page_csrf(client, code), "code": "000000" if right != "000000" else "111111"})


def last_pairing_code_sent(gw, phone: str) -> str:
    return re.search(r"验证码 (\d{6})", sms_to(gw, phone, "pairing")[-1].body).group(1)


def test_wrong_tries_on_the_pairing_page_survive_a_new_code(client, seeded, clock):
    code = pairing_code(client)["code"]
    assert send_page_code(client, code, CARD_ONLY).status_code == 303
    for left in (4, 3, 2):
        wrong = wrong_page_code(client, code, last_pairing_code_sent(seeded, CARD_ONLY))
        assert f"还可以尝试{left}次" in wrong.text
    clock.advance(seconds=61)
    assert send_page_code(client, code, CARD_ONLY).status_code == 303  # a new code ...
    wrong = wrong_page_code(client, code, last_pairing_code_sent(seeded, CARD_ONLY))
    assert "还可以尝试1次" in wrong.text  # ... is no new chance
    last = wrong_page_code(client, code, last_pairing_code_sent(seeded, CARD_ONLY))
    assert last.status_code == 404  # the fifth wrong try ends the pairing code
    right = client.post(f"/w/pair/{code}/confirm", data={
        "csrf_token": "x", "code": last_pairing_code_sent(seeded, CARD_ONLY)})
    assert right.status_code in (400, 404)
    assert client.get(f"/w/pair/{code}").status_code == 404
    reply(client, CARD_ONLY, f"BIND {code}")
    assert client.get(f"/api/v1/devices/{TV}/pairing").get_json()["paired"] is False
    assert len(sms_to(seeded, CARD_ONLY, "pairing")) == 2


def test_a_pairing_sends_at_most_five_codes(client, seeded, clock):
    code = pairing_code(client)["code"]
    for _ in range(5):
        assert send_page_code(client, code, CARD_ONLY).status_code == 303
        clock.advance(seconds=61)
    refused = send_page_code(client, code, CARD_ONLY)
    assert refused.status_code == 429 and "验证码发送次数过多" in refused.text
    other_phone = send_page_code(client, code, RICH)  # another number: the same pairing's cap
    assert other_phone.status_code == 429
    for spelling in (code.lower(), f"{code[:3]}-{code[3:]}"):  # the same code, written otherwise
        assert send_page_code(client, spelling, RICH).status_code == 429
    assert len(sms_to(seeded, CARD_ONLY, "pairing")) == 5 and sms_to(seeded, RICH) == []


def test_a_phone_and_a_tv_get_a_capped_number_of_pairing_codes_a_day(client, seeded, clock):
    for n in range(10):  # ten TVs send the same phone a code each, a minute apart
        assert send_page_code(client, pairing_code(client, f"tv-{n}")["code"],
                              CARD_ONLY).status_code == 303
        clock.advance(seconds=61)
    refused = send_page_code(client, pairing_code(client, "tv-10")["code"], CARD_ONLY)
    assert refused.status_code == 429 and "验证码发送次数过多" in refused.text
    assert len(sms_to(seeded, CARD_ONLY, "pairing")) == 10

    phones = iter(f"1390013{n:04d}" for n in range(100))
    for _ in range(4):  # one TV, four pairings of five codes each, to other phones
        code = pairing_code(client)["code"]
        for _ in range(5):
            assert send_page_code(client, code, next(phones)).status_code == 303
    assert send_page_code(client, pairing_code(client)["code"], next(phones)).status_code == 429
    clock.advance(hours=24)
    assert send_page_code(client, pairing_code(client)["code"], CARD_ONLY).status_code == 303


# --- retry ---------------------------------------------------------------------------------------


@pytest.mark.settings(CODE_MAX_ATTEMPTS=2)
def test_retry_after_a_wrong_code_failure(client, seeded):
    first = order(client, RICH, "vip_month").get_json()
    wrong = "000000" if code_sent_to(seeded, RICH) != "000000" else "111111"
    reply(client, RICH, wrong)
    reply(client, RICH, wrong)
    failed = client.get(f"/api/v1/orders/{first['id']}").get_json()
    assert (failed["status"], failed["reason"]) == ("failed", "too_many_attempts")

    retried = client.post(f"/api/v1/orders/{first['id']}/retry")
    assert retried.status_code == 201, retried.get_json()
    second = retried.get_json()
    assert second["id"] != first["id"] and second["retry_of"] == first["id"]
    assert (second["status"], second["package_id"], second["phone"]) == (
        "awaiting_code", "vip_month", "138****8000")
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert stored_order(seeded, second["id"]).status == "activated"

    again = client.post(f"/api/v1/orders/{first['id']}/retry")
    assert again.status_code == 409 and again.get_json()["retry_order_id"] == second["id"]
    paid = client.post(f"/api/v1/orders/{second['id']}/retry")
    assert paid.status_code == 409 and paid.get_json()["code"] == "order_not_retryable"


def test_retry_keeps_the_limits_and_the_reason_stays_readable(client, seeded):
    poor = order(client, POOR, "vip_year").get_json()
    assert (poor["status"], poor["reason"]) == ("failed", "insufficient_funds")
    retried = client.post(f"/api/v1/orders/{poor['id']}/retry").get_json()
    assert (retried["status"], retried["reason"]) == ("failed", "insufficient_funds")
    pending = order(client, RICH, "vip_month").get_json()
    assert client.post(f"/api/v1/orders/{pending['id']}/retry").status_code == 409
    assert client.post("/api/v1/orders/ord_nope/retry").status_code == 404


@pytest.mark.settings(LIMIT_DEVICE_ORDERS_PER_HOUR=2)
def test_a_retry_counts_against_the_device_limit(client, seeded):
    first = order(client, RICH, "vip_month").get_json()
    client.post(f"/api/v1/orders/{first['id']}/cancel")
    assert client.post(f"/api/v1/orders/{first['id']}/retry").status_code == 201
    second = order(client, CARD_ONLY, "vip_month").get_json()
    assert second["code"] == "device_rate_limited"


def test_an_expired_qr_order_is_retried_as_a_new_qr_order(client, seeded, clock):
    first = client.post(f"/api/v1/devices/{TV}/payment-codes",
                        json={"kind": "recharge", "amount": 5000}).get_json()
    clock.advance(seconds=seeded.settings.WAP_LINK_TTL_SECONDS)
    assert client.get(f"/api/v1/orders/{first['id']}").get_json()["status"] == "expired"
    second = client.post(f"/api/v1/orders/{first['id']}/retry").get_json()
    assert (second["kind"], second["amount"], second["status"], second["retry_of"]) == (
        "recharge", 5000, "awaiting_wap", first["id"])
    assert client.get(second["qr_url"]).status_code == 200


# --- over SMPP, through the built-in SMSC ------------------------------------------------------


@pytest.mark.settings(SMS_PROVIDER="smpp")
def test_pairing_by_sms_then_ordering_without_a_number_over_smpp(client, seeded, smsc):
    with running(seeded, smsc.port):
        code = pairing_code(client)["code"]
        smsc.reply(RICH, f"BIND {code}")
        assert f"paired with TV {TV}" in smsc.wait_for_message(RICH).text

        created = paired_order(client).get_json()
        text = smsc.wait_for_message(RICH, count=2).text
        smsc.reply(RICH, re.search(r"回复 (\d{6})", text).group(1))
        wait_until(lambda: stored_order(seeded, created["id"]).status == "activated",
                   what="the order paid from the paired phone")
    with seeded.db.read() as session:
        orders = session.scalars(select(Order.phone)).all()
    assert orders == [RICH]
