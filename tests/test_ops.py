"""Operations: /healthz, /readyz over the real stores and SMS providers, and /metrics counting a
real flow, in one process and added up across gunicorn workers."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify, request
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway import create_app
from gateway.backend import checkout
from gateway.background import Worker
from gateway.context import services
from gateway.domain.replies import CodeOutcome
from tests import twilio_fake
from tests.browser import live_server
from tests.conftest import RICH, code_sent_to, order, reply, stored_order, tv_auth
from tests.processes import command, free_port, gunicorn, service_env, started, wait_for
from tests.smpp_helpers import running, wait_until

SECRET_KEY = "test-secret-key-0123456789"  # the app fixture's
QUICK = 3.0  # seconds within which /readyz must answer, whatever is down

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def ready(client: Any) -> tuple[int, dict[str, Any], float]:
    """GET /readyz: status, JSON body, seconds taken."""
    started = time.monotonic()
    response = client.get("/readyz")
    took = time.monotonic() - started
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, response.get_json(), took


def test_healthz_answers_while_the_process_runs(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


# --- readiness ---------------------------------------------------------------------------------


def test_readyz_is_ready_on_the_real_stores(client):
    status, body, took = ready(client)
    assert status == 200 and body["status"] == "ready", body
    checks = body["checks"]
    assert set(checks) == {"database", "redis", "sms"}
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert checks["database"]["ms"] >= 0 and checks["redis"]["ms"] >= 0
    assert checks["sms"] == {"ok": True, "providers": {"log": {
        "ok": True, "ms": checks["sms"]["providers"]["log"]["ms"],
        "detail": "messages are logged, not sent"}}}
    assert took < QUICK


@pytest.mark.settings(SMS_PROVIDER="smpp")
def test_sms_readiness_follows_the_smpp_workers_bind(client, gw, smsc):
    status, body, _ = ready(client)
    assert status == 503 and body["status"] == "not_ready"
    smpp = body["checks"]["sms"]["providers"]["smpp"]
    assert not smpp["ok"] and "no SMPP worker has stamped a bind" in smpp["detail"]
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]

    with running(gw, smsc.port):
        status, body, _ = ready(client)
        assert status == 200, body
        smpp = body["checks"]["sms"]["providers"]["smpp"]
        assert smpp["detail"] == "bound: default 1 bind"
        assert smpp["connections"] == {"default": {"binds": 1, "window_in_use": 0,
                                                   "tps": 0.0, "throttled": 0}}

        smsc.go_down()  # the worker loses its bind and withdraws its stamp
        wait_until(lambda: ready(client)[0] == 503, what="not ready without a bind")
        smsc.come_back()
        wait_until(lambda: ready(client)[0] == 200, timeout=30, what="ready once bound again")


@pytest.mark.settings(REDIS_URL="redis://:redis-password-0123@127.0.0.1:1/0")
def test_readyz_names_redis_when_redis_is_down(client):
    status, body, took = ready(client)
    assert took < QUICK
    assert status == 503 and body["status"] == "not_ready"
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["sms"]["ok"]
    assert not checks["redis"]["ok"]
    assert "127.0.0.1:1" in checks["redis"]["detail"]
    assert "Traceback" not in json.dumps(body)
    assert_no_secret(body, "redis-password-0123")


def assert_no_secret(body: dict[str, Any], *secrets: str) -> None:
    text = json.dumps(body)
    for secret in (SECRET_KEY, *secrets):
        assert secret not in text


@contextmanager
def app_with(var_dir: Path, **settings: Any) -> Iterator[Flask]:
    """An app on other stores than the ``app`` fixture's (which empties its database first)."""
    app = create_app({"REDIS_URL": os.environ.get("REDIS_URL"), "VAR_DIR": str(var_dir),
                      "REDIS_PREFIX": f"test:{uuid.uuid4().hex}:", "SECRET_KEY": SECRET_KEY,
                      "SMS_PROVIDER": "log", **settings})
    try:
        yield app
    finally:
        services(app).close()


