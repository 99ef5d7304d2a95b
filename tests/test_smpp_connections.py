"""Several SMSC connections (``SMPP_CONFIG``), each a built-in SMSC over real sockets: SMS go
by their carrier's connection, a connection's binds share its rate, a connection that goes
down hands its traffic to the next priority and takes it back when it returns, and a
destination no route matches fails with ``no_route``.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gateway.config import PROJECT_ROOT
from gateway.context import Gateway
from gateway.messaging.connections import load_connections
from gateway.messaging.health import BindSlots, ProviderHealth
from gateway.messaging.stream import OutboundStream
from gateway.store import outbox
from gateway.store.models import Order, OutboxMessage, PhoneBinding
from smpp.__main__ import workers_for
from smpp.simulator import Smsc
from smpp.window import TokenBucket
from smpp.worker import SmppWorker
from tests import twilio_fake
from tests.conftest import order
from tests.processes import command, service_env
from tests.smpp_helpers import running_workers, wait_until

pytest_plugins = ["tests.twilio_fake"]
pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp", SMS_FAILOVER_AFTER="2")

MOBILE, UNICOM, TELECOM = "+8613912345", "+8613012345", "+8613312345"  # + 3 digits
BROADNET = "+8619212345001"  # China Broadnet: no connection below routes it


def numbers(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{n:03d}" for n in range(start, start + count)]


@pytest.fixture
def smscs() -> Iterator[dict[str, Smsc]]:
    servers = {name: Smsc().start() for name in ("cmcc", "unicom", "telecom", "backup")}
    for server in servers.values():
        server.keep_submitted = True
    yield servers
    for server in servers.values():
        server.stop()


def connection(name: str, smsc: Smsc, routes: list[str], **more: Any) -> dict[str, Any]:
    return {"id": name, "host": "127.0.0.1", "port": smsc.port, "system_id": "tvpay",
            "password": "secret", "routes": routes, **more}


@pytest.fixture
def layout(request: pytest.FixtureRequest, smscs: dict[str, Smsc]) -> list[dict[str, Any]]:
    """The connections file of the test (``@pytest.mark.parametrize("layout", ...,
    indirect=True)``), by default the three carriers without a backup."""
    param = getattr(request, "param", "carriers")
    carriers = [connection("cmcc", smscs["cmcc"], ["carrier:China Mobile"]),
                connection("unicom", smscs["unicom"], ["carrier:China Unicom"]),
                connection("telecom", smscs["telecom"], ["carrier:China Telecom"])]
    if param == "carriers":
        return carriers
    if param == "backed-up":
        return [carriers[0], connection("backup", smscs["backup"],
                                        ["carrier:China Mobile", "*"], priority=2)]
    if param == "two-binds":
        return [connection("cmcc", smscs["cmcc"], ["*"], binds=2)]
    if param == "broken":
        return [connection("cmcc", smscs["cmcc"], ["carrier:China Mobil"])]
    assert param == "three-binds"
    return [connection("cmcc", smscs["cmcc"], ["*"], binds=3, max_tps=20, window=5)]


@pytest.fixture
def extra_settings(request: pytest.FixtureRequest, layout: list[dict[str, Any]],
                   tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": layout}), encoding="utf-8")
    if "twilio" not in request.fixturenames:
        return {"SMPP_CONFIG": str(path)}
    twilio = request.getfixturevalue("twilio")  # the next provider, after SMPP
    return twilio_fake.settings(twilio.base, SMPP_CONFIG=str(path))


@contextmanager
def serving(gw: Gateway) -> Iterator[list[SmppWorker]]:
    """What ``python -m smpp`` and ``flask --app app worker`` run: a worker for each bind of
    each connection, and the relay; yields the SMPP workers once every bind is up and the
    relay's rounds go by SMPP (its first, before any bind, went by the next provider)."""
    connections = load_connections(gw.settings)
    workers = workers_for(gw, connections, elsewhere=len(connections) > 1, shared=True)
    with running_workers(gw, workers) as relay:
        wait_until(lambda: relay.carrier == "smpp", what="the relay to see the binds")
        yield workers


