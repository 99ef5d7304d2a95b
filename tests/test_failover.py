"""Failover between SMS providers (``SMS_PROVIDER=smpp,twilio``) over real SMPP and Twilio's
client: the built-in SMSC goes down and comes back while orders are paid."""

from __future__ import annotations

import re
import threading

import pytest

from gateway.background import Worker
from gateway.messaging.connections import DEFAULT_ID
from gateway.messaging.health import ProviderHealth
from gateway.messaging.stream import relay, streams_of
from gateway.store import outbox
from smpp.worker import SmppWorker
from tests import twilio_fake
from tests.conftest import RICH, UNBOUND, order, sms_to, stored_order
from tests.smpp_helpers import running, wait_until
from tests.twilio_fake import webhook

pytest_plugins = ["tests.twilio_fake"]
pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp,twilio", SMS_FAILOVER_AFTER=1,
                                  LIMIT_PHONE_INTERVAL_SECONDS=0)


@pytest.fixture
def extra_settings(twilio):
    return twilio_fake.settings(twilio.base)


def health(gw) -> ProviderHealth:
    return ProviderHealth(gw.redis, gw.settings.REDIS_PREFIX, gw.settings.SMS_FAILOVER_AFTER)


def test_codes_go_by_twilio_while_the_smsc_is_down_and_by_smpp_once_it_is_back(
        client, seeded, smsc, twilio):
    providers = health(seeded)
    with running(seeded, smsc.port):
        wait_until(providers.smpp_healthy, what="the bind's first stamp")
        smsc.go_down()
        wait_until(lambda: not providers.smpp_healthy(), what="failover to Twilio")

        created = order(client, RICH).get_json()
        wait_until(lambda: [m.status for m in sms_to(seeded, RICH, "code")] == ["submitted"],
                   what="the code SMS sent by Twilio and its SID recorded")
        [code_sms] = sms_to(seeded, RICH, "code")
        assert code_sms.provider == "twilio" and len(twilio.to(RICH)) == 1
        code = re.search(r"回复 (\d{6})", twilio.to(RICH)[0]["Body"]).group(1)  # as the phone
        reply = webhook(client, "/sms/twilio/inbound",
                        {"From": RICH, "Body": code, "MessageSid": "SM1"})
        assert reply.status_code == 200
        assert stored_order(seeded, created["id"]).status == "activated"

        smsc.come_back()
        wait_until(providers.smpp_healthy, timeout=30, what="the bind back")
        order(client, UNBOUND, device="tv-2")
        smsc.wait_for_message(UNBOUND)
        wait_until(lambda: sms_to(seeded, UNBOUND)[0].status in ("submitted", "delivered"),
                   what="the link SMS recorded")
        assert sms_to(seeded, UNBOUND)[0].provider == "smpp"
        assert twilio.to(UNBOUND) == []
        confirmed = sms_to(seeded, RICH, "confirmed")
        wait_until(lambda: sms_to(seeded, RICH, "confirmed")[0].status != "queued")
    # Every message went out once, by the provider its row names.
    by_twilio = [m["Body"] for m in twilio.to(RICH)]
    by_smpp = [m.text for m in smsc.messages(RICH)]
    by_row = {"twilio": by_twilio, "smpp": by_smpp}
    assert [text for text in by_row[code_sms.provider] if code in text] != []
    assert [text for text in by_row[confirmed[0].provider] if text == confirmed[0].body] != []
    assert len(by_twilio) + len(by_smpp) == 2  # the code and the confirmation


def test_messages_waiting_for_a_lost_bind_move_to_twilio_once(seeded, smsc, twilio):
    """Rows relayed to the SMPP stream, whose bind is lost, are sent by Twilio, and the SMPP
    worker, bound again, sends none of them a second time."""
    phones = [f"+86136{n:08d}" for n in range(20)]
    worker = SmppWorker(seeded, host="127.0.0.1", port=smsc.port, consumer="failover-test")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.bound.wait(10)
        smsc.go_down()
        wait_until(lambda: not worker.bound.is_set(), what="the bind lost")
        with seeded.db.transaction() as session:
            for n, phone in enumerate(phones):
                outbox.queue(session, to=phone, kind="link", body=f"Link {n}",
                             now=seeded.clock())
        streams = streams_of(seeded.redis, seeded.settings.REDIS_PREFIX)
        assert relay(seeded.db, streams, seeded.clock) == 20  # handed to SMPP
        stream = streams(DEFAULT_ID)
        wait_until(lambda: not health(seeded).smpp_healthy(), what="failover to Twilio")
        background = Worker(seeded)
        # rounds until all went (a row the SMPP feeder had just claimed as the bind went comes
        # back once the worker hands it back, SMS_FAILOVER_AFTER later)
        wait_until(lambda: (background.run_once(), all(twilio.to(p) for p in phones))[1],
                   timeout=30, what="every row sent by Twilio")
        assert background.carrier == "twilio"
        assert all(len(twilio.to(phone)) == 1 for phone in phones)

        smsc.come_back()
        assert worker.bound.wait(30)
        # The worker reads the stream again: the rows are Twilio's now, and it lets them be.
        wait_until(lambda: not seeded.redis.xpending(stream.key, "smpp")["pending"]
                   and not seeded.redis.xlen(stream.key), timeout=60,
                   what="the SMPP worker done with the stream")
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert all(smsc.messages(phone) == [] for phone in phones)
    rows = [m for phone in phones for m in sms_to(seeded, phone)]
    assert {(m.provider, m.status) for m in rows} == {("twilio", "submitted")}


@pytest.mark.settings(REDIS_URL="redis://127.0.0.1:1")  # nothing listens there
def test_without_redis_messages_still_go_by_twilio(seeded, twilio):
    """No Redis means no SMPP stream and no health to read: the next provider sends."""
    with seeded.db.transaction() as session:
        outbox.queue(session, to=UNBOUND, kind="link", body="Link", now=seeded.clock())
    background = Worker(seeded)
    assert background.run_once()[1] == 1
    assert background.carrier == "twilio" and len(twilio.to(UNBOUND)) == 1
    assert sms_to(seeded, UNBOUND)[0].status == "submitted"
