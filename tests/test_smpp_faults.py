"""The SMPP worker under faults: throttling, lost connections, killed processes, silence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import select

from gateway.background import Worker
from gateway.config import PROJECT_ROOT
from gateway.store import outbox
from gateway.store.models import OutboxMessage, SmsPart
from smpp.pdu import Pdu, encode
from smpp.simulator import Smsc
from tests.conftest import RICH, order
from tests.smpp_helpers import running, wait_until

pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp")

PHONES = [f"+86136{n:08d}" for n in range(300)]


def queue_many(gw, count: int) -> list[str]:
    """Queue ``count`` SMS to as many phones, as orders would, and relay them to the stream."""
    phones = PHONES[:count]
    with gw.db.transaction() as session:
        for n, phone in enumerate(phones):
            outbox.queue(session, to=phone, kind="link", body=f"Message {n} for you",
                         now=gw.clock())
    while Worker(gw).run_once()[1]:
        pass
    return phones


def statuses(gw) -> Counter:
    with gw.db.read() as session:
        return Counter(session.scalars(select(OutboxMessage.status)))


def all_arrived(smsc: Smsc, phones: list[str]) -> bool:
    return all(smsc.messages(phone) for phone in phones)


def duplicates(smsc: Smsc, phones: list[str]) -> int:
    return sum(len(smsc.messages(phone)) - 1 for phone in phones)


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000)
def test_throttling_errors_are_retried(gw, smsc):
    phones = queue_many(gw, 40)
    smsc.throttle_next = 15
    with running(gw, smsc.port):
        wait_until(lambda: all_arrived(smsc, phones), what="every message after throttling")
        wait_until(lambda: statuses(gw) == {"delivered": 40}, what="every receipt")
    assert smsc.throttle_next == 0 and duplicates(smsc, phones) == 0


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=400)
def test_a_dropped_connection_mid_batch_loses_no_message(gw, smsc):
    phones = queue_many(gw, 300)
    with running(gw, smsc.port):
        wait_until(lambda: smsc.submits >= 100, what="a third of the batch")
        smsc.drop_connections()
        wait_until(lambda: all_arrived(smsc, phones), timeout=30, what="every message")
        wait_until(lambda: statuses(gw) == {"delivered": 300}, what="every receipt")
    assert smsc.binds == 2
    print(f"dropped mid-batch: {duplicates(smsc, phones)} duplicates of 300")


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000)
def test_an_smsc_that_goes_down_is_bound_again_when_it_comes_back(gw, smsc):
    phones = queue_many(gw, 5)
    smsc.go_down()
    with running(gw, smsc.port, wait_for_bind=False) as [worker]:
        assert not worker.bound.wait(1)
        smsc.come_back()
        wait_until(lambda: all_arrived(smsc, phones), what="messages after the SMSC returned")


def worker_process(gw, database_url: str, port: int, **settings: object) -> subprocess.Popen:
    """``python -m smpp`` in its own process, on the test's database and Redis."""
    pool = gw.redis.connection_pool.connection_kwargs
    redis_url = os.environ.get("REDIS_URL") or f"unix://{pool['path']}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "REDIS_PREFIX": gw.settings.REDIS_PREFIX, "VAR_DIR": str(gw.settings.VAR_DIR),
           "SECRET_KEY": gw.settings.SECRET_KEY, "SMPP_HOST": "127.0.0.1",
           "SMPP_PORT": str(port), "SMPP_PASSWORD": gw.settings.SMPP_PASSWORD,
           **{k: str(v) for k, v in settings.items()}}
    return subprocess.Popen([sys.executable, "-m", "smpp"], env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_worker_process_loses_no_message(gw, smsc, database_url):
    phones = queue_many(gw, 300)
    first = worker_process(gw, database_url, smsc.port, SMPP_MAX_TPS=200, SMPP_RECLAIM_AFTER=1)
    try:
        wait_until(lambda: smsc.submits >= 60, timeout=30, what="the first worker to send")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        sent_before = smsc.submits
        assert sent_before < 300, "the worker finished before it could be killed"
        second = worker_process(gw, database_url, smsc.port, SMPP_MAX_TPS=1000,
                                SMPP_RECLAIM_AFTER=1)
        try:
            wait_until(lambda: all_arrived(smsc, phones), timeout=60, what="every message")
            wait_until(lambda: statuses(gw) == {"delivered": 300}, what="every receipt")
        finally:
            second.terminate()
            assert second.wait(timeout=15) == 0
    finally:
        if first.poll() is None:
            first.kill()
    print(f"killed after {sent_before} submits: {duplicates(smsc, phones)} duplicates of 300")


def test_sigterm_unbinds_cleanly(gw, smsc, database_url):
    process = worker_process(gw, database_url, smsc.port)
    try:
        smsc.wait_until(lambda s: s.binds == 1, timeout=20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert smsc.unbinds == 1


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_ENQUIRE_LINK_SECONDS=1)
def test_the_link_is_kept_alive_both_ways(gw, smsc):
    with running(gw, smsc.port):
        smsc.wait_until(lambda s: s.enquiries >= 1, timeout=10)
        smsc.enquire()
        smsc.wait_until(lambda s: s.enquiry_answers == 1, timeout=10)


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_DLR_TIMEOUT=1)
def test_a_receipt_that_never_comes_is_asked_for(gw, smsc, clock):
    smsc.receipts_withheld = True
    phones = queue_many(gw, 3)
    with running(gw, smsc.port):
        wait_until(lambda: statuses(gw) == {"submitted": 3}, what="the submissions")
        clock.advance(seconds=2)
        wait_until(lambda: statuses(gw) == {"delivered": 3}, timeout=20,
                   what="query_sm to find the outcome")
    with gw.db.read() as session:
        assert {p.queries for p in session.scalars(select(SmsPart))} == {1}
    assert all_arrived(smsc, phones)


