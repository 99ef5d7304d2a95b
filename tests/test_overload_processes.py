"""Shedding new orders in the service as it runs: gunicorn from the Procfile's web line, one
worker with two threads, saturated on purpose; and an SMS backlog while no SMPP worker runs.

The worker's threads are held by two clients that began a request and stopped halfway (as a
slow phone network does), so the requests sent next wait in the worker's queue for exactly as
long as the test holds them: a saturation that owes nothing to the machine's speed.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import func, select

from gateway.store.models import Device, Order
from tests.conftest import INBOUND_SECRET, RICH, UNBOUND, code_sent_to, stored_order, tv_auth
from tests.processes import LIMITS_OFF, gunicorn, service_env
from tests.smpp_helpers import running, wait_until
from tests.test_ops import parse, value
from tests.test_wap import link_in_sms

THREADS = 2
HOLD = 0.5  # seconds the queued requests wait: far above twice the bound (50 ms)


@contextmanager
def held_threads(port: int, count: int = THREADS) -> Iterator[None]:
    """Take ``count`` threads of the worker with requests begun and never finished; give them
    back (the clients hang up) after the block."""
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for connection in stalled:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
    try:
        yield
    finally:
        for connection in stalled:
            connection.close()


class Sent:
    """A request sent now on a connection of its own, its answer read later."""

    def __init__(self, port: int, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if isinstance(body, dict):
            headers = {"Content-Type": "application/json", **(headers or {})}
            body = json.dumps(body)
        self.connection.request(method, path, body=body, headers=headers or {})

    def answer(self) -> tuple[int, Any, dict[str, str]]:
        response = self.connection.getresponse()
        raw = response.read()
        self.connection.close()
        body = json.loads(raw) if "json" in (response.getheader("Content-Type") or "") else raw
        return response.status, body, dict(response.getheaders())


def assert_shed(answer: tuple[int, Any, dict[str, str]], reason: str) -> None:
    status, problem, headers = answer
    assert status == 503, problem
    assert (problem["code"], problem["reason"]) == ("overloaded", reason)
    assert headers["Retry-After"] == str(problem["retry_after"])


def when_taken(post: Callable[[], requests.Response]) -> requests.Response:
    """The first answer to ``post`` that is not ``503 overloaded``, within 10 s."""
    deadline = time.monotonic() + 10
    while (answer := post()).status_code == 503 and time.monotonic() < deadline:
        assert answer.json()["code"] == "overloaded", answer.text
        time.sleep(float(answer.json()["retry_after_ms"]) / 1000)
    return answer


def orders_of(gw, *devices: str) -> int:
    with gw.db.read() as session:
        return session.scalar(select(func.count()).select_from(Order)
                              .where(Order.device_id.in_(devices)))


def test_a_saturated_worker_sheds_new_orders_only_writes_nothing_and_recovers(
        app, seeded, database_url):
    env = service_env(seeded, database_url, **LIMITS_OFF, GUNICORN_THREADS=str(THREADS))
    env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{env['PORT']}"  # the page's cookie over http
    key = tv_auth(app)
    with gunicorn(env, workers=1) as base:
        port = int(urlsplit(base).port or 0)
        api = f"{base}/api/v1"
        by_code = requests.post(f"{api}/orders", headers=key, timeout=10, json={
            "device_id": "tv-1", "package_id": "vip_month", "phone": RICH}).json()
        by_page = requests.post(f"{api}/orders", headers=key, timeout=10, json={
            "device_id": "tv-2", "package_id": "vip_month", "phone": UNBOUND}).json()
        viewer = requests.Session()  # the phone's browser, signed in on the payment page
        link = link_in_sms(seeded, UNBOUND)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                         viewer.get(f"{base}{link}", timeout=10).text).group(1)
        assert viewer.post(f"{base}{link}/sign-in", timeout=10, allow_redirects=False, data={
            "csrf_token": csrf, "account": "w-rich", "password": "135790"}).status_code == 303
        cookie = "; ".join(f"{c.name}={c.value}" for c in viewer.cookies)
        viewer.close()

        with held_threads(port):
            new_order = Sent(port, "POST", "/api/v1/orders", {
                "device_id": "tv-3", "package_id": "vip_month", "phone": RICH},
                {**key, "Idempotency-Key": "tv-3-1"})
            code_reply = Sent(port, "POST", "/sms/inbound", {
                "from": RICH, "to": "10690000", "text": code_sent_to(seeded, RICH)},
                {"X-Inbound-Secret": INBOUND_SECRET})
            page_payment = Sent(port, "POST", f"{link}/pay", f"csrf_token={csrf}&source=wallet",
                                {"Cookie": cookie,
                                 "Content-Type": "application/x-www-form-urlencoded"})
            qr_code = Sent(port, "POST", "/api/v1/devices/tv-4/payment-codes",
                           {"kind": "recharge", "amount": 5000}, key)
            time.sleep(HOLD)

        assert_shed(new_order.answer(), "queue_wait")
        assert code_reply.answer()[0] == 200
        assert page_payment.answer()[0] == 303
        assert_shed(qr_code.answer(), "queue_wait")
        assert stored_order(seeded, by_code["id"]).status == "activated"
        assert stored_order(seeded, by_page["id"]).status == "activated"
        assert orders_of(seeded, "tv-3", "tv-4") == 0  # nor their SMS, holds or events
        with seeded.db.read() as session:
            assert session.get(Device, "tv-4") is None  # not even claimed
        assert not list(seeded.redis.scan_iter(match=f"{seeded.settings.REDIS_PREFIX}idem:*"))

        # The load fell: the same order is taken. (A busy machine may still keep a request
        # waiting for a thread of this idle worker: then it is refused, writing nothing.)
        again = when_taken(lambda: requests.post(
            f"{api}/orders", timeout=10, headers={**key, "Idempotency-Key": "tv-3-1"},
            json={"device_id": "tv-3", "package_id": "vip_month", "phone": RICH}))
        assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
        overload = requests.get(f"{base}/readyz", timeout=10).json()["overload"]
        assert isinstance(overload["queue_wait_ms"], float)  # the worker said how long
        samples = parse(requests.get(f"{base}/metrics", timeout=10).text)
        assert value(samples, "tvpay_orders_shed_total", reason="queue_wait") >= 2
        assert value(samples, "tvpay_http_queue_wait_seconds_count") >= 10


def test_an_sms_backlog_sheds_new_orders_until_the_smpp_worker_drains_it(
        app, seeded, database_url, smsc):
    env = service_env(seeded, database_url, **LIMITS_OFF, SMS_PROVIDER="smpp",
                      SMPP_HOST="127.0.0.1", SMPP_PORT=str(smsc.port),
                      SMPP_PASSWORD=smsc.password, OVERLOAD_MAX_SMS_BACKLOG_SECONDS="1")
    key = tv_auth(app)
    with gunicorn(env, workers=1) as base:
        orders = f"{base}/api/v1/orders"
        first = requests.post(orders, headers=key, timeout=10, json={
            "device_id": "tv-1", "package_id": "vip_month", "phone": RICH})
        assert first.json()["status"] == "awaiting_code"  # its code SMS waits: no SMPP worker

        def overload() -> dict[str, Any]:
            return requests.get(f"{base}/readyz", timeout=10).json()["overload"]

        wait_until(lambda: overload()["reasons"] == ["sms_backlog"], timeout=10,
                   what="the code SMS to wait longer than the bound")
        refused = requests.post(orders, headers=key, timeout=10, json={
            "device_id": "tv-2", "package_id": "vip_month", "phone": UNBOUND})
        assert_shed((refused.status_code, refused.json(), dict(refused.headers)), "sms_backlog")
        assert 5 <= int(refused.headers["Retry-After"]) <= 10
        assert orders_of(seeded, "tv-2") == 0

        with running(seeded, smsc.port):  # the relay and an SMPP worker: the SMS leave
            wait_until(lambda: overload()["sms_backlog_seconds"] == 0, timeout=20,
                       what="the backlog to drain")
            again = when_taken(lambda: requests.post(orders, headers=key, timeout=10, json={
                "device_id": "tv-2", "package_id": "vip_month", "phone": UNBOUND}))
            assert again.status_code == 201, again.text
        assert overload()["reasons"] == []