@pytest.mark.parametrize("where", ["postgresql", "sqlite"])
def test_readyz_names_the_database_when_it_is_down(where, var_dir, tmp_path):
    url, place = {
        "postgresql": ("postgresql+psycopg://postgres:db-password-0123@127.0.0.1:1/test",
                       "127.0.0.1:1/test"),
        "sqlite": (f"sqlite:///{tmp_path}", "unable to open database file"),  # a folder
    }[where]
    with app_with(var_dir, DATABASE_URL=url) as app:
        client = app.test_client()
        status, body, took = ready(client)
        assert took < QUICK
        assert status == 503 and body["status"] == "not_ready"
        database = body["checks"]["database"]
        assert not database["ok"] and place in database["detail"], database
        assert body["checks"]["redis"]["ok"] and body["checks"]["sms"]["ok"]
        assert_no_secret(body, "db-password-0123")
        # the process itself is fine, and its metrics still answer, without the SQL gauge
        assert client.get("/healthz").status_code == 200
        samples = scrape(client)
        assert not any(name == "tvpay_sms_queue_depth" for name, _ in samples)


# --- readiness of Twilio ------------------------------------------------------------------------


@pytest.fixture
def twilio_api() -> Iterator[dict[str, Any]]:
    """The fake Twilio API (tests/twilio_fake.py), which also answers an account fetch."""
    fake = twilio_fake.FakeTwilio()
    app = fake.app()
    fetches: list[str] = []

    @app.get("/2010-04-01/Accounts/<sid>.json")
    def account(sid: str) -> tuple[Response, int]:
        fetches.append(sid)
        auth = request.authorization
        if sid != twilio_fake.ACCOUNT_SID or auth is None or (auth.username, auth.password) != (
                twilio_fake.ACCOUNT_SID, twilio_fake.AUTH_TOKEN):
            return jsonify(code=20003, message="Authenticate", status=401), 401
        return jsonify(sid=sid, status="active", type="Full", friendly_name="TV Pay"), 200

    with live_server(app) as base:
        yield {"base": base, "fetches": fetches}


@pytest.fixture
def extra_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if "twilio_api" not in request.fixturenames:
        return {}
    return twilio_fake.settings(request.getfixturevalue("twilio_api")["base"])


def test_twilio_is_ready_when_its_account_answers_and_is_asked_once_a_minute(client, twilio_api):
    for _ in range(2):
        status, body, _took = ready(client)
        assert status == 200, body
        twilio = body["checks"]["sms"]["providers"]["twilio"]
        assert twilio["ok"] and twilio["detail"].startswith("account active")
    assert twilio_api["fetches"] == [twilio_fake.ACCOUNT_SID]  # the second probe used the cache


@pytest.mark.parametrize(("setting", "expected"), [
    ({"TWILIO_AUTH_TOKEN": "wrong-twilio-token-0123"}, "HTTP 401, error 20003 (credentials "
                                                       "refused)"),
    ({"TWILIO_API_BASE": "http://127.0.0.1:1"}, "Twilio API at 127.0.0.1 unreachable"),
])
def test_twilio_is_not_ready_with_wrong_credentials_or_unreachable(twilio_api, var_dir,
                                                                   database_url, setting,
                                                                   expected):
    settings = {**twilio_fake.settings(twilio_api["base"]), **setting}
    with app_with(var_dir, DATABASE_URL=database_url, **settings) as app:
        client = app.test_client()
        for attempt in (1, 2):  # a failure is not cached: each probe asks again
            status, body, took = ready(client)
            assert took < QUICK
            assert status == 503 and not body["checks"]["sms"]["ok"]
            twilio = body["checks"]["sms"]["providers"]["twilio"]
            assert not twilio["ok"] and expected in twilio["detail"], twilio
            assert expected in body["checks"]["sms"]["detail"]
            assert_no_secret(body, "wrong-twilio-token-0123", twilio_fake.AUTH_TOKEN)
            if "TWILIO_AUTH_TOKEN" in setting:
                assert len(twilio_api["fetches"]) == attempt


@pytest.mark.settings(SMS_PROVIDER="smpp,twilio")
def test_sms_is_ready_while_one_provider_of_the_failover_list_can_send(client, twilio_api):
    status, body, _ = ready(client)
    assert status == 200, body
    providers = body["checks"]["sms"]["providers"]
    assert list(providers) == ["smpp", "twilio"]
    assert not providers["smpp"]["ok"] and providers["twilio"]["ok"]


# --- metrics -----------------------------------------------------------------------------------