def test_a_code_held_back_by_throttling_past_its_expiry_is_never_sent(client, seeded, smsc,
                                                                        clock):
    smsc.throttle_next = 10**6
    with running(seeded, smsc.port):
        created = order(client, RICH).get_json()
        wait_until(lambda: statuses(seeded).get("sending") == 1, what="the claim")
        clock.advance(seconds=301)
        wait_until(lambda: statuses(seeded).get("failed") == 1, what="the code SMS to fail")
        smsc.throttle_next = 0
    assert smsc.messages(RICH) == []
    assert client.get(f"/api/v1/orders/{created['id']}").get_json()["status"] == "expired"


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000)
def test_garbage_from_the_smsc_is_answered_and_survived(gw, smsc):
    with running(gw, smsc.port) as [worker]:
        smsc.send_raw(encode(Pdu("submit_sm_resp", 77))[:8] + b"\x00\x00\x00\x00"
                      + (0x4242).to_bytes(4, "big"))  # a PDU of an unknown command
        smsc.send_raw(b"\x00\x00\x00\x10\x00\x00\x00\x15\x00\x00\x00\x00\x00\x00\x00\x09")
        phones = queue_many(gw, 2)
        wait_until(lambda: all_arrived(smsc, phones), what="messages after the garbage")
        assert worker.bound.is_set()
    assert smsc.binds == 1


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_WINDOW=5, SMPP_MAX_TPS=1000)
def test_the_window_keeps_several_submits_in_flight_and_no_more(gw, smsc):
    smsc.response_delay = 0.2
    phones = queue_many(gw, 30)
    with running(gw, smsc.port):
        wait_until(lambda: all_arrived(smsc, phones), what="every message")
    assert smsc.max_outstanding == 5


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=20)
def test_the_rate_never_exceeds_smpp_max_tps(gw, smsc):
    smsc.keep_submitted = True
    phones = queue_many(gw, 41)
    with running(gw, smsc.port):
        wait_until(lambda: all_arrived(smsc, phones), what="every message")
    times = [submit["at"] for submit in smsc.submitted]
    # a burst of one token, then one every 1/20 s: 40 more need at least 2 s
    assert times[-1] - times[0] >= 40 / 20 * 0.98


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000)
def test_a_permanent_refusal_fails_the_message_with_the_smsc_error(gw, smsc):
    phones = queue_many(gw, 3)
    smsc.rejected.add(phones[1].lstrip("+"))
    with running(gw, smsc.port):
        wait_until(lambda: statuses(gw) == {"delivered": 2, "failed": 1}, what="the outcomes")
    with gw.db.read() as session:
        failed = session.scalars(select(OutboxMessage).where(
            OutboxMessage.status == "failed")).one()
    assert failed.to_phone == phones[1] and "(0x0b)" in failed.error


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000, SMPP_RESPONSE_TIMEOUT=1)
def test_an_smsc_too_slow_to_answer_is_left_and_nothing_is_lost(gw, smsc):
    phones = queue_many(gw, 10)
    smsc.response_delay = 3
    with running(gw, smsc.port):
        smsc.wait_until(lambda s: s.binds >= 2, timeout=15)  # gave up on it and bound again
        smsc.response_delay = 0
        wait_until(lambda: all_arrived(smsc, phones), what="every message")
        wait_until(lambda: statuses(gw) == {"delivered": 10}, what="every receipt")
