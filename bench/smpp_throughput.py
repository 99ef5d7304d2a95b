"""SMPP throughput: the worker against bare pipelined smpplib, in one run, on one SMSC.

    python bench/smpp_throughput.py [-n 10000] [--window 50] [--repeat 3]
                                    [--database-url URL] [--redis-url URL] [--no-receipts]
                                    [--history 100000]

Seeds HISTORY messages sent and delivered before (a gateway that has run a while; see
seed_history), starts the built-in SMSC in its own process, then
  1. sends N submit_sm through a bare smpplib client that keeps WINDOW in flight (the
     baseline: the protocol cost alone, nothing recorded anywhere);
  2. queues N messages in the SQL outbox, relays them to the Redis Stream, and lets
     ``python -m smpp`` (its own process) send them with SMPP_WINDOW=WINDOW, and again with a
     window of 1 (one message in flight, as gateways without a window do);
  3. the same as 2 over two connections (SMPP_CONFIG), to two SMSCs, of two binds each, each
     with WINDOW: the relay spreads the messages over both, and each connection's binds share
     them; its rate is printed against the one bind of 2, in the same run.
The worker's rate is taken from the times it recorded each acceptance (first to last), the
baseline's from its first send to its last response. The pair is run --repeat times,
alternating, because the SMSC shares the machine's cores with the client under test; prints
every run, then the medians and the median of the ratios.
Defaults: SQLite and an embedded Redis in a temporary folder; pass URLs to use servers.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib.client  # noqa: E402
import smpplib.consts  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy import delete, func, insert, select, text  # noqa: E402

from gateway import migrate  # noqa: E402
from gateway.config import PROJECT_ROOT, load_settings  # noqa: E402
from gateway.messaging.connections import load_connections  # noqa: E402
from gateway.messaging.routing import Miss, Router  # noqa: E402
from gateway.messaging.stream import relay, streams_of  # noqa: E402
from gateway.store.models import OutboxMessage, SmsPart  # noqa: E402
from gateway.wiring import connect  # noqa: E402

SMSC_PASSWORD = "secret"  # python -m smpp.simulator's default
TEXT = "【TV Pay】您通过钱包购买VIP会员包年，金额200.00元，确认支付请回复 384921（5分钟内有效）。"


def start_smsc(receipts: bool) -> tuple[subprocess.Popen, int]:
    args = [sys.executable, "-m", "smpp.simulator", "--port", "0", "--http-port", "0"]
    process = subprocess.Popen(args + ([] if receipts else ["--no-receipts"]), cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"SMSC on 127\.0\.0\.1:(\d+)", line)
    if not found:
        raise SystemExit(f"the SMSC did not start: {line!r}")
    return process, int(found.group(1))


def bare_smpplib(port: int, count: int, window: int) -> float:
    """Submit ``count`` messages keeping ``window`` in flight; return submits per second."""
    client = smpplib.client.Client("127.0.0.1", port, allow_unknown_opt_params=True)
    client.connect()
    client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the worker does
    client.bind_transceiver(system_id="tvpay", password=SMSC_PASSWORD)
    payload = TEXT.encode("utf-16-be")
    sent = answered = 0
    started = time.perf_counter()
    while answered < count:
        while sent < count and sent - answered < window:
            client.send_message(source_addr_ton=0, source_addr_npi=1, source_addr="10690000",
                                dest_addr_ton=1, dest_addr_npi=1,
                                destination_addr=f"86139{sent:08d}", short_message=payload,
                                data_coding=8, registered_delivery=1)
            sent += 1
        pdu = client.read_pdu()
        if pdu.command == "submit_sm_resp":
            answered += 1
        elif pdu.command == "deliver_sm":
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
    elapsed = time.perf_counter() - started
    client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN  # done: no unbind handshake needed
    client.disconnect()
    return count / elapsed


def seed_history(env: dict[str, str], count: int) -> int:
    """``count`` messages sent and delivered before the runs, as a gateway that has run a while
    has; return the last one's id.

    The worker's statements are prepared, and PostgreSQL keeps the plan it made from the
    statistics it had: planned while ``sms_parts`` was empty, the lookup of receipts by message
    id scans the whole table, and goes on doing so as a run fills it (a fresh table is a tenth
    new every few seconds; autovacuum looks once a minute). With no history, a run of 30,000
    messages measured PostgreSQL more than the worker (2,558 messages a second, PostgreSQL at
    76-91% of a core; with the tables analyzed as they grew, 5,237 and 37%)."""
    if not count:
        return 0
    gw = connect(load_settings(environ=env))
    sent = gw.clock() - timedelta(days=1)
    with gw.db.transaction() as session:
        session.execute(insert(OutboxMessage), [
            {"to_phone": f"+86137{n:08d}", "kind": "link", "body": TEXT, "redacted_body": TEXT,
             "status": "delivered", "parts": 1, "created_at": sent, "updated_at": sent}
            for n in range(count)])
        ids = session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)).all()
        session.execute(insert(SmsPart), [
            {"outbox_id": outbox_id, "part": 1, "total": 1, "provider": "smpp",
             "message_id": f"history-{outbox_id}", "status": "delivered", "submitted_at": sent,
             "done_at": sent, "queries": 0} for outbox_id in ids])
        for table in ("sms_outbox", "sms_parts"):
            session.execute(text(f"ANALYZE {table}"))
    gw.close()
    return ids[-1]


def two_connections(folder: Path, ports: tuple[int, int], window: int) -> Path:
    """An SMPP_CONFIG of two connections of two binds each, one to each SMSC, sharing "*"."""
    path = folder / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": [
        {"id": name, "host": "127.0.0.1", "port": port, "system_id": "tvpay",
         "password": SMSC_PASSWORD, "routes": ["*"], "binds": 2, "window": window,
         "max_tps": 100000} for name, port in zip(("a", "b"), ports, strict=True)]}))
    return path


def worker_run(env: dict[str, str], port: int, count: int, window: int, history: int,
               connections: Path | None = None) -> float:
    """Queue ``count`` messages, let ``python -m smpp`` send them (by the one connection of
    SMPP_* to ``port``, or by those of the file ``connections``); return messages per second.
    The messages up to id ``history`` are the history, kept."""
    if connections is not None:
        env = {**env, "SMPP_CONFIG": str(connections)}
    else:
        env = {**env, "SMPP_HOST": "127.0.0.1", "SMPP_PORT": str(port),
               "SMPP_PASSWORD": SMSC_PASSWORD, "SMPP_WINDOW": str(window)}
    gw = connect(load_settings(environ=env))
    router = Router(load_connections(gw.settings))

    def route(phone: str) -> str | Miss:
        return router.route(phone, lambda _connection: True)

    with gw.db.transaction() as session:
        session.execute(delete(SmsPart).where(SmsPart.outbox_id > history))
        session.execute(delete(OutboxMessage).where(OutboxMessage.id > history))
        now = gw.clock()
        session.execute(insert(OutboxMessage), [
            {"to_phone": f"+86138{n:08d}", "kind": "link", "body": TEXT, "redacted_body": TEXT,
             "status": "queued", "created_at": now, "updated_at": now} for n in range(count)])
    streams = streams_of(gw.redis, gw.settings.REDIS_PREFIX)
    while relay(gw.db, streams, gw.clock, route, known=router.connections, batch=2000):
        pass
    worker = subprocess.Popen(
        [sys.executable, "-m", "smpp"], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**env, "SMPP_MAX_TPS": "100000"})
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with gw.db.read() as session:
                done = session.scalar(select(func.count()).select_from(SmsPart)
                                      .where(SmsPart.outbox_id > history))
            if done >= count:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"the worker sent only {done} of {count} in 10 minutes")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    with gw.db.read() as session:
        first, last = session.execute(select(func.min(SmsPart.submitted_at),
                                             func.max(SmsPart.submitted_at))
                                      .where(SmsPart.outbox_id > history)).one()
    gw.close()
    return count / max((last - first).total_seconds(), 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=10000)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--no-receipts", action="store_true")
    parser.add_argument("--history", type=int, default=100_000,
                        help="messages sent before the runs, kept in the tables (see "
                             "seed_history)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="smpp-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    with migrate.private_schema(url, prefix="bench") as scoped_url:
        migrate.upgrade(scoped_url)
        env = {**os.environ, "VAR_DIR": str(workdir), "SECRET_KEY": "bench-secret-key-0123456789",
               "REDIS_PREFIX": f"bench{os.getpid()}:", "SMS_PROVIDER": "smpp",
               "DATABASE_URL": scoped_url}
        env.pop("REDIS_URL", None)
        if args.redis_url:
            env["REDIS_URL"] = args.redis_url
        run(args, env)


def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    smsc, port = start_smsc(receipts=not args.no_receipts)
    second, second_port = start_smsc(receipts=not args.no_receipts)
    connections = two_connections(Path(env["VAR_DIR"]), (port, second_port), args.window)
    try:
        history = seed_history(env, args.history)
        print(f"{args.count} messages of {len(TEXT)} Chinese characters (UCS-2, one part), "
              f"receipts {'off' if args.no_receipts else 'on'}; database "
              f"{env['DATABASE_URL'].split(':')[0]} holding {args.history} messages sent "
              f"before, redis {'server' if args.redis_url else 'embedded'}; "
              f"{os.cpu_count()} cores")
        rates: dict[str, list[float]] = {"bare": [], "worker": [], "bare1": [], "worker1": [],
                                         "two": []}
        single = min(args.count, 2000)
        for run_number in range(1, args.repeat + 1):
            rates["bare"].append(bare_smpplib(port, args.count, args.window))
            rates["worker"].append(worker_run(env, port, args.count, args.window,
                                              history))
            rates["bare1"].append(bare_smpplib(port, single, 1))
            rates["worker1"].append(worker_run(env, port, single, 1, history))
            rates["two"].append(worker_run(env, port, args.count, args.window, history,
                                           connections))
            print(f"run {run_number}: window {args.window}: bare {rates['bare'][-1]:7.0f}/s, "
                  f"worker {rates['worker'][-1]:7.0f}/s; window 1: bare "
                  f"{rates['bare1'][-1]:7.0f}/s, worker {rates['worker1'][-1]:7.0f}/s; "
                  f"2 connections x 2 binds: worker {rates['two'][-1]:7.0f}/s", flush=True)
        ratios = [w / b for w, b in zip(rates["worker"], rates["bare"], strict=True)]
        ratios1 = [w / b for w, b in zip(rates["worker1"], rates["bare1"], strict=True)]
        print(f"median of {args.repeat}, window {args.window:>3}: bare pipelined smpplib "
              f"{median(rates['bare']):7.0f} submit_sm/s, worker {median(rates['worker']):7.0f}"
              f" msg/s, ratio {median(ratios):.2f}")
        print(f"median of {args.repeat}, window   1: bare smpplib          "
              f"{median(rates['bare1']):7.0f} submit_sm/s, worker "
              f"{median(rates['worker1']):7.0f} msg/s, ratio {median(ratios1):.2f}")
        spread = [t / w for t, w in zip(rates["two"], rates["worker"], strict=True)]
        print(f"median of {args.repeat}, 2 connections x 2 binds, window {args.window} each: "
              f"worker {median(rates['two']):7.0f} msg/s, ratio to one bind "
              f"{median(spread):.2f}")
    finally:
        for process in (smsc, second):
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