@pytest.mark.settings(SMS_PROVIDER="smpp")
def test_a_paid_order_is_counted_from_request_to_activation(client, seeded, smsc):
    gw = seeded
    before = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(scrape(client), name, **labels) - value(before, name, **labels)

    with running(gw, smsc.port):
        created = order(client, RICH).get_json()
        assert created["status"] == "awaiting_code"
        code = re.search(r"回复 (\d{6})", smsc.wait_for_message(RICH).text).group(1)
        smsc.reply(RICH, code)
        wait_until(lambda: stored_order(gw, created["id"]).status == "activated",
                   what="the reply over SMPP to activate the order")
        smsc.wait_for_message(RICH, count=2)
        wait_until(lambda: grew("tvpay_sms_total", provider="smpp", status="delivered") == 2,
                   what="both SMS (code, confirmation) counted delivered")

    for status in ("created", "awaiting_code", "paid", "activated"):
        assert grew("tvpay_orders_total", status=status, channel="sms_code", kind="package") == 1
    assert grew("tvpay_orders_total", status="failed", channel="sms_code", kind="package") == 0
    assert grew("tvpay_sms_total", provider="smpp", status="submitted") == 2
    assert grew("tvpay_http_request_duration_seconds_count", method="POST",
                route="/api/v1/orders", status="201") == 1
    assert grew("tvpay_code_reply_to_activation_seconds_count") == 1
    assert grew("tvpay_code_reply_to_activation_seconds_sum") > 0


def test_a_rolled_back_transaction_counts_nothing(client, seeded, clock):
    gw = seeded
    created = order(client, RICH).get_json()
    code = code_sent_to(gw, RICH)
    before = scrape(client)
    with pytest.raises(RuntimeError), gw.db.transaction() as session:
        [result] = checkout.confirm_codes(gw, session, [(RICH, code)], clock())
        assert result.outcome is CodeOutcome.CONFIRMED  # paid, activated, code SMS closed
        raise RuntimeError("something after the payment failed")
    assert stored_order(gw, created["id"]).status == "awaiting_code"
    after = scrape(client)
    activated = {"status": "activated", "channel": "sms_code", "kind": "package"}
    closed_sms = {"provider": "none", "status": "failed"}  # the code SMS, never sent
    assert value(after, "tvpay_orders_total", **activated) == value(
        before, "tvpay_orders_total", **activated)
    assert value(after, "tvpay_sms_total", **closed_sms) == value(
        before, "tvpay_sms_total", **closed_sms)

    reply(client, RICH, code)  # the same change, committed this time
    after = scrape(client)
    assert value(after, "tvpay_orders_total", **activated) == value(
        before, "tvpay_orders_total", **activated) + 1
    assert value(after, "tvpay_sms_total", **closed_sms) == value(
        before, "tvpay_sms_total", **closed_sms) + 1


def test_the_sms_queue_depth_is_read_from_sql_and_sent_sms_are_counted(client, seeded, clock):
    before = scrape(client)
    order(client, RICH)
    clock.advance(seconds=42)
    samples = scrape(client)
    assert value(samples, "tvpay_sms_queue_depth", status="queued") == 1
    assert value(samples, "tvpay_sms_queue_depth", status="sending") == 0
    # not routed to an SMPP connection yet: its age shows under "none"
    assert value(samples, "tvpay_sms_queue_age_seconds", connection="none") == 42
    assert Worker(seeded).run_once()[1] == 1  # the log provider sends it
    samples = scrape(client)
    assert value(samples, "tvpay_sms_queue_depth", status="queued") == 0
    assert value(samples, "tvpay_sms_total", provider="log", status="sent") == value(
        before, "tvpay_sms_total", provider="log", status="sent") + 1


@pytest.mark.settings(SMS_PROVIDER="smpp")
def test_the_smpp_window_gauge_counts_submits_not_answered_yet(client, seeded, smsc):
    smsc.response_delay = 3.0  # the SMSC answers each submit_sm after 3 s

    def in_use() -> float:
        return value(scrape(client), "tvpay_smpp_window_in_use", connection="default")

    with running(seeded, smsc.port):
        order(client, RICH)
        wait_until(lambda: in_use() == 1, timeout=30,  # relay, claim and bind, on a busy CI box
                   what="the code SMS's submit_sm in the window")
        wait_until(lambda: in_use() == 0, what="the answer to free the window")
        assert smsc.wait_for_message(RICH)