def send(gw: Gateway, to: list[str]) -> None:
    with gw.db.transaction() as session:
        for phone in to:
            outbox.queue(session, to=phone, kind="link", body=f"Link for {phone}",
                         now=gw.clock())


def received(smsc: Smsc) -> Counter[str]:
    """How many SMS each number got from this SMSC."""
    return Counter("+" + submit["destination_addr"].lstrip("+") for submit in smsc.submitted)


def statuses(gw: Gateway) -> set[str]:
    with gw.db.read() as session:
        return set(session.scalars(select(OutboxMessage.status)))


def usable(gw: Gateway) -> set[str]:
    health = ProviderHealth(gw.redis, gw.settings.REDIS_PREFIX, gw.settings.SMS_FAILOVER_AFTER)
    return health.usable_connections()


def test_each_carrier_s_numbers_go_by_its_connection_only(gw, smscs):
    by_carrier = {"cmcc": numbers(MOBILE, 4), "unicom": numbers(UNICOM, 4),
                  "telecom": numbers(TELECOM, 4)}
    for smsc in smscs.values():  # every part is recorded before the first receipt comes
        smsc.receipt_delay = 1.0
    with serving(gw):
        send(gw, [phone for phones in by_carrier.values() for phone in phones])
        for name, phones in by_carrier.items():
            wait_until(lambda s=smscs[name], p=phones: set(received(s)) == set(p),
                       what=f"{name}'s numbers at {name}")
        # each SMSC numbers its messages from 0x1000: a receipt settles its own connection's
        wait_until(lambda: statuses(gw) == {"delivered"}, what="every receipt matched")
    for name, phones in by_carrier.items():
        assert received(smscs[name]) == Counter(phones)  # each once, and nothing else
    assert not smscs["backup"].submitted
    with gw.db.read() as session:
        went_by = {phone: name for phone, name in session.execute(
            select(OutboxMessage.to_phone, OutboxMessage.connection))}
    assert went_by == {phone: name for name, phones in by_carrier.items() for phone in phones}


def test_a_number_no_route_matches_fails_its_sms_and_its_order(seeded, client, smscs):
    with seeded.db.transaction() as session:
        session.add(PhoneBinding(phone=BROADNET, wallet_id="w-rich", created_at=seeded.clock()))
    with serving(seeded):
        created = order(client, phone=BROADNET).get_json()
        assert created["status"] == "awaiting_code"
        send(seeded, numbers(MOBILE, 1))  # and one that has a route, after it

        def ended() -> bool:
            with seeded.db.read() as session:
                return session.get(Order, created["id"]).status == "failed"

        wait_until(ended, what="the order failed")
        wait_until(lambda: received(smscs["cmcc"]), what="the routed SMS sent")
    with seeded.db.read() as session:
        sms = session.scalars(select(OutboxMessage).where(OutboxMessage.to_phone == BROADNET))
        [message] = sms.all()
        assert (message.status, message.error) == ("failed", "no_route")
    assert client.get(f"/api/v1/orders/{created['id']}").get_json()["reason"] == \
        "sms_undeliverable"
    assert all(BROADNET not in received(s) for s in smscs.values())  # sent nowhere


