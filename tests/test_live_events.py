"""Live event streams (SSE): an order's changes and a TV's messages, across gunicorn workers."""

from __future__ import annotations

import codecs
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import func, select

from gateway.backend import live, tv_events
from gateway.backend.tv_events import TvEvent
from gateway.effects import after_commit
from gateway.store.models import Entitlement, OrderEvent
from tests.conftest import (
    INBOUND_SECRET,
    POOR,
    RICH,
    UNBOUND,
    code_sent_to,
    order,
    reply,
    stored_order,
    tv_auth,
)
from tests.processes import gunicorn, procfile, service_env

WAIT = 20  # seconds an awaited event may take before the test fails


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {"SSE_MAX_SECONDS": 10}  # a stream that waits in vain ends the test soon


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def parse(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """SSE blocks as they arrive: events as {"id", "event", "data"}, and
    {"comment": ...} or {"retry": ...} for the other lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    for chunk in chunks:
        buffer += decoder.decode(chunk)
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) if ": " in line else (line, "")
                          for line in block.split("\n"))
            if "data" in fields:
                yield {"id": int(fields["id"]), "event": fields["event"],
                       "data": json.loads(fields["data"])}
            elif "" in fields:
                yield {"comment": fields[""]}
            else:
                yield fields


def events(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    return (block for block in parse(chunks) if "event" in block)


class Reader:
    """Reads a stream in a thread so the test can wait for events with a timeout."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ended = threading.Event()
        threading.Thread(target=self._run, args=(chunks,), daemon=True).start()

    def _run(self, chunks: Iterable[bytes]) -> None:
        try:
            for event in events(chunks):
                self._queue.put(event)
        finally:
            self.ended.set()
            self._queue.put(None)

    def until(self, status: str) -> list[dict[str, Any]]:
        """The events up to the first with ``status``."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT
        while not seen or seen[-1]["data"]["status"] != status:
            try:
                event = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"no {status} event within {WAIT} s: {seen}") from None
            assert event is not None, f"the stream ended before {status}: {seen}"
            seen.append(event)
        return seen


def statuses(seen: list[dict[str, Any]]) -> list[str | None]:
    return [event["data"]["status"] for event in seen]


def stream(client, url: str, **headers: str):  # type: ignore[no-untyped-def]
    response = client.get(url, headers=headers, buffered=False)
    assert response.status_code == 200, response.get_data()
    return response


# --- the Done-when: another process, two gunicorn workers, the real stores ---------------------


def test_an_sse_client_in_another_process_sees_the_order_go_from_awaiting_code_to_activated(
        app, seeded, database_url):
    gw = seeded
    assert procfile("web")[0] == "gunicorn"  # gthread workers: gunicorn.conf.py
    with gunicorn(service_env(gw, database_url)) as base:  # two workers, SIGTERM, exit code 0
        created = requests.post(f"{base}/api/v1/orders", timeout=10, headers=tv_auth(app), json={
            "device_id": "tv-42", "package_id": "vip_year", "phone": RICH}).json()
        assert created["status"] == "awaiting_code"
        with requests.get(f"{base}/api/v1/orders/{created['id']}/events", stream=True,
                          headers=tv_auth(app), timeout=(5, 30)) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            reader = Reader(response.iter_content(chunk_size=None))
            assert statuses(reader.until("awaiting_code")) == ["created", "awaiting_code"]
            replied = requests.post(f"{base}/sms/inbound", timeout=10,
                                    headers={"X-Inbound-Secret": INBOUND_SECRET},
                                    json={"from": RICH, "text": code_sent_to(gw, RICH)})
            assert replied.status_code == 200
            sent = time.monotonic()
            [paid, activated] = reader.until("activated")
            # Woken through Redis, not found by the stream's heartbeat read 15 s later.
            assert time.monotonic() - sent < live.HEARTBEAT_SECONDS / 3
            assert paid["data"]["status"] == "paid"
            assert activated["data"]["message"].startswith("支付成功，服务已开通，有效期至")
            assert reader.ended.wait(WAIT), "the order stream goes on after the final status"


# --- the order stream ----------------------------------------------------------------------------


def test_the_order_stream_tells_the_whole_story_and_ends_at_the_final_status(client, seeded):
    created = order(client, RICH, "vip_year").get_json()
    reply(client, RICH, code_sent_to(seeded, RICH))
    response = stream(client, f"/api/v1/orders/{created['id']}/events")
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    blocks = list(parse(response.response))  # ends by itself
    assert blocks[0] == {"retry": "2000"}
    seen = blocks[1:]
    assert [e["event"] for e in seen] == ["order.status"] * 4
    assert statuses(seen) == ["created", "awaiting_code", "paid", "activated"]
    assert [e["id"] for e in seen] == sorted(e["data"]["id"] for e in seen)
    awaiting, activated = seen[1]["data"], seen[3]["data"]
    assert awaiting["phone"] == "138****8000"
    assert awaiting["message"] == "验证码已发送至138****8000"
    assert awaiting["order_id"] == created["id"] and awaiting["reason"] is None
    assert awaiting["at"].endswith("Z")
    with seeded.db.read() as session:
        until = session.get(Entitlement, ("tv-42", "vip_year")).active_until
    assert activated["active_until"] == until.isoformat().replace("+00:00", "Z")
    assert activated["message"] == \
        f"支付成功，服务已开通，有效期至{seeded.texts.date(until)}"


def test_a_stream_resumes_after_last_event_id(client, seeded):
    created = order(client, RICH, "vip_year").get_json()
    reply(client, RICH, code_sent_to(seeded, RICH))
    url = f"/api/v1/orders/{created['id']}/events"
    first = list(events(stream(client, url).response))
    resumed = list(events(stream(client, url, **{"Last-Event-ID": str(first[1]["id"])}).response))
    assert resumed == first[2:]
    by_query = list(events(stream(client, f"{url}?last_event_id={first[2]['id']}").response))
    assert by_query == first[3:]
    assert list(events(stream(client, f"{url}?last_event_id={first[3]['id']}").response)) == []


def test_a_lapsed_order_streams_as_expired(client, seeded, clock):
    created = order(client, RICH, "vip_year").get_json()
    clock.advance(seconds=seeded.settings.CODE_TTL_SECONDS)
    seen = list(events(stream(client, f"/api/v1/orders/{created['id']}/events").response))
    assert statuses(seen) == ["created", "awaiting_code", "expired"]
    assert seen[-1]["data"]["reason"] == "expired"
    assert seen[-1]["data"]["message"] == "验证码已过期"


def test_an_order_stream_expires_the_order_when_it_lapses_while_streaming(client, seeded, clock):
    created = order(client, UNBOUND, "vip_year").get_json()
    response = stream(client, f"/api/v1/orders/{created['id']}/events")
    seen = events(response.response)
    assert statuses([next(seen), next(seen)]) == ["created", "awaiting_wap"]
    clock.advance(seconds=seeded.settings.WAP_LINK_TTL_SECONDS)
    expired = next(seen)["data"]
    assert (expired["status"], expired["message"]) == ("expired", "链接已过期")
    assert list(seen) == []


# --- the device stream ---------------------------------------------------------------------------


def test_the_device_stream_shows_what_the_tv_should_say(client, seeded):
    order(client, POOR, "vip_year", device="tv-7")  # before the stream: not shown again
    response = stream(client, "/api/v1/devices/tv-7/events")
    created = order(client, RICH, "vip_month", device="tv-7").get_json()
    reply(client, RICH, wrong(code_sent_to(seeded, RICH)))
    order(client, UNBOUND, "vip_month", device="tv-7")
    order(client, RICH, "vip_month", device="tv-other")  # another TV's
    seen = events(response.response)
    shown = [(e["event"], e["data"]["status"], e["data"]["message"]) for e in
             [next(seen) for _ in range(5)]]
    response.close()
    assert shown == [
        ("order.status", "created", "订单已创建"),
        ("order.status", "awaiting_code", "验证码已发送至138****8000"),
        ("order.wrong_code", None, "验证码错误，还可尝试4次"),
        ("order.status", "created", "订单已创建"),
        ("order.status", "awaiting_wap", "支付链接已发送至136****6000"),
    ]
    response = stream(client, "/api/v1/devices/tv-7/events?last_event_id=0")
    seen = events(response.response)
    history = [next(seen)["data"] for _ in range(7)]
    response.close()
    assert history[1]["message"] == "支付失败：余额不足"  # the earlier order, from the start
    wrong_code = next(e for e in history if e["type"] == "order.wrong_code")
    assert wrong_code["tries_left"] == 4 and wrong_code["order_id"] == created["id"]


def test_a_device_stream_still_sends_an_event_committed_late_below_one_it_sent(client, seeded):
    """Concurrent transactions can commit their ids out of order (PostgreSQL sequences)."""
    with seeded.db.read() as session:
        top = session.scalar(select(func.max(OrderEvent.id))) or 0

    def commit_event(event_id: int) -> None:
        with seeded.db.transaction() as session:
            session.add(OrderEvent(id=event_id, device_id="tv-5", type=TvEvent.UNPAIRED,
                                   at=seeded.clock()))
            after_commit(session, tv_events.TOUCHED, "tv-5")  # as tv_events.record does

    response = stream(client, "/api/v1/devices/tv-5/events")
    seen = events(response.response)
    commit_event(top + 10)
    assert next(seen)["id"] == top + 10
    commit_event(top + 5)  # took its id first, committed second
    late = next(seen)
    response.close()
    assert (late["id"], late["data"]["message"]) == (top + 5, "已解除与手机的配对")


@pytest.mark.settings(SMS_LANGUAGE="en")
def test_messages_follow_the_sms_language(client, seeded):
    response = stream(client, "/api/v1/devices/tv-42/events")
    order(client, RICH, "vip_year")
    reply(client, RICH, wrong(code_sent_to(seeded, RICH)))
    seen = events(response.response)
    messages = [next(seen)["data"]["message"] for _ in range(3)]
    response.close()
    assert messages == ["Order created", "Code sent to 138****8000", "Wrong code, 4 tries left"]


@pytest.mark.settings(SSE_MAX_SECONDS=1)
def test_every_stream_ends_after_its_maximum_duration_with_heartbeats(client, seeded,
                                                                      monkeypatch):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    started = time.monotonic()
    blocks = list(parse(stream(client, "/api/v1/devices/tv-42/events").response))
    assert 1 <= time.monotonic() - started < 5
    assert blocks[0] == {"retry": "2000"}
    assert {"comment": "keep-alive"} in blocks


# --- stores ------------------------------------------------------------------------------------


def test_a_commit_that_records_events_wakes_the_device_channel(client, seeded):
    pubsub = seeded.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(live.channel(seeded, "tv-9"))
    try:
        order(client, RICH, "vip_year", device="tv-9")
        deadline = time.monotonic() + WAIT
        while (message := pubsub.get_message(timeout=1)) is None:
            assert time.monotonic() < deadline, "no wake-up was published"
        assert message["channel"] == live.channel(seeded, "tv-9")
    finally:
        pubsub.close()


@pytest.mark.settings(REDIS_URL="redis://127.0.0.1:1/0",  # nothing listens there
                      LIMIT_PHONE_INTERVAL_SECONDS=0, LIMIT_PHONE_CODES_PER_DAY=0,
                      LIMIT_DEVICE_ORDERS_PER_HOUR=0, SMS_BUDGET_APP_HOUR=0,
                      SMS_BUDGET_APP_DAY=0, SMS_GUARD_MIN_SENT=0)  # (limits off: need Redis)
def test_without_redis_commits_succeed_and_streams_read_sql(client, seeded):
    created = order(client, RICH, "vip_year")
    assert created.status_code == 201
    reader = Reader(stream(client, f"/api/v1/orders/{created.get_json()['id']}/events").response)
    assert statuses(reader.until("awaiting_code")) == ["created", "awaiting_code"]
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert statuses(reader.until("activated")) == ["paid", "activated"]
    assert reader.ended.wait(WAIT)


def test_a_wake_up_that_fails_oddly_does_not_fail_the_committed_order(client, seeded,
                                                                      monkeypatch):
    """Under load redis-py once raised ValueError ("I/O operation on closed file") from a timed
    out handshake; the order was committed, so its answer must still be 201."""

    def broken_pipeline(*args, **kwargs):
        raise ValueError("I/O operation on closed file.")

    monkeypatch.setattr(redis.Redis, "pipeline", broken_pipeline)
    created = order(client, RICH, "vip_year")
    assert created.status_code == 201
    assert stored_order(seeded, created.get_json()["id"]).status == "awaiting_code"


# --- refusals ----------------------------------------------------------------------------------


def test_unknown_orders_bad_device_ids_and_bad_event_ids_are_refused_before_streaming(
        client, seeded):
    response = client.get("/api/v1/orders/ord_nothing/events")
    assert (response.status_code, response.mimetype) == (404, "application/problem+json")
    assert response.get_json()["code"] == "order_not_found"
    response = client.get("/api/v1/devices/bad%20id!/events")
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_device_id")
    response = client.get("/api/v1/devices/tv-42/events", headers={"Last-Event-ID": "x1"})
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_last_event_id")
