"""The stream role (the Procfile's `stream` line, gevent workers) and the bounds on streams: many
TVs following live events take neither the web tier's threads nor a connection each."""

from __future__ import annotations

import os
import socket
import time

import pytest
import requests

from gateway.backend import stream_hub
from tests.conftest import INBOUND_SECRET, RICH, code_sent_to, tv_auth, tv_key
from tests.processes import (
    LIMITS_OFF,
    gunicorn,
    procfile,
    service_env,
    stream_role,
    wait_for,
    workers_of,
)
from tests.test_live_events import WAIT, Reader, statuses

pytestmark = pytest.mark.slow


class RawStream:
    """An event stream held over a plain socket, as a TV's own SSE client holds it."""

    def __init__(self, base: str, path: str, key: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.socket = socket.create_connection((host, int(port)), timeout=WAIT)
        self.socket.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream"
                            f"\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
        self.received = b""

    def until(self, text: str) -> None:
        """Read until ``text`` has come (fail after WAIT seconds or at the end)."""
        deadline = time.monotonic() + WAIT
        while text.encode() not in self.received:
            self.socket.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.socket.recv(65536)
            assert chunk, f"the stream ended before {text!r}: {self.received[-500:]!r}"
            self.received += chunk

    def close(self) -> None:
        self.socket.close()


def open_stream(url: str, headers: dict[str, str]) -> requests.Response:
    response = requests.get(url, headers=headers, stream=True, timeout=(5, 30))
    assert response.status_code == 200, response.text
    return response


def assert_too_many_streams(response: requests.Response) -> None:
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "too_many_streams"
    assert int(response.headers["Retry-After"]) >= 1


def test_the_stream_role_serves_both_routes_to_a_tv_app_woken_through_redis(
        app, seeded, database_url):
    gw = seeded
    assert "gunicorn_stream.conf.py" in procfile("stream")  # gevent workers
    env = service_env(gw, database_url)
    with gunicorn(env, workers=1) as web, stream_role(env) as (streams, _master):
        device_url = f"{streams}/api/v1/devices/tv-42/events"
        assert requests.get(device_url, timeout=10).status_code == 401  # the TV app's key
        device = open_stream(device_url, tv_auth(app))
        on_tv = Reader(device.iter_content(chunk_size=None))
        created = requests.post(f"{web}/api/v1/orders", timeout=10, headers=tv_auth(app), json={
            "device_id": "tv-42", "package_id": "vip_year", "phone": RICH}).json()
        with open_stream(f"{streams}/api/v1/orders/{created['id']}/events",
                         tv_auth(app)) as followed:
            reader = Reader(followed.iter_content(chunk_size=None))
            assert statuses(reader.until("awaiting_code")) == ["created", "awaiting_code"]
            replied = requests.post(f"{web}/sms/inbound", timeout=10,
                                    headers={"X-Inbound-Secret": INBOUND_SECRET},
                                    json={"from": RICH, "text": code_sent_to(gw, RICH)})
            assert replied.status_code == 200
            sent = time.monotonic()
            assert statuses(reader.until("activated")) == ["paid", "activated"]
            # Woken through Redis, not found by the process's SQL read 15 s later.
            assert time.monotonic() - sent < stream_hub.SWEEP_SECONDS / 3
            assert reader.ended.wait(WAIT), "the order stream goes on after the final status"
        assert statuses(on_tv.until("activated")) == [
            "created", "awaiting_code", "paid", "activated"]
        assert not on_tv.ended.is_set()
    # SIGTERM ended the device stream at once (the stop waits less than graceful_timeout)
    assert on_tv.ended.wait(WAIT)
    device.close()


def test_the_stream_role_refuses_a_stream_beyond_its_bound_until_a_place_frees(
        app, seeded, database_url):
    env = service_env(seeded, database_url, SSE_MAX_SECONDS="4")
    with stream_role(env, SSE_MAX_STREAMS="2") as (streams, _master):
        url = f"{streams}/api/v1/devices/tv-42/events"
        held = [open_stream(url, tv_auth(app)) for _ in range(2)]
        assert_too_many_streams(requests.get(url, headers=tv_auth(app), timeout=10))
        for response in held:  # each ends after SSE_MAX_SECONDS, giving its place back
            assert b"".join(response.iter_content(chunk_size=None)).startswith(b"retry: 2000")
            response.close()
        open_stream(url, tv_auth(app)).close()


def test_a_web_worker_holds_only_its_few_streams_and_orders_still_answer(
        app, seeded, database_url):
    env = service_env(seeded, database_url)
    with gunicorn(env, workers=1, SSE_WEB_MAX_STREAMS="2", GUNICORN_THREADS="4") as web:
        url = f"{web}/api/v1/devices/tv-42/events"
        held = [open_stream(url, tv_auth(app)) for _ in range(2)]
        assert_too_many_streams(requests.get(url, headers=tv_auth(app), timeout=10))
        created = requests.post(f"{web}/api/v1/orders", timeout=10, headers=tv_auth(app), json={
            "device_id": "tv-42", "package_id": "vip_year", "phone": RICH})
        assert created.status_code == 201
        for response in held:
            response.close()


def test_hundreds_of_streams_cost_the_stream_role_a_socket_each_and_orders_still_answer(
        app, seeded, database_url):
    key = tv_key(app)
    env = service_env(seeded, database_url, **LIMITS_OFF)
    with gunicorn(env, workers=1) as web, stream_role(env) as (streams, master):
        tvs = [RawStream(streams, f"/api/v1/devices/tv-{k}/events", key) for k in range(300)]
        for tv in tvs:
            tv.until("retry: 2000")
        [worker] = workers_of(master.pid)
        # A socket a TV, and no Redis or database connection of a stream's own: the process's
        # pools hold at most 50 Redis and 30 database connections.
        assert len(os.listdir(f"/proc/{worker}/fd")) < len(tvs) + 120
        created = requests.post(f"{web}/api/v1/orders", timeout=WAIT, headers=tv_auth(app),
                                json={"device_id": "tv-7", "package_id": "vip_year",
                                      "phone": RICH})
        assert created.status_code == 201
        tvs[7].until(f'"order_id": "{created.json()["id"]}", "status": "created"')
        wait_for(f"{streams}/healthz", master)
        for tv in tvs:
            tv.close()
