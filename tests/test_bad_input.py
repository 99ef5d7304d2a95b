"""Bad input gets a clear problem+json with a stable code, and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import RICH, UNBOUND, accounts, sms_to
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


# --- strict JSON: the body is JSON, sent as JSON, and means one thing ---------------------------

ADMIN_KEY = "admin-key-0123456789abcdef"
BILL = {"bill_id": "B-1", "device_id": "tv-42", "amount": 4500, "currency": "CNY",
        "description": "October"}
ORDER_JSON = json.dumps(GOOD).encode()


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml",
])
def test_a_body_not_sent_as_json_is_refused_415(client, seeded, content_type):
    before = accounts(seeded)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/v1/orders", data=ORDER_JSON, headers=headers)
    if content_type is None:
        assert "Content-Type" not in response.request.headers
    assert response.status_code == 415
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == "unsupported_media_type"
    assert count_orders(seeded) == 0 and accounts(seeded) == before
    assert sms_to(seeded, RICH) == []


@pytest.mark.settings(ADMIN_API_KEY=ADMIN_KEY)
def test_the_admin_api_takes_json_only_and_a_stranger_hears_401_first(client, seeded):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    as_text = {"Content-Type": "text/plain"}
    body = json.dumps(BILL).encode()
    refused = client.post("/api/v1/admin/bills", data=body, headers={**admin, **as_text})
    assert refused.status_code == 415
    assert refused.get_json()["code"] == "unsupported_media_type"
    stranger = client.post("/api/v1/admin/bills", data=body,
                           headers={"Authorization": "Bearer x", **as_text})
    assert stranger.status_code == 401
    listed = client.get("/api/v1/admin/bills?device_id=tv-42", headers=admin).get_json()
    assert listed["bills"] == []


def test_json_in_its_other_spellings_and_no_body_are_taken(client, seeded):
    for phone, content_type in ((RICH, "application/json; charset=utf-8"),
                                (UNBOUND, "application/vnd.tvpay+json")):
        placed = client.post("/api/v1/orders", data=json.dumps({**GOOD, "phone": phone}),
                             headers={"Content-Type": content_type})
        assert placed.status_code == 201, content_type
    cancelled = client.post(f"/api/v1/orders/{placed.get_json()['id']}/cancel")  # no body
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"


@pytest.mark.parametrize("body, reason", [
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000", "n": NaN}',
     "NaN is not a JSON number"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000", "n": Infinity}',
     "Infinity is not a JSON number"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000", "n": -Infinity}',
     "-Infinity is not a JSON number"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000",'
     b' "phone": "13900139000"}', "the key 'phone' is given twice"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000",'
     b' "x": {"a": 1, "a": 2}}', "the key 'a' is given twice"),
    (b'{"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000", "n": 1e400}',
     "1e400 is out of range"),
])
def test_json_that_python_takes_but_json_does_not_is_refused(client, seeded, body, reason):
    before = accounts(seeded)
    response = client.post("/api/v1/orders", data=body, content_type="application/json")
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["code"] == "invalid_json" and reason in problem["detail"]
    assert count_orders(seeded) == 0 and accounts(seeded) == before
    assert sms_to(seeded, RICH) == [] and sms_to(seeded, "13900139000") == []


@pytest.mark.settings(ADMIN_API_KEY=ADMIN_KEY)
@pytest.mark.parametrize("path, body", [
    ("/api/v1/devices/tv-42/payment-codes", {"kind": "recharge", "amount": 5000.0}),
    ("/api/v1/devices/tv-42/payment-codes", {"kind": "recharge", "amount": 5e3}),
    ("/api/v1/devices/tv-42/payment-codes", {"kind": "recharge", "amount": 50.5}),
    ("/api/v1/admin/bills", {**BILL, "amount": 4500.0}),
    ("/api/v1/admin/bills", {"bills": [BILL, {**BILL, "bill_id": "B-2", "amount": 1.0}]}),
])
def test_a_float_where_a_whole_amount_is_due_is_refused(client, seeded, path, body):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"} if "admin" in path else {}
    response = client.post(path, json=body, headers=admin)
    assert response.status_code == 400
    assert response.get_json()["code"] in ("invalid_amount", "invalid_bill")
    assert "amount" in response.get_json()["detail"]
    assert count_orders(seeded) == 0
    listed = client.get("/api/v1/admin/bills?device_id=tv-42",
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"}).get_json()
    assert listed["bills"] == []


@pytest.mark.parametrize("body", [b"[1, 2]", b"5", b"[[1]]", b'"text"', b"{not json"])
def test_json_sent_to_a_page_form_is_refused_plainly(client, seeded, body):
    code = client.post("/api/v1/devices/tv-42/pairing").get_json()["code"]
    refused = client.post(f"/w/pair/{code}/phone", data=body, content_type="application/json")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and refused.content_type.startswith("text/html")
    assert "Traceback" not in page and "<h1>" in page
    assert client.get(f"/w/pair/{code}").status_code == 200  # the code is still live
