"""Redis high availability: every process finds the primary through Redis Sentinel
(``REDIS_SENTINELS``, ``REDIS_SENTINEL_SERVICE``) and follows a failover."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from gateway.config import ConfigError, load_settings
from gateway.store.models import Order
from gateway.store.redis_store import connect
from smpp.simulator import code_of
from tests.conftest import RICH, order
from tests.processes import LIMITS_OFF
from tests.redis_sentinel import SERVICE, SentinelGroup, sentinel_group
from tests.smpp_helpers import running, wait_until

FINAL = {"activated", "failed", "expired", "cancelled"}


def test_the_sentinel_settings_are_checked():
    assert load_settings(environ={"REDIS_SENTINELS": "127.0.0.1:26379,[::1]:26380",
                                  "REDIS_SENTINEL_SERVICE": "tvpay"}).REDIS_SENTINELS == (
        ("127.0.0.1", 26379), ("::1", 26380))
    for environ, says in (
            ({"REDIS_SENTINELS": "127.0.0.1"}, "not host:port"),
            ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "go together"),
            ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_SERVICE": "tvpay",
              "REDIS_URL": "redis://127.0.0.1:6379/0"}, "REDIS_URL must be unset")):
        with pytest.raises(ConfigError, match=says):
            load_settings(environ=environ)


def test_a_client_follows_the_primary_the_sentinels_promote(tmp_path):
    with sentinel_group(tmp_path) as group:
        client = connect(None, tmp_path, tuple(group.sentinels), SERVICE)
        client.set("tvpay-test:before", "1")
        assert client.execute_command("WAIT", 1, 5000) == 1  # the replica has it
        group.kill_primary()
        promoted = time.monotonic()

        def writes() -> bool:
            try:
                return bool(client.set("tvpay-test:after", "1"))
            except Exception:
                return False

        wait_until(writes, timeout=30, what="a write to the promoted replica")
        assert group.primary_now() == ("127.0.0.1", group.replica_port)
        assert client.get("tvpay-test:before") == "1"  # replicated before the primary died
        print(f"writes again {time.monotonic() - promoted:.1f} s after the kill")
        client.close()
        client.connection_pool.disconnect()


@pytest.fixture
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path_factory.mktemp("sentinels")) as found:
        yield found


@pytest.fixture
def extra_settings(group: SentinelGroup) -> dict[str, Any]:
    """The app, its worker and its SMPP worker find Redis through the sentinels."""
    return {"REDIS_URL": None, "REDIS_SENTINELS": group.setting,
            "REDIS_SENTINEL_SERVICE": SERVICE, "SMS_PROVIDER": "smpp", **LIMITS_OFF}


def test_orders_before_during_and_after_a_failover_all_end_and_ordering_resumes(
        client, seeded, smsc, group):
    smsc.auto_reply = code_of  # the phones reply with their codes
    taken: list[str] = []

    def place() -> bool:
        answer = order(client, RICH, package="vip_month")
        if answer.status_code == 201:
            taken.append(answer.get_json()["id"])
        else:  # while Redis is away: a clear refusal, never a 500
            assert answer.status_code == 503, answer.get_json()
        return answer.status_code == 201

    def final() -> bool:
        with seeded.db.read() as session:
            states = session.scalars(select(Order.status).where(Order.id.in_(taken))).all()
        return len(states) == len(taken) and set(states) <= FINAL

    with running(seeded, smsc.port):
        for _ in range(5):
            assert place()
        wait_until(final, timeout=30, what="the orders before the failover activated")
        group.kill_primary()
        refused, promoted_at = 0, None
        while not place():  # every try during the failover refused clearly (503)
            refused += 1
            if promoted_at is None and group.primary_now() == ("127.0.0.1", group.replica_port):
                promoted_at = time.monotonic()
            assert refused < 300, "no order taken within 30 s of the primary's death"
            time.sleep(0.1)
        taken_at = time.monotonic()
        assert refused >= 1  # the failover was felt...
        assert group.primary_now() == ("127.0.0.1", group.replica_port)  # ...and is over
        # taken again within seconds of the promotion (the client looks the primary up again)
        assert promoted_at is None or taken_at - promoted_at < 5
        for _ in range(5):
            assert place()
        wait_until(final, timeout=60, what="every order taken to end")
    with seeded.db.read() as session:
        ended = Counter(session.scalars(select(Order.status).where(Order.id.in_(taken))))
    assert ended == {"activated": len(taken)}, ended