def metric(client: Any, name: str, connection: str) -> float:
    """A sample of this process's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("connection") == connection:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("layout", ["three-binds"], indirect=True)
def test_a_connection_holds_its_binds_and_spreads_its_messages_within_max_tps(gw, smscs,
                                                                              client):
    smsc = smscs["cmcc"]
    submits_before = metric(client, "tvpay_smpp_submits_total", "cmcc")
    with serving(gw) as workers:
        assert len(workers) == 3 and smsc.binds == 3
        phones = numbers(MOBILE, 60)
        send(gw, phones)
        wait_until(lambda: len(smsc.submitted) == 60, timeout=30, what="60 submits")
        # what an operator sees of the connection: /readyz and the metrics
        wait_until(lambda: client.get("/readyz").get_json()["checks"]["sms"]["providers"][
            "smpp"]["connections"].get("cmcc", {}).get("binds") == 3, what="/readyz's binds")
        assert metric(client, "tvpay_smpp_binds_up", "cmcc") == 3
        assert metric(client, "tvpay_smpp_submits_total", "cmcc") - submits_before == 60
    assert received(smsc) == Counter(phones)
    by_bind = Counter(submit["bind"] for submit in smsc.submitted)
    assert len(by_bind) == 3 and min(by_bind.values()) >= 5, by_bind  # all three carry
    times = sorted(submit["at"] for submit in smsc.submitted)
    # 20 a second for the connection, not 20 for each bind: 60 take about 3 s
    assert times[-1] - times[0] >= 2.5
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 22


@pytest.mark.parametrize("layout", ["backed-up"], indirect=True)
def test_a_connection_that_goes_down_hands_its_traffic_to_the_next_priority_and_back(
        gw, smscs):
    main, backup = smscs["cmcc"], smscs["backup"]
    before, during, after = numbers(MOBILE, 10), numbers(MOBILE, 10, 10), numbers(MOBILE, 10, 20)
    with serving(gw):
        wait_until(lambda: usable(gw) == {"cmcc", "backup"}, what="both connections up")
        send(gw, before)
        wait_until(lambda: set(received(main)) == set(before), what="cmcc sends the first")
        main.go_down()
        send(gw, during)  # some go to cmcc's stream before the relay sees it down
        wait_until(lambda: set(received(backup)) == set(during), timeout=30,
                   what="the backup sends what cmcc could not")
        main.come_back()
        wait_until(lambda: "cmcc" in usable(gw), timeout=30, what="cmcc back")
        send(gw, after)
        wait_until(lambda: set(received(main)) >= set(after), timeout=30,
                   what="cmcc sends again")
    everything = received(main) + received(backup)
    assert everything == Counter(before + during + after)  # each once: no loss, no duplicate
    assert not set(received(backup)) & set(before + after)


@pytest.mark.parametrize("layout", ["broken"], indirect=True)
def test_a_wrong_connections_file_stops_the_worker_at_its_start_saying_where(app):
    result = app.test_cli_runner().invoke(args=["worker"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "will not start: SMPP_CONFIG" in result.output
    assert "connection 'cmcc'" in result.output and "China Mobile" in result.output  # the hint


def test_python_m_smpp_names_the_connection_it_does_not_know(gw, database_url):
    env = service_env(gw, database_url, SMS_PROVIDER="smpp",
                      SMPP_CONFIG=str(gw.settings.SMPP_CONFIG))
    result = subprocess.run([*command("smpp"), "--connections", "cmcc,nope"], env=env,
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--connections: no connection 'nope'; there are cmcc, telecom, unicom" in \
        result.stderr


@pytest.mark.parametrize("layout", ["two-binds"], indirect=True)
def test_two_smpp_processes_keep_a_connection_s_two_binds_between_them(gw, smscs):
    """Each process makes a worker for each of the connection's binds; the binds are slots
    in Redis, so the connection has two binds however many processes run, and the workers
    standing by take over when the bound ones stop."""
    smsc, [connection] = smscs["cmcc"], load_connections(gw.settings)
    slots = BindSlots(gw.redis, gw.settings.REDIS_PREFIX)

    def process(name: str) -> list[SmppWorker]:
        return [SmppWorker(gw, host="127.0.0.1", port=smsc.port, connection=connection,
                           bucket=TokenBucket(connection.max_tps), consumer=f"{name}-{n}",
                           slots=slots) for n in range(connection.binds)]

    workers = process("one") + process("two")
    bound = lambda: [w for w in workers if w.bound.is_set()]  # noqa: E731
    with running_workers(gw, workers, wait_for_bind=False):
        wait_until(lambda: len(bound()) == 2, what="two binds")
        send(gw, numbers(MOBILE, 20))
        wait_until(lambda: len(smsc.submitted) == 20, what="20 sent")
        first = bound()
        for worker in first:  # a process stops: its slots are free at once
            worker.stop()
        wait_until(lambda: all(worker.slot is None for worker in first), timeout=30,
                   what="the stopped workers to let their slots go")
        wait_until(lambda: len(bound()) == 2, timeout=20, what="the standby workers bound")
        assert not set(bound()) & set(first)
        send(gw, numbers(MOBILE, 20, 20))
        wait_until(lambda: len(smsc.submitted) == 40, what="20 more sent")
    assert smsc.most_bound == 2  # never more than the connection's binds at once
    assert received(smsc) == Counter(numbers(MOBILE, 40))  # each once


def test_sms_queued_to_a_connection_the_file_no_longer_has_go_by_another(gw, smscs):
    """After an id is renamed or removed, what waited in its stream is routed again."""
    [phone] = numbers(MOBILE, 1)
    send(gw, [phone])
    epoch = OutboundStream(gw.redis, gw.settings.REDIS_PREFIX, "retired").epoch()
    with gw.db.transaction() as session:
        [message] = session.scalars(select(OutboxMessage)).all()
        message.connection, message.relay_ref = "retired", f"{epoch}/1-0"
        message.updated_at = gw.clock() - timedelta(seconds=gw.settings.SMS_FAILOVER_AFTER + 1)
    with serving(gw):
        wait_until(lambda: received(smscs["cmcc"]) == Counter([phone]), what="sent by cmcc")
    with gw.db.read() as session:
        assert session.scalars(select(OutboxMessage.connection)).all() == ["cmcc"]


@pytest.mark.settings(SMS_PROVIDER="smpp,twilio", SMS_FAILOVER_AFTER="2")
def test_sms_none_of_whose_connections_is_up_go_by_twilio_while_the_others_go_by_smpp(
        gw, smscs, twilio):
    """SMS_PROVIDER=smpp,twilio: past the last connection of a destination, Twilio."""
    mobile, unicom = numbers(MOBILE, 3), numbers(UNICOM, 3)
    with serving(gw):
        wait_until(lambda: usable(gw) == {"cmcc", "unicom", "telecom"}, what="all bound")
        smscs["cmcc"].go_down()
        wait_until(lambda: "cmcc" not in usable(gw), timeout=30, what="cmcc seen down")
        send(gw, mobile + unicom)
        wait_until(lambda: all(twilio.to(phone) for phone in mobile), timeout=30,
                   what="China Mobile's SMS sent by Twilio")
        wait_until(lambda: set(received(smscs["unicom"])) == set(unicom), what="unicom's")
    assert not smscs["cmcc"].submitted and all(not twilio.to(phone) for phone in unicom)
    assert all(len(twilio.to(phone)) == 1 for phone in mobile)  # once each
    with gw.db.read() as session:
        went = {m.to_phone: (m.provider, m.connection) for m in session.scalars(
            select(OutboxMessage))}
    assert {went[phone] for phone in mobile} == {("twilio", None)}
    assert {went[phone] for phone in unicom} == {("smpp", "unicom")}


@pytest.mark.parametrize("layout", ["two-binds"], indirect=True)
def test_a_bind_whose_slot_another_holds_now_ends_and_keeps_no_sms(gw, smscs):
    """After a Redis failover the slots are free, and another process may take one first:
    the bind that held it ends, and hands back what it had claimed, to the bind that still
    holds a slot."""
    smsc, [connection] = smscs["cmcc"], load_connections(gw.settings)
    slots = BindSlots(gw.redis, gw.settings.REDIS_PREFIX)
    workers = [SmppWorker(gw, host="127.0.0.1", port=smsc.port, connection=connection,
                          bucket=TokenBucket(connection.max_tps), consumer=f"w-{n}",
                          slots=slots) for n in range(2)]
    with running_workers(gw, workers):
        robbed, other = workers
        assert robbed.slot is not None
        gw.redis.set(f"{gw.settings.REDIS_PREFIX}sms:bind-slot:cmcc:{robbed.slot}", "another",
                     px=60_000)  # taken by another process
        wait_until(lambda: not robbed.bound.is_set(), what="the robbed bind to end")
        send(gw, numbers(MOBILE, 20))
        wait_until(lambda: statuses(gw) == {"delivered"}, timeout=30, what="all delivered")
        assert robbed.feeder.held() == [] and other.bound.is_set()
    assert received(smsc) == Counter(numbers(MOBILE, 20))
