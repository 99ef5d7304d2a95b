"""Events for the operator's BOSS: posted by the worker to a real HTTP receiver on 127.0.0.1,
signed, retried with doubling pauses for three days, then failed and redelivered by the CLI.

The receiver is a stdlib ``http.server`` in a thread; it answers from a script (then 200) and
can hang, or be closed so that its port refuses connections. Time is the service's FakeClock.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from gateway.backend import boss
from gateway.background import Worker
from gateway.config import ConfigError, load_settings
from gateway.store.models import BossEvent
from tests.conftest import CARD_ONLY, RICH, code_sent_to, order, reply, sms_to, stored_order
from tests.test_wap import PayPage

SECRET = "boss-webhook-secret-0123456789"


@dataclass
class Seen:
    headers: Message
    body: bytes

    def verifies(self, now: float) -> bool:
        return boss.verify_signature(SECRET, self.headers["X-Gateway-Signature"], self.body,
                                     now=now)


@dataclass
class Receiver:
    """A BOSS: records every POST and answers with the next scripted status, else 200."""

    answers: list[int] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    hang: bool = False  # hold each request until ``release`` is set
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.seen.append(Seen(self.headers, body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.arrived.set()
                if receiver.hang:
                    receiver.release.wait(timeout=30)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        """Stop listening: from now on the port refuses connections."""
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.server = ThreadingHTTPServer(("127.0.0.1", 0), found.handler())
    found.url = f"http://127.0.0.1:{found.server.server_port}/boss/events"
    thread = threading.Thread(target=found.server.serve_forever, name="boss", daemon=True)
    thread.start()
    yield found
    found.close()
    thread.join(timeout=5)


@pytest.fixture
def extra_settings(receiver):
    return {"BOSS_WEBHOOK_URL": receiver.url, "BOSS_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def pay(client, gw, phone: str = RICH, device: str = "tv-42") -> str:
    """Order and confirm by SMS code, end to end; return the order id."""
    created = order(client, phone, "vip_year", device=device).get_json()
    reply(client, phone, code_sent_to(gw, phone))
    assert stored_order(gw, created["id"]).status == "activated"
    return created["id"]


def boss_events(gw) -> list[BossEvent]:
    with gw.db.read() as session:
        return list(session.scalars(select(BossEvent).order_by(BossEvent.created_at,
                                                              BossEvent.id)))


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_until_settled(worker: Worker, gw, clock) -> list[float]:
    """Run rounds, moving the clock to each next attempt; return the pauses between them."""
    pauses = []
    while True:
        worker.run_once()
        [event] = boss_events(gw)
        if event.status != "pending":
            return pauses
        pauses.append((event.next_attempt_at - clock.now).total_seconds())
        clock.now = event.next_attempt_at


# --- delivery ----------------------------------------------------------------------------------


def test_an_activation_is_posted_signed_and_posted_again_after_a_500(
        client, seeded, receiver, clock, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.answers.append(500)
    order_id = pay(client, seeded)
    worker = Worker(seeded)
    worker.run_once()
    [event] = boss_events(seeded)
    assert (event.status, event.attempts) == ("pending", 1)
    assert event.last_error == "HTTP 500 Internal Server Error"
    assert event.next_attempt_at == clock.now + timedelta(seconds=30)
    first_post = clock.now
    worker.run_once()  # not due yet
    assert len(receiver.seen) == 1

    clock.advance(seconds=30)
    worker.run_once()
    [event] = boss_events(seeded)
    assert (event.status, event.attempts, event.delivered_at) == ("delivered", 2, clock.now)
    assert event.last_error is None
    worker.run_once()  # delivered: never posted again
    assert len(receiver.seen) == 2

    first, second = receiver.seen
    payload = json.loads(second.body)
    assert first.body == second.body == event.body.encode()
    assert first.headers["X-Gateway-Event-Id"] == second.headers["X-Gateway-Event-Id"] == \
        payload["id"] == event.id
    for seen, posted_at in ((first, first_post), (second, clock.now)):
        assert seen.verifies(now=clock.now.timestamp())
        assert seen.headers["X-Gateway-Signature"].startswith(f"t={int(posted_at.timestamp())},")
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.headers["X-Gateway-Event-Type"] == "entitlement.activated"
        assert seen.headers["User-Agent"].startswith("TVPayGateway")
    [entitlement] = client.get("/api/v1/devices/tv-42/entitlements").get_json()["entitlements"]
    assert payload["type"] == "entitlement.activated"
    assert payload["created_at"] == first_post.isoformat().replace("+00:00", "Z")
    assert {k: payload["data"][k] for k in ("device_id", "package_id", "order_id",
                                            "active_until", "amount", "currency")} == {
        "device_id": "tv-42", "package_id": "vip_year", "order_id": order_id,
        "active_until": entitlement["active_until"], "amount": 20000, "currency": "CNY"}
    assert SECRET not in caplog.text and RICH not in caplog.text and RICH[3:] not in caplog.text


def test_a_recharge_paid_on_its_page_is_posted_as_recharge_completed(client, seeded, receiver):
    created = client.post("/api/v1/devices/tv-9/payment-codes",
                          json={"kind": "recharge", "amount": 5000}).get_json()
    page = PayPage(client, urlsplit(created["payment_url"]).path)
    page.sign_in("w-rich", "135790")
    assert page.pay("wallet").status_code == 303
    Worker(seeded).run_once()
    [seen] = receiver.seen
    payload = json.loads(seen.body)
    assert payload["type"] == seen.headers["X-Gateway-Event-Type"] == "recharge.completed"
    assert payload["data"]["device_id"] == "tv-9" and payload["data"]["order_id"] == created["id"]
    assert (payload["data"]["amount"], payload["data"]["currency"]) == (5000, "CNY")
    assert (payload["data"]["package_id"], payload["data"]["active_until"]) == (None, None)
    assert seen.verifies(now=time.time())
    assert [e.status for e in boss_events(seeded)] == ["delivered"]


def test_pauses_double_up_to_six_hours_and_after_three_days_the_event_fails(
        client, seeded, receiver, clock, runner):
    receiver.answers.extend([503] * 100)
    pay(client, seeded)
    made = clock.now
    worker = Worker(seeded)
    pauses = run_until_settled(worker, seeded, clock)
    assert pauses[:5] == [30, 60, 120, 240, 480]
    assert max(pauses) == 6 * 3600 and pauses[:-1] == sorted(pauses[:-1])  # the last: capped
    [event] = boss_events(seeded)
    assert event.status == "failed" and event.last_error == "HTTP 503 Service Unavailable"
    assert clock.now == made + timedelta(days=3)  # the last attempt is at the three days
    assert event.attempts == len(receiver.seen) == len(pauses) + 1
    clock.advance(days=1)
    worker.run_once()
    assert len(receiver.seen) == event.attempts  # failed: left alone

    # The operator sends it again: one attempt, failed again as it is past its three days...
    result = runner.invoke(args=["events", "redeliver", event.id])
    assert result.exit_code == 0 and result.output == f"to deliver again: {event.id}\n"
    assert boss_events(seeded)[0].next_attempt_at == clock.now
    worker.run_once()
    assert boss_events(seeded)[0].status == "failed"
    # ... then, the BOSS being back, every failed event at once.
    receiver.answers.clear()
    result = runner.invoke(args=["events", "redeliver", "--failed"])
    assert result.exit_code == 0 and event.id in result.output
    worker.run_once()
    [event] = boss_events(seeded)
    assert event.status == "delivered" and event.delivered_at == clock.now
    assert {s.headers["X-Gateway-Event-Id"] for s in receiver.seen} == {event.id}
    assert receiver.seen[-1].verifies(now=clock.now.timestamp())
    assert runner.invoke(args=["events", "redeliver", "--failed"]).output == "no failed events\n"


def test_an_unreachable_boss_is_retried_and_the_sms_still_go_out(client, seeded, receiver,
                                                                 clock):
    receiver.close()
    pay(client, seeded)
    clock.advance(seconds=1)
    pay(client, seeded, CARD_ONLY, "tv-2")
    Worker(seeded).run_once()
    assert sms_to(seeded, RICH, "confirmed")[-1].status == "sent"
    assert sms_to(seeded, CARD_ONLY, "confirmed")[-1].status == "sent"
    first, second = boss_events(seeded)
    assert (first.status, first.attempts, first.last_error) == (
        "pending", 1, "unreachable: connection failed")
    assert first.next_attempt_at == clock.now + timedelta(seconds=30)
    # One refusal ends the batch: the other event is handed back untried, due as it was.
    assert (second.attempts, second.lease_until, second.next_attempt_at) == (0, None, clock.now)


def test_a_boss_that_does_not_answer_in_time_is_retried(client, seeded, receiver, monkeypatch):
    monkeypatch.setattr(boss, "TIMEOUT", (1, 0.2))
    receiver.hang = True
    pay(client, seeded)
    assert boss.deliver_due(seeded) == 1
    [event] = boss_events(seeded)
    assert (event.status, event.attempts, event.last_error) == ("pending", 1, "timeout")


def test_a_hanging_boss_does_not_hold_up_the_sms_of_the_running_worker(client, seeded,
                                                                       receiver):
    receiver.hang = True
    pay(client, seeded)
    worker = Worker(seeded)
    thread = threading.Thread(target=worker.run, name="worker")
    thread.start()
    try:
        assert receiver.arrived.wait(timeout=10)  # the worker's event post hangs from now on
        created = order(client, CARD_ONLY, device="tv-2").get_json()
        wait_until(lambda: sms_to(seeded, CARD_ONLY, "code")[-1].status == "sent", seconds=3)
        assert len(receiver.seen) == 1 and boss_events(seeded)[0].status == "pending"
        assert stored_order(seeded, created["id"]).status == "awaiting_code"
        receiver.release.set()
        wait_until(lambda: boss_events(seeded)[0].status == "delivered")
    finally:
        worker.stopping.set()
        receiver.release.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_an_event_in_another_workers_hands_is_not_posted_twice(client, seeded, receiver,
                                                               clock):
    pay(client, seeded)
    boss._claim(seeded, 50)  # another worker has it, and dies
    assert boss.deliver_due(seeded) == 0 and receiver.seen == []
    clock.advance(minutes=5, seconds=1)  # its lease has run out
    assert boss.deliver_due(seeded) == 1 and len(receiver.seen) == 1


@pytest.mark.settings(BOSS_WEBHOOK_URL=None, BOSS_WEBHOOK_SECRET=None)
def test_without_a_webhook_url_events_are_only_kept(client, seeded, receiver):
    pay(client, seeded)
    Worker(seeded).run_once()
    assert receiver.seen == []
    assert [(e.status, e.attempts) for e in boss_events(seeded)] == [("pending", 0)]


# --- the CLI -------------------------------------------------------------------------------------


def test_events_list_shows_status_attempts_and_the_last_error(client, seeded, receiver, clock,
                                                              runner):
    receiver.answers.append(500)
    pay(client, seeded)
    clock.advance(seconds=1)
    pay(client, seeded, CARD_ONLY, "tv-2")
    Worker(seeded).run_once()
    older, newer = boss_events(seeded)
    at = clock.now.isoformat().replace("+00:00", "Z")
    result = runner.invoke(args=["events", "list"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{newer.id} entitlement.activated delivered attempts=1 created {at} delivered {at}",
        f"{older.id} entitlement.activated pending attempts=1 created "
        f"{(clock.now - timedelta(seconds=1)).isoformat().replace('+00:00', 'Z')} next "
        f"{(clock.now + timedelta(seconds=30)).isoformat().replace('+00:00', 'Z')} "
        f"last error: HTTP 500 Internal Server Error",
    ]
    pending = runner.invoke(args=["events", "list", "--status", "pending"]).output
    assert pending.splitlines() == result.output.splitlines()[1:]
    assert runner.invoke(args=["events", "list", "--limit", "1"]).output.splitlines() == \
        result.output.splitlines()[:1]
    assert runner.invoke(args=["events", "list", "--status", "failed"]).output == "no events\n"
    assert runner.invoke(args=["events", "list", "--status", "lost"]).exit_code == 2


def test_redeliver_refuses_unknown_ids_and_changes_nothing(client, seeded, receiver, runner):
    pay(client, seeded)
    worker = Worker(seeded)
    worker.run_once()
    [event] = boss_events(seeded)
    result = runner.invoke(args=["events", "redeliver", "evt_nope", event.id])
    assert result.exit_code == 1
    assert "no such event: evt_nope (nothing was changed)" in result.output
    assert boss_events(seeded)[0].status == "delivered"
    missing = runner.invoke(args=["events", "redeliver"])
    assert missing.exit_code == 2 and "give event ids, or --failed" in missing.output
    # A delivered event may be sent again (the receiver lost it): the same id, the same body.
    assert runner.invoke(args=["events", "redeliver", event.id]).exit_code == 0
    worker.run_once()
    first, again = receiver.seen
    assert first.body == again.body and boss_events(seeded)[0].status == "delivered"


# --- the verifier and the settings --------------------------------------------------------------

BODY = b'{"id":"evt_test","type":"entitlement.activated"}'
T = 1_700_000_000


def test_sign_makes_the_documented_header_and_the_verifier_accepts_it():
    header = boss.sign(SECRET, BODY, T)
    assert re.fullmatch(rf"t={T},v1=[0-9a-f]{{64}}", header)
    assert boss.verify_signature(SECRET, header, BODY, now=T + 299)
    assert boss.verify_signature(SECRET, header, BODY, now=T - 299)
    assert boss.verify_signature(SECRET, header, BODY, now=T + 900, tolerance_seconds=900)
    now = int(time.time())
    assert boss.verify_signature(SECRET, boss.sign(SECRET, BODY, now), BODY)


def test_the_verifier_rejects_tampering_other_secrets_and_stale_timestamps():
    header = boss.sign(SECRET, BODY, T)
    assert not boss.verify_signature(SECRET, header, BODY + b" ", now=T)
    assert not boss.verify_signature(SECRET, header, BODY.replace(b"test", b"tesu"), now=T)
    assert not boss.verify_signature("another-secret-0123456789", header, BODY, now=T)
    assert not boss.verify_signature(SECRET, header, BODY, now=T + 301)
    assert not boss.verify_signature(SECRET, header, BODY, now=T - 301)  # from the future
    other_time = header.replace(f"t={T}", f"t={T + 1}")
    assert not boss.verify_signature(SECRET, other_time, BODY, now=T)


def test_the_verifier_accepts_any_of_several_v1_values_for_secret_rotation():
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    header = boss.sign(old, BODY, T) + "," + boss.sign(new, BODY, T).split(",")[1]
    assert boss.verify_signature(old, header, BODY, now=T)
    assert boss.verify_signature(new, header, BODY, now=T)
    assert not boss.verify_signature(SECRET, header, BODY, now=T)


V1 = boss.sign(SECRET, BODY, T).split(",")[1]


@pytest.mark.parametrize("header", [
    None, "", "garbage", ",", f"{V1}", f"t={T}", f"t={T},v1=", f"t=,{V1}", f"t=abc,{V1}",
    f"t=-{T},{V1}", f"t={T}.5,{V1}", f"t=１７{str(T)[2:]},{V1}", f"t={T},t={T},{V1}",
    f"t={T};{V1}", f"t={T},{V1}x", f"t={T},{V1.upper()}", f"t={T},{V1},junk", "t=é,v1=é",
])
def test_the_verifier_rejects_malformed_headers(header):
    assert boss.verify_signature(SECRET, header, BODY, now=T) is False


def test_a_webhook_url_needs_a_secret(tmp_path):
    def settings(**values):
        return load_settings({"VAR_DIR": str(tmp_path), **values}, environ={})

    with pytest.raises(ConfigError, match="BOSS_WEBHOOK_SECRET is required"):
        settings(BOSS_WEBHOOK_URL="https://boss.example/events")
    with pytest.raises(ConfigError, match="BOSS_WEBHOOK_SECRET must be at least 16"):
        settings(BOSS_WEBHOOK_URL="https://boss.example/events", BOSS_WEBHOOK_SECRET="short")
    with pytest.raises(ConfigError, match="BOSS_WEBHOOK_URL must be an http"):
        settings(BOSS_WEBHOOK_URL="ftp://boss.example", BOSS_WEBHOOK_SECRET=SECRET)
    assert settings(BOSS_WEBHOOK_URL="https://boss.example/events",
                    BOSS_WEBHOOK_SECRET=SECRET).BOSS_WEBHOOK_SECRET == SECRET
