"""QR codes for the TV, the device's bill, and renewal and recharge codes (CN105681837).

The QR images are read back with a real decoder (zxing-cpp), as a phone's camera would.
"""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
import zxingcpp
from PIL import Image

from tests.conftest import RICH, UNBOUND, balance, order, stored_order
from tests.test_wap import PayPage, text_of


def decode_qr(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, "expected exactly one QR code in the image"
    return found[0].text


def payment_code(client, device: str = "tv-42", **body):
    return client.post(f"/api/v1/devices/{device}/payment-codes", json=body)


def test_the_png_qr_code_decodes_to_the_orders_payment_page(client, seeded):
    created = order(client, UNBOUND, "vip_year").get_json()
    assert created["qr_url"] == f"/api/v1/orders/{created['id']}/qr.png"
    image = client.get(created["qr_url"])
    assert image.status_code == 200 and image.mimetype == "image/png"
    url = decode_qr(image.data)
    assert url == created["payment_url"]
    assert url.startswith("https://pay.example/w/")
    page = client.get(urlsplit(url).path)
    assert page.status_code == 200 and "VIP会员包年" in text_of(page)


def test_a_code_order_can_be_scanned_too(client, seeded):
    created = order(client, RICH, "vip_month").get_json()
    assert created["status"] == "awaiting_code"
    assert decode_qr(client.get(created["qr_url"]).data) == created["payment_url"]


def test_the_svg_qr_code_is_the_same_link(client, seeded):
    created = order(client, UNBOUND, "vip_year").get_json()
    svg = client.get(f"/api/v1/orders/{created['id']}/qr.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert svg.data.startswith(b"<?xml") and b"<svg" in svg.data
    assert client.get(f"/api/v1/orders/{created['id']}/qr.gif").status_code == 404


def test_no_qr_code_for_an_order_that_cannot_be_paid(client, seeded, clock):
    created = order(client, UNBOUND, "vip_year").get_json()
    clock.advance(minutes=16)
    refused = client.get(created["qr_url"])
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "order_not_pending"
    assert client.get("/api/v1/orders/ord_nope/qr.png").status_code == 404


def test_a_renewal_code_extends_the_package_on_the_tv(client, seeded):
    first = order(client, UNBOUND, "vip_month").get_json()
    page = PayPage(client, urlsplit(first["payment_url"]).path)
    page.sign_in("w-rich", "135790")
    page.pay("wallet")
    before = client.get("/api/v1/devices/tv-42/bill").get_json()
    [entitlement] = before["entitlements"]
    assert entitlement["package_id"] == "vip_month" and entitlement["active"] is True
    assert entitlement["renewal"] == {"amount": 3000, "currency": "CNY", "period_days": 30}

    created = payment_code(client, kind="renewal", package_id="vip_month")
    assert created.status_code == 201
    renewal = created.get_json()
    assert renewal["kind"] == "renewal" and renewal["phone"] is None
    assert renewal["status"] == "awaiting_wap" and renewal["amount"] == 3000
    assert created.headers["Location"] == f"/api/v1/orders/{renewal['id']}"
    scanned = decode_qr(client.get(renewal["qr_url"]).data)
    page = PayPage(client.application.test_client(), urlsplit(scanned).path)
    assert "续费：VIP 月卡" in text_of(page.open())
    page.sign_in("w-card", "246802")
    assert page.pay("card").status_code == 303

    after = client.get("/api/v1/devices/tv-42/bill").get_json()
    [extended] = after["entitlements"]
    assert extended["active_until"] > entitlement["active_until"]
    assert stored_order(seeded, renewal["id"]).status == "activated"
    assert balance(seeded, "card:w-card") == 100000 - 3000


def test_a_recharge_code_tops_up_the_tvs_balance(client, seeded):
    assert client.get("/api/v1/devices/tv-9/bill").get_json() == {
        "device_id": "tv-9", "balance": 0, "currency": "CNY", "entitlements": [], "bills": []}
    created = payment_code(client, "tv-9", kind="recharge", amount=5000)
    assert created.status_code == 201
    recharge = created.get_json()
    assert recharge["kind"] == "recharge" and recharge["package_id"] is None
    page = PayPage(client, urlsplit(decode_qr(client.get(recharge["qr_url"]).data)).path)
    shown = text_of(page.open())
    assert "电视余额充值" in shown and "50.00元" in shown
    page.sign_in("w-rich", "135790")
    page.pay("wallet")
    assert "已充值到电视余额" in text_of(page.open())
    bill = client.get("/api/v1/devices/tv-9/bill").get_json()
    assert bill["balance"] == 5000 and bill["entitlements"] == []
    assert balance(seeded, "wallet:w-rich") == 45000
    assert balance(seeded, "merchant:CNY") == 0  # stored value is the viewer's, not revenue


@pytest.mark.parametrize(("body", "code"), [
    ({}, "missing_field"),
    ({"kind": "gift"}, "invalid_kind"),
    ({"kind": "renewal"}, "unknown_package"),
    ({"kind": "renewal", "package_id": "nope"}, "unknown_package"),
    ({"kind": "recharge"}, "invalid_amount"),
    ({"kind": "recharge", "amount": 0}, "invalid_amount"),
    ({"kind": "recharge", "amount": -100}, "invalid_amount"),
    ({"kind": "recharge", "amount": 12.5}, "invalid_amount"),
    ({"kind": "recharge", "amount": "5000"}, "invalid_amount"),
    ({"kind": "recharge", "amount": True}, "invalid_amount"),
    ({"kind": "recharge", "amount": 10**12}, "invalid_amount"),
    ({"kind": "recharge", "amount": 5000, "currency": "USD"}, "invalid_currency"),
])
def test_bad_payment_code_requests_are_refused_and_create_nothing(client, seeded, body, code):
    refused = payment_code(client, **body)
    assert refused.status_code == 400
    assert refused.get_json()["code"] == code
    assert client.get("/api/v1/devices/tv-42/bill").get_json()["entitlements"] == []


def test_bad_device_ids_are_refused_on_bill_and_codes(client, seeded):
    for device in ("a b", "x" * 65, "-x"):
        assert client.get(f"/api/v1/devices/{device}/bill").status_code in (400, 404)
        refused = payment_code(client, device, kind="recharge", amount=100)
        assert refused.status_code in (400, 404)


@pytest.mark.settings(LIMIT_DEVICE_ORDERS_PER_HOUR=2)
def test_payment_codes_count_against_the_device_limit(client, seeded):
    assert payment_code(client, kind="recharge", amount=100).status_code == 201
    assert payment_code(client, kind="renewal", package_id="vip_month").status_code == 201
    limited = payment_code(client, kind="recharge", amount=100)
    assert limited.status_code == 429 and limited.get_json()["code"] == "device_rate_limited"


def test_a_repeated_payment_code_request_gives_the_same_order(client, seeded):
    headers = {"Idempotency-Key": "tv-42-recharge-1"}
    first = client.post("/api/v1/devices/tv-42/payment-codes", headers=headers,
                        json={"kind": "recharge", "amount": 1000})
    again = client.post("/api/v1/devices/tv-42/payment-codes", headers=headers,
                        json={"kind": "recharge", "amount": 1000})
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
