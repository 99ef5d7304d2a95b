"""Bad input gets a clear problem+json with a stable code, and changes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import RICH, accounts, sms_to
from tests.test_idempotency import count_orders

GOOD = {"device_id": "tv-42", "package_id": "vip_year", "phone": RICH}


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b"\xff\xfe", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b'{"device_id": "tv-42", "package_id": "vip_year"}', 400, "missing_field"),
    (b'{"device_id": "tv-42", "package_id": "gold", "phone": "13800138000"}', 400,
     "unknown_package"),
    (b'{"device_id": "tv-42", "package_id": 7, "phone": "13800138000"}', 400,
     "unknown_package"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "12345"}', 400,
     "invalid_phone"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": 13800138000}', 400,
     "invalid_phone"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "+1 202 555 0147"}', 400,
     "phone_country_not_allowed"),
    (b'{"device_id": "../etc", "package_id": "vip_year", "phone": "13800138000"}', 400,
     "invalid_device_id"),
    (b'{"device_id": "' + b"x" * 65 + b'", "package_id": "vip_year", "phone": "13800138000"}',
     400, "invalid_device_id"),
    (b'{"device_id": ["tv"], "package_id": "vip_year", "phone": "13800138000"}', 400,
     "invalid_device_id"),
    (b"[" * 30000, 400, "invalid_json"),
    (b'{"device_id": "tv-42", "package_id": "\\ud800", "phone": "13800138000"}', 400,
     "unknown_package"),
    (b'{"device_id": "tv-42", "package_id": "vip\\u0000", "phone": "13800138000"}', 400,
     "unknown_package"),
])
def test_bad_order_requests_are_refused(client, seeded, body, status, code):
    before = accounts(seeded)
    response = client.post("/api/v1/orders", data=body, content_type="application/json")
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == code and problem["status"] == status and problem["detail"]
    assert count_orders(seeded) == 0 and accounts(seeded) == before
    assert sms_to(seeded, RICH) == []


def test_an_oversize_body_is_refused(client, seeded):
    body = {**GOOD, "padding": "x" * 70_000}
    response = client.post("/api/v1/orders", json=body)
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"
    assert count_orders(seeded) == 0


@pytest.mark.parametrize("method, path, status, code", [
    ("get", "/api/v1/nothing", 404, "not_found"),
    ("delete", "/api/v1/orders", 405, "method_not_allowed"),
    ("get", "/api/v1/devices/bad%20id/entitlements", 400, "invalid_device_id"),
    ("get", "/api/v1/orders/ord%00x", 404, "order_not_found"),
    ("post", "/api/v1/orders/%ED%A0%80/cancel", 404, "order_not_found"),
    ("get", "/api/v1/orders/ord%00x/events", 404, "order_not_found"),
    ("get", "/api/v1/devices/tv%00x/entitlements", 400, "invalid_device_id"),  # no NUL reaches
    ("post", "/api/v1/devices/tv%00x/pairing", 400, "invalid_device_id"),  # PostgreSQL
])
def test_routing_errors_are_problems_too(client, seeded, method, path, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == code


def test_phones_are_masked_in_every_response(client, seeded):
    body = client.post("/api/v1/orders", json=GOOD).get_data(as_text=True)
    assert "13800138000" not in body and "138****8000" in body


def test_a_deeply_nested_inbound_body_is_refused(client, seeded):
    response = client.post("/sms/inbound", headers={"X-Inbound-Secret": "test-inbound-secret"},
                           data=b"[" * 30000, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_json"


@pytest.mark.settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_an_unreachable_store_is_a_503_not_a_crash(client, seeded):
    response = client.post("/api/v1/orders", json=GOOD)
    assert response.status_code == 503
    assert response.get_json()["code"] == "service_unavailable"
    assert response.headers["Retry-After"]
    assert count_orders(seeded) == 0
