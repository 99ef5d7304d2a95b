"""Money under concurrency, through a real multi-threaded HTTP server.

Fifty TVs order against one wallet at the same instant: it is never overdrawn. Twenty copies of
one confirmation arrive at once: the hold is captured once. Twenty submits of one payment page,
or page payments racing the SMS code, pay the order once.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway.store.models import JournalEntry, Order
from tests.browser import live_server
from tests.conftest import (
    INBOUND_SECRET,
    RICH,
    UNBOUND,
    balance,
    code_sent_to,
    codes_sent_to,
    sms_to,
    stored_order,
    tv_auth,
)
from tests.test_wap import PayPage, paid_entries

# Twenty or fifty new orders at the same instant on one process are a burst a worker would
# shed (OVERLOAD_MAX_CONCURRENT_ORDERS); here the race between them is the point.
ALL_AT_ONCE = {"OVERLOAD_MAX_CONCURRENT_ORDERS": 0}
NO_LIMITS = {"LIMIT_PHONE_INTERVAL_SECONDS": 0, "LIMIT_PHONE_CODES_PER_DAY": 0,
             "LIMIT_DEVICE_ORDERS_PER_HOUR": 0, **ALL_AT_ONCE}


@pytest.fixture
def server(app):
    with live_server(app) as base:
        yield base


@pytest.fixture
def place_order(server, app):
    """``POST /api/v1/orders`` over HTTP, as the test's TV app."""
    return lambda body: post(f"{server}/api/v1/orders", body, tv_auth(app))


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def all_at_once(count: int, call) -> list:
    barrier = threading.Barrier(count)

    def run(n: int):
        barrier.wait(timeout=30)
        return call(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.settings(**NO_LIMITS)
def test_fifty_parallel_orders_never_overdraw_one_wallet(server, place_order, seeded):
    # w-rich: wallet 500.00 and card 1000.00 pay for exactly 2 + 5 yearly packages of 200.00.
    results = all_at_once(50, lambda n: place_order(
        {"device_id": f"tv-{n}", "package_id": "vip_year", "phone": RICH}))
    assert {status for status, _ in results} == {201}
    outcome = Counter((body["status"], body["reason"]) for _, body in results)
    assert outcome == {("awaiting_code", None): 7, ("failed", "insufficient_funds"): 43}
    assert balance(seeded, "wallet:w-rich") == 10000
    assert balance(seeded, "card:w-rich") == 0
    assert balance(seeded, "holds:CNY") == 7 * 20000
    codes = codes_sent_to(seeded, RICH)
    assert len(codes) == 7 and len(set(codes)) == 7  # pending orders of one phone never share


@pytest.mark.settings(**ALL_AT_ONCE)
def test_parallel_orders_for_one_phone_get_one_code_or_link(server, place_order, seeded):
    """The per-phone limit holds under a race: exactly one of twenty TVs gets to send an SMS."""
    results = all_at_once(20, lambda n: place_order(
        {"device_id": f"tv-{n}", "package_id": "vip_month", "phone": UNBOUND}))
    assert Counter(status for status, _ in results) == {201: 1, 429: 19}
    assert {body["code"] for status, body in results if status == 429} == {"phone_rate_limited"}
    assert len(sms_to(seeded, UNBOUND)) == 1


def test_twenty_identical_confirmations_capture_once(app, server, place_order, seeded, clock):
    status, created = place_order({"device_id": "tv-42", "package_id": "vip_year", "phone": RICH})
    assert status == 201
    code = code_sent_to(seeded, RICH)
    results = all_at_once(20, lambda n: post(
        f"{server}/sms/inbound", {"from": RICH, "text": code},
        {"X-Inbound-Secret": INBOUND_SECRET}))
    assert {status for status, _ in results} == {200}
    assert stored_order(seeded, created["id"]).status == "activated"
    with seeded.db.transaction() as session:
        captures = session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.kind == "capture"))
        assert captures == 1
        assert session.scalar(select(func.count()).select_from(Order)) == 1
    assert balance(seeded, "wallet:w-rich") == 30000
    assert balance(seeded, "merchant:CNY") == 20000
    assert len(sms_to(seeded, RICH, "confirmed")) == 1
    assert len(sms_to(seeded, RICH, "reply")) == 19  # "that code was already used"
    request = urllib.request.Request(f"{server}/api/v1/devices/tv-42/entitlements",
                                     headers=tv_auth(app))
    with urllib.request.urlopen(request) as response:
        [entitlement] = json.loads(response.read())["entitlements"]
    until = clock.now + timedelta(days=365)
    assert entitlement["active_until"] == until.isoformat().replace("+00:00", "Z")


def signed_in_page(client, payment_url: str, account: str, password: str) -> tuple[str, dict]:
    """Sign in on a payment page; return its path and the form a phone would submit to pay."""
    page = PayPage(client, urllib.parse.urlsplit(payment_url).path)
    assert page.sign_in(account, password).status_code == 303
    form = {"csrf_token": page._csrf(), "source": "wallet",
            "cookie": f"session={client.get_cookie('session').value}"}
    return page.path, form


def submit(url: str, form: dict) -> int:
    fields = {k: v for k, v in form.items() if k != "cookie"}
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(),
                                     method="POST", headers={"Cookie": form["cookie"]})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_twenty_submits_of_one_payment_page_pay_once(server, place_order, client, seeded):
    status, created = place_order(
        {"device_id": "tv-42", "package_id": "vip_year", "phone": UNBOUND})
    path, form = signed_in_page(client, created["payment_url"], "w-rich", "135790")
    results = all_at_once(20, lambda n: submit(f"{server}{path}/pay", form))
    assert results == [303] * 20  # each tab lands on the receipt
    assert stored_order(seeded, created["id"]).status == "activated"
    assert paid_entries(seeded, created["id"]) == 1
    assert balance(seeded, "wallet:w-rich") == 30000
    assert balance(seeded, "merchant:CNY") == 20000


@pytest.mark.settings(**NO_LIMITS)
def test_page_payments_racing_the_sms_code_pay_once(server, place_order, client, seeded):
    """The viewer replies the code on one phone while paying the same order on its page."""
    status, created = place_order({"device_id": "tv-42", "package_id": "vip_year", "phone": RICH})
    code = code_sent_to(seeded, RICH)
    path, form = signed_in_page(client, created["payment_url"], "w-card", "246802")
    form["source"] = "card"

    def either(n: int) -> int:
        if n % 2:
            return submit(f"{server}{path}/pay", form)
        return post(f"{server}/sms/inbound", {"from": RICH, "text": code},
                    {"X-Inbound-Secret": INBOUND_SECRET})[0]

    assert set(all_at_once(20, either)) <= {200, 303}
    assert stored_order(seeded, created["id"]).status == "activated"
    assert paid_entries(seeded, created["id"]) == 1
    paid_by_code = stored_order(seeded, created["id"]).paid_from == "wallet:w-rich"
    assert balance(seeded, "wallet:w-rich") == (30000 if paid_by_code else 50000)
    assert balance(seeded, "card:w-card") == (100000 if paid_by_code else 80000)
    assert balance(seeded, "holds:CNY") == 0 and balance(seeded, "merchant:CNY") == 20000