def test_request_routes_are_url_rules_never_paths(client, seeded):
    created = order(client, RICH).get_json()
    token = created["payment_url"].rsplit("/", 1)[1]
    client.get(f"/w/{token}")
    client.get(f"/api/v1/orders/{created['id']}")
    client.get(f"/no/such/{token}")
    text = client.get("/metrics").get_data(as_text=True)
    assert token not in text and created["id"] not in text
    samples = parse(text)
    assert value(samples, "tvpay_http_request_duration_seconds_count", method="GET",
                 route="/api/v1/orders/<order_id>", status="200") >= 1
    assert value(samples, "tvpay_http_request_duration_seconds_count", method="GET",
                 route="unmatched", status="404") >= 1


# --- other processes: gunicorn workers, the background worker, the SMPP worker ------------------


@contextmanager
def metrics_of(role: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``role``'s Procfile command with METRICS_PORT set; yield its metrics URL once it
    answers."""
    port = free_port()
    with started(command(role), {**env, "METRICS_PORT": str(port)}) as process:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(url, process)
        yield url


def test_the_background_worker_serves_its_metrics_on_metrics_port(client, seeded,
                                                                    database_url):
    order(client, RICH)  # a code SMS for the worker to send (log provider)
    with metrics_of("worker", service_env(seeded, database_url)) as url:
        wait_until(lambda: value(parse(requests.get(url, timeout=5).text), "tvpay_sms_total",
                                 provider="log", status="sent") == 1,
                   what="the worker's metrics to count the SMS it sent")


@pytest.mark.settings(SMS_PROVIDER="smpp")
def test_the_smpp_worker_serves_its_metrics_and_its_bind_makes_the_service_ready(
        client, gw, database_url, smsc):
    assert ready(client)[0] == 503  # no SMPP worker yet
    env = service_env(gw, database_url, SMS_PROVIDER="smpp", SMPP_HOST="127.0.0.1",
                      SMPP_PORT=str(smsc.port), SMPP_PASSWORD=smsc.password)
    with metrics_of("smpp", env) as url:
        samples = parse(requests.get(url, timeout=5).text)
        assert value(samples, "tvpay_smpp_window_in_use", connection="default") == 0
        wait_until(lambda: value(parse(requests.get(url, timeout=5).text),
                                 "tvpay_smpp_binds_up", connection="default") == 1,
                   what="the bind counted up")
        wait_until(lambda: ready(client)[0] == 200,
                   what="readiness to see the bind of python -m smpp")


def answered_by_each_worker(folder: Path) -> list[float]:
    """GET /api/v1/packages answered by each gunicorn worker, read from its own values file."""
    return [value({(sample.name, frozenset(sample.labels.items())): sample.value
                   for metric in MultiProcessCollector.merge([str(path)])
                   for sample in metric.samples},
                  "tvpay_http_request_duration_seconds_count", method="GET",
                  route="/api/v1/packages", status="200")
            for path in sorted(folder.glob("histogram_*.db"))]


def test_metrics_add_up_across_gunicorn_workers(app, seeded, database_url, tmp_path):
    values = tmp_path / "prometheus"
    values.mkdir()
    with gunicorn(service_env(seeded, database_url),
                  PROMETHEUS_MULTIPROC_DIR=str(values)) as base:
        made = 0
        # Until both workers answered some: one may still be starting when the other answers.
        while made < 5 or len(answered := answered_by_each_worker(values)) < 2 or \
                min(answered) == 0:
            assert made < 300, "one gunicorn worker answered every request"
            assert requests.get(f"{base}/api/v1/packages", headers=tv_auth(app),
                                timeout=10).status_code == 200
            made += 1
        each = answered_by_each_worker(values)
        assert len(each) == 2 and min(each) > 0 and sum(each) == made
        response = requests.get(f"{base}/metrics", timeout=10)
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "tvpay_http_request_duration_seconds_count", method="GET",
                     route="/api/v1/packages", status="200") == made
        readiness = requests.get(f"{base}/readyz", timeout=10)
        assert readiness.status_code == 200, readiness.text
