"""Shedding new orders (`503 overloaded`) in one process: the queue rule, what is shed and what
goes on, that a refused order writes nothing, the SMS backlog, and how the state is shown.

Under gunicorn the wait for a thread comes from its worker (``tests/test_overload_processes.py``);
here a test gives it in the WSGI environ, as that worker does.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from werkzeug.test import EnvironBuilder

from gateway.config import ConfigError, load_settings
from gateway.domain.errors import Overloaded
from gateway.domain.overload import OrderSlots, OverloadReason, QueueWaits, retry_after_ms
from gateway.store import outbox
from gateway.store.models import Base, Order
from tests.conftest import RICH, UNBOUND, code_sent_to, order, reply, stored_order
from tests.test_bills_and_commands import import_bills, last_reply, pair
from tests.test_openapi import Contract, response_codes, tv_operations
from tests.test_ops import scrape, value
from tests.test_wap import PayPage, link_in_sms

QUEUE_WAIT = "gateway.queue_wait"  # the environ key of gunicorn.conf.py's worker
STANDING = {QUEUE_WAIT: 0.2}  # with the default bound of 50 ms, a queue that stood 150 ms
BRIEF = {QUEUE_WAIT: 0.001}
ADMIN_KEY = "admin-key-0123456789abcdef"

pytestmark = pytest.mark.settings(ADMIN_API_KEY=ADMIN_KEY)


# --- the rule -----------------------------------------------------------------------------------


def test_a_queue_stands_once_waits_stayed_above_the_bound_for_the_interval():
    waits = QueueWaits(bound=0.05, interval=0.05)
    assert not waits.observe(0.01, now=10.0)
    assert not waits.observe(0.06, now=10.0)  # above for 10 ms: one slow moment sheds nothing
    assert not waits.observe(0.07, now=10.02)  # above since 9.99: 30 ms
    assert waits.observe(0.06, now=10.041)  # 51 ms
    assert waits.observe(0.051, now=10.3) and waits.standing
    assert not waits.observe(0.05, now=10.31)  # one request at the bound: the queue drained
    assert not waits.standing and waits.last_wait == 0.05
    assert not waits.observe(0.08, now=11.0)


def test_one_request_that_waited_the_bound_and_the_interval_shows_a_standing_queue():
    waits = QueueWaits(bound=0.05, interval=0.05)
    assert not waits.observe(0.099, now=5.0)
    assert waits.observe(0.101, now=6.0)
    assert not waits.observe(0.0, now=6.1)


def test_order_slots_let_an_order_wait_its_turn_only_if_it_can_start_in_time():
    slots = OrderSlots(1)
    for _ in range(5):  # five orders timed: a worker's own pace, after its first slow ones
        taken = slots.take(0.05)
        time.sleep(0.01)
        slots.give(taken)
    assert 0.01 <= slots.hold < 0.5
    working = slots.take(0.05)
    assert slots.take(0.001) is None  # an order's turn takes longer than that: no wait at all
    threading.Timer(0.02, slots.give, [working]).start()
    assert slots.take(1.0) is not None  # it waited for the order at work to give its slot back
    assert slots.expected_wait() >= slots.hold


def test_a_new_workers_first_orders_wait_their_turn_whatever_the_guess():
    slots = OrderSlots(1)
    working = slots.take(None)
    threading.Timer(0.02, slots.give, [working]).start()
    assert slots.take(0.005) is not None  # nothing timed yet: no guess to refuse it on


@pytest.mark.parametrize("reason, low, high", [
    (OverloadReason.QUEUE_WAIT, 500, 1500), (OverloadReason.SMS_BACKLOG, 5000, 10000)])
def test_a_refusal_says_when_to_retry_spread_over_a_range(reason, low, high):
    assert retry_after_ms(reason, lambda: 0.0) == low
    assert retry_after_ms(reason, lambda: 0.999999) == high - 1
    refused = Overloaded("busy", reason=reason.value, retry_after_ms=low + 1)
    assert refused.retry_after == math.ceil((low + 1) / 1000) and refused.retry_after >= 1


@pytest.mark.parametrize("name, raw", [
    ("OVERLOAD_MAX_WAIT_MS", "-1"), ("OVERLOAD_MAX_WAIT_MS", "fast"),
    ("OVERLOAD_MAX_WAIT_MS", "10001"), ("OVERLOAD_MAX_CONCURRENT_ORDERS", "-2"),
    ("OVERLOAD_MAX_SMS_BACKLOG_SECONDS", "1.5"),
    ("OVERLOAD_MAX_SMS_BACKLOG_SECONDS", "3601")])
def test_a_bad_bound_stops_the_service_naming_the_variable(tmp_path, name, raw):
    with pytest.raises(ConfigError, match=f"^{name} must be"):
        load_settings({"VAR_DIR": str(tmp_path), name: raw}, environ={})


NAMES = ("OVERLOAD_MAX_WAIT_MS", "OVERLOAD_MAX_CONCURRENT_ORDERS",
         "OVERLOAD_MAX_SMS_BACKLOG_SECONDS")


def test_the_bounds_default_for_two_cores_and_0_turns_a_check_off(tmp_path):
    defaults = load_settings({"VAR_DIR": str(tmp_path)}, environ={})
    assert tuple(getattr(defaults, name) for name in NAMES) == (50, 2, 30)
    off = load_settings({"VAR_DIR": str(tmp_path), **dict.fromkeys(NAMES, "0")}, environ={})
    assert tuple(getattr(off, name) for name in NAMES) == (0, 0, 0)


# --- what is shed, and what it leaves ------------------------------------------------------------


def footprint(gw) -> dict[str, Any]:
    """Every table's row count and every Redis key of the app: what a request may have written."""
    with gw.db.read() as session:
        rows = {table.name: session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}
    return {**rows, "redis": sorted(gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*"))}


def assert_overloaded(response, reason: str) -> dict[str, Any]:
    assert response.status_code == 503, response.get_json()
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert (problem["code"], problem["reason"]) == ("overloaded", reason)
    assert response.headers["Retry-After"] == str(problem["retry_after"])
    assert problem["retry_after"] == math.ceil(problem["retry_after_ms"] / 1000)
    return problem


def shed(client, reason: str) -> float:
    return value(scrape(client), "tvpay_orders_shed_total", reason=reason)


def test_a_standing_queue_sheds_new_orders_before_anything_is_written(client, seeded):
    failed = order(client, "+8613700137000", "vip_year", device="tv-9").get_json()
    assert failed["status"] == "failed"  # too little money: an order to retry
    before, shed_before = footprint(seeded), shed(client, "queue_wait")

    refused = client.post("/api/v1/orders", environ_base=STANDING,
                          headers={"Idempotency-Key": "tv-42-1"},
                          json={"device_id": "tv-42", "package_id": "vip_year", "phone": RICH})
    problem = assert_overloaded(refused, "queue_wait")
    assert 500 <= problem["retry_after_ms"] < 1500 and problem["retry_after"] in (1, 2)
    assert_overloaded(client.post("/api/v1/devices/tv-new/payment-codes", environ_base=STANDING,
                                  json={"kind": "recharge", "amount": 5000}), "queue_wait")
    assert_overloaded(client.post(f"/api/v1/orders/{failed['id']}/retry",
                                  environ_base=STANDING), "queue_wait")
    # no order, hold, SMS, event, device claim, rate-limit slot or Idempotency-Key record
    assert footprint(seeded) == before
    assert shed(client, "queue_wait") == shed_before + 3

    again = client.post("/api/v1/orders", environ_base=BRIEF,
                        headers={"Idempotency-Key": "tv-42-1"},
                        json={"device_id": "tv-42", "package_id": "vip_year", "phone": RICH})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["status"] == "awaiting_code"


def test_a_refusal_at_the_door_has_its_request_id_and_its_access_line(client, seeded, caplog):
    def access_line() -> tuple[Any, ...]:
        line = [r for r in caplog.records if r.name == "gateway.access"][-1]
        return line.request_id, line.method, line.route, line.status

    def refusals_timed() -> float:
        return value(scrape(client), "tvpay_http_request_duration_seconds_count", method="POST",
                     route="/api/v1/orders", status="503")

    caplog.set_level(logging.INFO)
    before = refusals_timed()
    refused = client.post("/api/v1/orders", environ_base=STANDING,
                          headers={"X-Request-ID": "tv-42.order_7"},
                          json={"device_id": "tv-42", "package_id": "vip_year", "phone": RICH})
    assert_overloaded(refused, "queue_wait")
    assert refused.headers["X-Request-ID"] == "tv-42.order_7"
    assert access_line() == ("tv-42.order_7", "POST", "/api/v1/orders", 503)
    assert refusals_timed() == before + 1
    anonymous = client.post(f"/api/v1/devices/{'9' * 12}/payment-codes", environ_base=STANDING,
                            json={"kind": "recharge", "amount": 100})
    assert re.fullmatch(r"[0-9a-f]{32}", anonymous.headers["X-Request-ID"])
    assert access_line() == (anonymous.headers["X-Request-ID"], "POST",
                             "/api/v1/devices/<device_id>/payment-codes", 503)


@pytest.mark.settings(OVERLOAD_MAX_CONCURRENT_ORDERS=1)  # the worker's one slot
def test_an_order_gives_its_slot_back_however_it_is_answered(client, seeded):
    """A new order refused on its merits, failed or made leaves the worker's slot free."""
    assert client.post("/api/v1/orders", json={"device_id": "tv-1", "package_id": "nope",
                                               "phone": RICH}).status_code == 400
    assert order(client, "+8613700137000", "vip_year").get_json()["status"] == "failed"
    assert order(client).status_code == 201
    taken = seeded.admission.take_order_slot(0.0)
    assert taken is not None  # free: taken at once, with no time to wait
    seeded.admission.give_order_slot(taken)


def test_replies_page_payments_and_reads_go_on_while_new_orders_are_shed(client, seeded):
    by_code = order(client, RICH, "vip_month").get_json()
    by_page = order(client, UNBOUND, "vip_year", device="tv-7").get_json()
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    assert page.sign_in("w-rich", "135790").status_code == 303

    client.environ_base.update(STANDING)  # every request from here waited 200 ms
    assert_overloaded(order(client, RICH, "vip_year", device="tv-8"), "queue_wait")
    assert client.get(f"/api/v1/orders/{by_code['id']}").status_code == 200
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert page.pay("wallet").status_code == 303
    assert stored_order(seeded, by_code["id"]).status == "activated"
    assert stored_order(seeded, by_page["id"]).status == "activated"
    assert client.get("/healthz").status_code == 200
    assert_overloaded(order(client, UNBOUND, "vip_year", device="tv-8"), "queue_wait")

    client.environ_base.update(BRIEF)  # the queue drained: the next request clears it
    assert order(client, UNBOUND, "vip_month", device="tv-8").status_code == 201


def test_the_document_lists_the_refusal_where_a_new_order_starts_and_answers_match(
        app, client, seeded):
    doc = client.get("/openapi.json").get_json()
    problems_503 = {operation["operationId"]: response_codes(doc, operation, "503")
                    for _, _, operation in tv_operations(doc)}
    assert {name for name, codes in problems_503.items() if "overloaded" in codes} == {
        "createOrder", "retryOrder", "createPaymentCode"}

    contract = Contract(app, doc)
    failed = order(client, "+8613700137000", device="tv-9").get_json()
    client.environ_base.update(STANDING)
    for refused in (order(client),
                    client.post(f"/api/v1/orders/{failed['id']}/retry"),
                    client.post("/api/v1/devices/tv-9/payment-codes",
                                json={"kind": "recharge", "amount": 100})):
        assert_overloaded(contract.check(refused), "queue_wait")
    assert contract.check(client.get("/readyz")).get_json()["overloaded"] is True


@pytest.mark.settings(OVERLOAD_MAX_CONCURRENT_ORDERS=1)  # the worker's one slot
def test_a_new_order_that_would_wait_too_long_for_its_turn_is_shed_at_once(client, seeded):
    for device in range(5):  # the worker times its first orders: it knows how long one takes
        assert order(client, f"+86136000000{device:02d}", device=f"tv-{device}").status_code == 201
    admission = seeded.admission
    taken = admission.take_order_slot(0.0)  # an order at work in the worker's one slot...
    time.sleep(0.06)  # ...longer than the 50 ms a new order may wait already
    before = footprint(seeded)
    started = time.monotonic()
    assert_overloaded(order(client), "queue_wait")
    assert time.monotonic() - started < 0.25  # at once: a wait would have lasted 0.5 s
    assert footprint(seeded) == before
    assert client.get("/readyz").get_json()["overload"]["reasons"] == ["queue_wait"]

    admission.give_order_slot(taken)  # the order at work is done: the next one is taken
    assert order(client).status_code == 201
    assert client.get("/readyz").get_json()["overloaded"] is False


@pytest.mark.settings(OVERLOAD_MAX_CONCURRENT_ORDERS=1)  # the worker's one slot
def test_a_new_order_waits_for_its_turn_when_it_may(client, seeded):
    admission = seeded.admission
    taken = admission.take_order_slot(0.0)
    given = threading.Event()

    def give_back() -> None:
        given.set()
        admission.give_order_slot(taken)

    threading.Timer(0.2, give_back).start()  # in a new worker's time: no guess refuses it
    assert order(client).status_code == 201
    assert given.is_set()  # it was taken only once the slot came back: it waited its turn
    assert client.get("/readyz").get_json()["overload"]["order_wait_ms"] > 0


@pytest.mark.settings(OVERLOAD_MAX_WAIT_MS=0)
def test_with_the_bound_at_0_waits_shed_nothing(client, seeded):
    assert order(client, environ_base={QUEUE_WAIT: 30.0}).status_code == 201


def test_readyz_and_the_metrics_show_the_standing_queue(client, seeded):
    client.environ_base.update(STANDING)
    status, body = (response := client.get("/readyz")).status_code, response.get_json()
    assert status == 200 and body["status"] == "ready"  # overloaded, and ready to say so at once
    assert body["overloaded"] is True
    assert body["overload"] == {"reasons": ["queue_wait"], "queue_wait_ms": 200.0,
                                "order_wait_ms": None, "max_wait_ms": 50,
                                "max_concurrent_orders": 2, "sms_backlog_seconds": 0.0,
                                "max_sms_backlog_seconds": 0}
    samples = scrape(client)
    assert value(samples, "tvpay_overloaded", reason="queue_wait") == 1
    assert value(samples, "tvpay_http_queue_wait_seconds_bucket", le="0.25") >= 2

    client.environ_base.update(BRIEF)
    body = client.get("/readyz").get_json()
    assert body["overloaded"] is False and body["overload"]["reasons"] == []
    assert value(scrape(client), "tvpay_overloaded", reason="queue_wait") == 0


def test_without_a_figure_from_the_server_the_queue_is_not_known(client, seeded):
    body = client.get("/readyz").get_json()
    assert body["overloaded"] is False and body["overload"]["queue_wait_ms"] is None


# --- the SMS backlog -----------------------------------------------------------------------------


@pytest.mark.settings(OVERLOAD_MAX_SMS_BACKLOG_SECONDS=30, OVERLOAD_MAX_CONCURRENT_ORDERS=1)
def test_an_sms_backlog_refuses_at_once_without_waiting_for_an_order_slot(client, seeded, clock):
    order(client, RICH, "vip_month")  # its code SMS waits: nothing sends
    clock.advance(seconds=31)
    taken = seeded.admission.take_order_slot(0.0)  # the worker's one slot, busy
    try:
        started = time.monotonic()
        problem = assert_overloaded(order(client, UNBOUND, environ_base=BRIEF), "sms_backlog")
        assert time.monotonic() - started < 0.25  # not after a wait for the slot
        assert 5000 <= problem["retry_after_ms"] < 10000
    finally:
        seeded.admission.give_order_slot(taken)


@pytest.mark.settings(OVERLOAD_MAX_SMS_BACKLOG_SECONDS=30)
def test_a_database_away_while_the_backlog_is_read_answers_503_service_unavailable(
        client, seeded, monkeypatch):
    def database_away(_db):
        raise OperationalError("select", {}, Exception("database away"))

    monkeypatch.setattr(outbox, "oldest_waiting", database_away)
    refused = order(client, UNBOUND, **{"X-Request-ID": "tv-8.order_1"})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert refused.get_json()["code"] == "service_unavailable"
    assert refused.headers["X-Request-ID"] == "tv-8.order_1"


def test_a_method_in_lower_case_is_judged_at_the_door_too(app, seeded):
    """Werkzeug reads the method in any case (as `python app.py`'s server hands it over)."""
    environ = EnvironBuilder(path="/api/v1/orders", method="POST", json={}).get_environ()
    environ.update(STANDING, REQUEST_METHOD="post")
    status = []
    body = b"".join(app.wsgi_app(environ, lambda line, headers: status.append(line)))
    assert status == ["503 SERVICE UNAVAILABLE"] and b'"queue_wait"' in body


@pytest.mark.settings(OVERLOAD_MAX_SMS_BACKLOG_SECONDS=30, ADMIN_API_KEY=ADMIN_KEY)
def test_an_old_sms_backlog_sheds_new_orders_until_it_drains(app, client, seeded, clock, tmp_path):
    waiting = order(client, RICH, "vip_month").get_json()  # its code SMS waits: nothing sends
    import_bills(app, tmp_path)
    pair(client, UNBOUND, device="tv-42")
    clock.advance(seconds=31)
    before = footprint(seeded)

    problem = assert_overloaded(order(client, UNBOUND, device="tv-8"), "sms_backlog")
    assert 5000 <= problem["retry_after_ms"] < 10000
    body = client.get("/readyz").get_json()
    assert body["overloaded"] is True and body["overload"]["reasons"] == ["sms_backlog"]
    assert body["overload"]["sms_backlog_seconds"] == 31.0
    assert body["overload"]["max_sms_backlog_seconds"] == 30
    assert value(scrape(client), "tvpay_sms_backlog_age_seconds") == 31
    dashboard = client.get("/admin", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert "Shedding new orders" in dashboard.get_data(as_text=True)

    reply(client, UNBOUND, "PAY 1")  # a bill by SMS is a new order too: told to come back
    assert "busy" in last_reply(seeded, UNBOUND)
    assert footprint(seeded) == {**before, "sms_outbox": before["sms_outbox"] + 1}  # the answer
    reply(client, RICH, code_sent_to(seeded, RICH))  # the order already made goes on
    assert stored_order(seeded, waiting["id"]).status == "activated"

    outbox.dispatch_queued(seeded.db, outbox.LogProvider(), clock)  # the backlog drains
    assert_overloaded(order(client, UNBOUND, device="tv-8"), "sms_backlog")  # read < 1 s ago
    clock.advance(seconds=1)
    assert order(client, UNBOUND, device="tv-8").status_code == 201
    assert client.get("/readyz").get_json()["overloaded"] is False
    with seeded.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 2
