"""Rate limits (Redis) and the country allow-list: a TV must not become an SMS pump."""

from __future__ import annotations

import pytest

from tests.conftest import POOR, RICH, UNBOUND, order, sms_to


def assert_limited(response, code: str) -> None:
    assert response.status_code == 429
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == code
    assert int(response.headers["Retry-After"]) >= 1


def test_one_order_per_phone_per_minute_while_the_first_is_pending(client, seeded, clock):
    assert order(client, RICH, device="tv-1").status_code == 201
    limited = order(client, RICH, device="tv-2")
    assert_limited(limited, "phone_rate_limited")
    assert int(limited.headers["Retry-After"]) <= 60
    clock.advance(seconds=61)
    assert order(client, RICH, device="tv-2").status_code == 201


def test_a_phone_may_order_again_at_once_when_its_last_order_ended(client, seeded):
    first = order(client, RICH, device="tv-1").get_json()
    client.post(f"/api/v1/orders/{first['id']}/cancel")
    assert order(client, RICH, device="tv-1").status_code == 201
    failed = order(client, POOR, device="tv-2").get_json()
    assert failed["reason"] == "insufficient_funds"
    assert order(client, POOR, device="tv-2").status_code == 201


@pytest.mark.settings(LIMIT_PHONE_INTERVAL_SECONDS=0, LIMIT_PHONE_CODES_PER_DAY=3)
def test_code_sms_per_phone_per_day(client, seeded, clock):
    for n in range(3):
        assert order(client, RICH, "vip_month", device=f"tv-{n}").status_code == 201
    assert_limited(order(client, RICH, "vip_month", device="tv-9"), "phone_daily_limit")
    assert len(sms_to(seeded, RICH)) == 3
    clock.advance(hours=24, seconds=1)
    assert order(client, RICH, "vip_month", device="tv-9").status_code == 201


@pytest.mark.settings(LIMIT_PHONE_INTERVAL_SECONDS=0, LIMIT_PHONE_CODES_PER_DAY=2)
def test_orders_that_sent_no_code_do_not_count_against_the_phone(client, seeded):
    for n in range(4):  # over the daily limit of 2, yet never refused: no code went out
        response = order(client, POOR, device=f"tv-{n}")
        assert response.status_code == 201
        assert response.get_json()["reason"] == "insufficient_funds"
        assert order(client, UNBOUND, device=f"tv-{n}").get_json()["status"] == "awaiting_wap"


@pytest.mark.settings(LIMIT_DEVICE_ORDERS_PER_HOUR=3)
def test_orders_per_device_per_hour(client, seeded, clock):
    phones = ["+8613600136001", "+8613600136002", "+8613600136003", "+8613600136004"]
    for phone in phones[:3]:
        assert order(client, phone, device="tv-pump").status_code == 201
    limited = order(client, phones[3], device="tv-pump")
    assert_limited(limited, "device_rate_limited")
    assert order(client, phones[3], device="tv-other").status_code == 201
    assert sms_to(seeded, phones[3]) and len(sms_to(seeded, phones[3])) == 1
    clock.advance(hours=1, seconds=1)
    assert order(client, "+8613600136005", device="tv-pump").status_code == 201


@pytest.mark.settings(LIMIT_DEVICE_ORDERS_PER_HOUR=2)
def test_a_refusal_by_one_limit_uses_up_no_other(client, seeded):
    """A device refused for its phone's pending order keeps its own quota."""
    order(client, UNBOUND, device="tv-1")
    for _ in range(5):
        assert_limited(order(client, UNBOUND, device="tv-2"), "phone_rate_limited")
    assert order(client, "+8613600136008", device="tv-2").status_code == 201
    assert order(client, "+8613600136009", device="tv-2").status_code == 201
    assert_limited(order(client, "+8613600136007", device="tv-2"), "device_rate_limited")


def test_foreign_numbers_are_refused_by_default(client, seeded):
    response = order(client, "+85291234567")
    assert response.status_code == 400
    assert response.get_json()["code"] == "phone_country_not_allowed"


@pytest.mark.settings(PHONE_COUNTRIES="CN,HK")
def test_the_country_allow_list_is_configurable(client, seeded):
    response = order(client, "+85291234567")
    assert response.status_code == 201
    assert response.get_json()["phone"] == "91****67"
