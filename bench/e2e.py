"""End to end: TV payments through the whole stack, against a bare Flask endpoint, in one run.

    python bench/e2e.py [--payments 2000] [--clients 50] [--rate R|auto]
                        [--overload-seconds 20] [--reply-delay 0.2]
                        [--database-url URL] [--redis-url URL] [--bare-seconds 10]
                        [--smpp-max-tps 10000] [--redeliver-after 30] [--no-record]
                        [--history 50000]

Works in a PostgreSQL schema and under a Redis key prefix of its own (both removed at the
end); seeds one wallet per client holding the phones of its payments (a phone pays once, so a
reply belongs to one order) and a history of --history past orders (seed_history), makes a TV
app key, and switches every LIMIT_* off. Then:

  1. baseline: ``gunicorn bench.bare_app:app`` with the same gunicorn.conf.py, POST /orders
     from the same CLIENTS threads for --bare-seconds: requests per second;
  2. the real stack: gunicorn from the Procfile's web line with gunicorn.conf.py, ``flask
     --app app worker``, ``python -m smpp`` bound to the built-in SMSC run in its own process
     with phones that reply with their code --reply-delay seconds after the code SMS lands;
     CLIENTS threads (one keep-alive connection each, as a TV app) post PAYMENTS orders back
     to back for distinct TVs and phones, retrying a ``503 overloaded`` after the
     ``retry_after_ms`` it gives, as a TV app does; the run lasts until every order has ended.
     Its completed payments a second are the stack's capacity C;
  3. with --rate: PAYMENTS more, posted on a schedule of R a second (open loop: a late post's
     latency counts from when it was due); ``--rate auto`` is 0.8 × C;
  4. overload, unless --overload-seconds is 0: new orders offered at 3 × C for that many
     seconds, open loop from one asyncio client in a process of its own that opens
     connections as it needs them (the client is never the limit; bench/load.py); answers
     are told apart by status and the problem's ``code`` (503 ``overloaded`` from admission
     control); its phones, wallets and TV app key are seeded after the first run, as their
     number depends on C; the accepted orders are completed and counted as in any run.

Times: POST /orders as the client measured it; "activated" is the order's ``updated_at`` once
activated (the SMPP worker's clock when the payment's transaction began; same machine);
"reply" is when the phone's code SMS reached the SMSC plus --reply-delay (the SMSC schedules
the reply then), so reply -> activated covers the deliver_sm, the SMPP worker and the
payment's transaction.
Activation is watched in the database, not by polling the API, so that watching costs the
service nothing. Peak RSS and CPU seconds of every process (PostgreSQL's backends told apart
by the role they serve, Redis) are sampled every 0.5 s (bench/sampling.py): CPU ms a
completed payment, per process and for the service's own processes (web, worker, smpp,
PostgreSQL, Redis; not the bench client, the SMSC, or others' PostgreSQL connections). SQL
statements a payment are counted by PostgreSQL: each service process connects as a role of
its own whose statements the server logs (bench/pg_statements.py).
Prints tables and the goals of issue 19, and appends them with the machine to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from bench.e2e_report import Figures, figures, record, report  # noqa: E402
from bench.load import Payment, Run, bare_rate, post_open_loop, post_orders  # noqa: E402
from bench.pg_statements import StatementLog, service_roles  # noqa: E402
from bench.sampling import Sampler, gunicorn_worker, watch_servers  # noqa: E402
from gateway import migrate  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.context import Gateway  # noqa: E402
from gateway.store.models import Order  # noqa: E402
from gateway.wiring import connect  # noqa: E402
from tests.processes import (  # noqa: E402
    LIMITS_OFF,
    SMSC_PASSWORD,
    bench_settings,
    command,
    free_port,
    gunicorn,
    logged,
    seed_payers,
    service_env,
    start_smsc,
    started,
    wait_for,
)

PACKAGE = {"id": "bench_month", "name": "Bench 月卡", "price": 3000, "currency": "CNY",
           "period_days": 30}
FINAL = ("activated", "failed", "expired", "cancelled")
CODE_SMS = re.compile(r"回复 \d{6}")
PROCESSES = ("web", "worker", "smpp")  # the service's, each with a database role of its own
PACED_SHARE, OVERLOAD_FACTOR = 0.8, 3


# --- the orders' ends -----------------------------------------------------------------------


def wait_ended(gw: Gateway, run: Run, stall: float = 30) -> None:
    """Wait until every accepted order of ``run`` has ended, or none has for ``stall`` s."""
    devices = f"e2e-{run.name}-%"
    accepted = sum(p.status == 201 for p in run.payments)
    ended, last_change, last = 0, time.monotonic(), -1
    while ended < accepted and time.monotonic() - last_change < stall:
        time.sleep(0.25)
        with gw.db.read() as session:
            ended = session.scalar(select(func.count()).select_from(Order).where(
                Order.device_id.like(devices), Order.status.in_(FINAL)))
        if ended != last:
            last, last_change = ended, time.monotonic()
    with gw.db.read() as session:
        rows = {row.id: row for row in session.execute(
            select(Order.id, Order.status, Order.updated_at)
            .where(Order.device_id.like(devices)))}
    for payment in run.payments:
        row = rows.get(payment.order_id or "")
        payment.ended = row.status if row else None
        if row is not None and row.status == "activated":
            payment.activated_at = row.updated_at.replace(tzinfo=UTC).timestamp()


def reply_times(http_port: int, run: Run, delay: float) -> None:
    """When each phone replied: its code SMS's arrival at the SMSC plus the reply delay."""

    def fetch(payment: Payment) -> None:
        url = f"http://127.0.0.1:{http_port}/phones/{payment.phone.lstrip('+')}/messages"
        with urllib.request.urlopen(url, timeout=30) as response:
            inbox = json.load(response)["messages"]
        for message in inbox:
            if CODE_SMS.search(message["text"]):
                arrived = datetime.fromisoformat(message["received_at"])
                payment.replied_at = (arrived + timedelta(seconds=delay)).timestamp()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetch, [p for p in run.payments if p.activated_at is not None]))


def whole_table_reads(gw: Gateway) -> list[tuple[str, int, int]]:
    """PostgreSQL tables of this run's schema that were scanned whole for many rows: a hot
    statement that misses its index shows here long before it shows in the timings."""
    if gw.db.dialect != "postgresql":
        return []
    with gw.db.read() as session:
        return [tuple(row) for row in session.execute(text(
            "SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema() AND seq_tup_read > 10000 "
            "ORDER BY seq_tup_read DESC"))]


# --- the run --------------------------------------------------------------------------------


def rate(value: str) -> float | str:
    if value == "auto":
        return value
    if float(value) <= 0:
        raise argparse.ArgumentTypeError("a rate is positive, or auto")
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=rate, help="also a run paced at RATE payments a second "
                        f"(auto: {PACED_SHARE:g} × the first run's completed payments a second)")
    parser.add_argument("--overload-seconds", type=float, default=20,
                        help=f"offer {OVERLOAD_FACTOR} × capacity for so long (0: no such run)")
    parser.add_argument("--reply-delay", type=float, default=0.2)
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--bare-seconds", type=float, default=10)
    parser.add_argument("--smpp-max-tps", type=int, default=10000,
                        help="SMPP_MAX_TPS (the service's default, 200, is an SMSC contract's)")
    parser.add_argument("--redeliver-after", type=float, default=30,
                        help="seconds the SMSC waits for a deliver_sm_resp before offering "
                             "the reply again (the simulator's own default is 2)")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--history", type=int, default=50_000,
                        help="past orders in the tables before the runs (seed_history)")
    args = parser.parse_args()
    if args.payments < args.clients or args.clients < 1:
        parser.error("--payments must be at least --clients, and --clients at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    with migrate.private_schema(args.database_url, prefix="bench") as scoped_url:
        migrate.upgrade(scoped_url)
        env = {**os.environ, **bench_settings(scoped_url, args.redis_url, workdir, "bench")}
        gw = connect(load_settings(environ=env))
        try:
            with database_roles(gw, scoped_url) as (statements, urls):
                run(args, gw, scoped_url, workdir, statements, urls)
        finally:
            prefix = gw.settings.REDIS_PREFIX
            for name in gw.redis.scan_iter(match=f"{prefix}*", count=1000):
                gw.redis.delete(name)
            gw.close()


@contextmanager
def database_roles(gw: Gateway, database_url: str) -> Iterator[tuple[StatementLog,
                                                                       dict[str, str]]]:
    """On PostgreSQL, a logged role for each service process (bench/pg_statements.py)."""
    if gw.db.dialect != "postgresql":
        yield StatementLog({}, None, f"on {gw.db.dialect}"), {p: database_url for p in PROCESSES}
        return
    with service_roles(gw.db.engine, database_url, PROCESSES) as roles:
        yield roles


# A day of a TV operator's past orders, shaped as the service leaves them (PostgreSQL): each a
# device, an order that ended (expired: no money moved, so the ledger needs no rows), its code
# SMS delivered in one part, and an entitlement on the device.
_HISTORY = [
    "INSERT INTO devices (id, created_at) SELECT 'history-tv-' || g, :at "
    "FROM generate_series(1, :n) AS g",
    "INSERT INTO orders (id, kind, device_id, package_id, phone, channel, status, reason, "
    "amount, currency, code_attempts, link_token_hash, created_at, updated_at, expires_at) "
    "SELECT 'history-' || g, 'package', 'history-tv-' || g, :package, "
    "'+86136' || lpad(g::text, 8, '0'), 'sms_code', 'expired', 'expired', :price, :currency, "
    "0, md5('history-' || g), :at, :at, :at FROM generate_series(1, :n) AS g",
    "INSERT INTO sms_outbox (to_phone, kind, order_id, body, redacted_body, status, provider, "
    "created_at, updated_at, parts) SELECT phone, 'code', id, 'history', 'history', "
    "'delivered', 'smpp', :at, :at, 1 FROM orders WHERE id LIKE 'history-%'",
    "INSERT INTO sms_parts (outbox_id, part, total, provider, message_id, status, "
    "submitted_at, done_at, queries) SELECT id, 1, 1, 'smpp', 'history-' || id, 'delivered', "
    ":at, :at, 0 FROM sms_outbox WHERE order_id LIKE 'history-%'",
    "INSERT INTO entitlements (device_id, package_id, active_until, updated_at) "
    "SELECT 'history-tv-' || g, :package, :until, :at FROM generate_series(1, :n) AS g",
]


def seed_history(gw: Gateway, count: int) -> None:
    """``count`` past orders in the tables (PostgreSQL), analyzed, as in a service that has run
    for a while. The service's statements are prepared, and PostgreSQL keeps the plan it made
    from the statistics it had: on tables that start empty, lookups by index become scans of
    whole tables that a run then fills (bench/smpp_throughput.py's seed_history says more)."""
    if not count or gw.db.dialect != "postgresql":
        return
    at = gw.clock().replace(tzinfo=None) - timedelta(days=1)
    values = {"n": count, "at": at, "until": at + timedelta(days=30), "package": PACKAGE["id"],
              "price": PACKAGE["price"], "currency": PACKAGE["currency"]}
    with gw.db.transaction() as session:
        for statement in _HISTORY:
            session.execute(text(statement), values)
        for table in session.scalars(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).all():
            session.execute(text(f'ANALYZE "{table}"'))


def phones(start: int, count: int) -> list[str]:
    return [f"+86139{n:08d}" for n in range(start, start + count)]


def new_run(name: str, first_phone: int, count: int, rate: float | None = None,
            open_loop: bool = False) -> Run:
    return Run(name, [Payment(i, f"e2e-{name}-{i}", phone)
                      for i, phone in enumerate(phones(first_phone, count))], rate, open_loop)


def run(args: argparse.Namespace, gw: Gateway, database_url: str, workdir: Path,
        statements: StatementLog, urls: dict[str, str]) -> None:
    closed = ["max"] + (["paced"] if args.rate else [])
    began = time.perf_counter()
    key = seed_payers(gw, workdir, PACKAGE, phones(0, args.payments * len(closed)),
                      args.clients, "e2e-bench")
    seed_history(gw, args.history)
    print(f"seeded {args.payments * len(closed)} phones on {args.clients} wallets and a "
          f"history of {args.history} orders in {time.perf_counter() - began:.0f} s; rate "
          f"limits off (LIMIT_* = 0), SMPP_MAX_TPS {args.smpp_max_tps}", flush=True)
    sampler = Sampler()
    sampler.start()
    watch_servers(sampler, tuple(statements.users.values()),
                  urlsplit(args.redis_url).port or 6379)
    base_env = service_env(gw, database_url, SMS_PROVIDER="smpp", **LIMITS_OFF)
    logs = workdir
    print(f"logs of the processes in {logs}", flush=True)
    if statements.why_not:
        print(f"SQL statements not counted: {statements.why_not}", flush=True)

    # 1. the bare endpoint under the same gunicorn.conf.py
    bare_env = {**base_env, "PORT": str(free_port())}
    with started([sys.executable, "-m", "gunicorn", "bench.bare_app:app"], bare_env,
                 logs / "bare.log") as bare:
        base = f"http://127.0.0.1:{bare_env['PORT']}"
        wait_for(f"{base}/healthz", bare, timeout=60)
        sampler.watch("bare gunicorn", bare.pid, gunicorn_worker("bare gunicorn"))
        since = sampler.snapshot()
        bare_rps, bare_errors = bare_rate(base, PACKAGE["id"], args.clients, args.bare_seconds)
        bare_cpu = sampler.cpu_since(since)
        workers = len(psutil.Process(bare.pid).children())
    print(f"bare Flask POST /orders: {bare_rps:.0f} requests/s ({bare_errors} not 201), "
          f"{workers} workers", flush=True)

    # 2.-4. the real stack
    smsc, smpp_port, phones_port = start_smsc(args.reply_delay, args.redeliver_after)
    sampler.watch("smsc", smsc.pid)
    stack_env = {**base_env, "SMPP_HOST": "127.0.0.1", "SMPP_PORT": str(smpp_port),
                 "SMPP_PASSWORD": SMSC_PASSWORD,
                 "SMPP_MAX_TPS": str(args.smpp_max_tps)}
    results: list[Figures] = []
    try:
        with started(command("worker"), {**stack_env, "DATABASE_URL": urls["worker"]},
                     logs / "worker.log") as worker, \
                started(command("smpp"), {**stack_env, "DATABASE_URL": urls["smpp"]},
                        logs / "smpp.log") as smpp, \
                gunicorn({**stack_env, "DATABASE_URL": urls["web"]}, workers=None,
                         log=logs / "web.log") as base:
            logged(logs / "smpp.log", smpp, r"bound to SMSC")
            sampler.watch("worker", worker.pid)
            sampler.watch("smpp", smpp.pid)
            web_pid = next(p.pid for p in psutil.Process().children()
                           if "app:app" in " ".join(p.cmdline()))
            sampler.watch("web gunicorn", web_pid, gunicorn_worker("web gunicorn"))

            def measure(one: Run, key: str) -> Figures:
                since, mark = sampler.snapshot(), statements.mark()
                poster_cpu = {}
                if one.open_loop:
                    poster_cpu = post_open_loop(base, key, PACKAGE["id"], one)
                else:
                    post_orders(base, key, PACKAGE["id"], one, args.clients)
                wait_ended(gw, one)
                one.cpu = sampler.cpu_since(since) | poster_cpu
                one.statements = statements.count(mark)
                reply_times(phones_port, one, args.reply_delay)
                print(f"run {one.name}: {sum(p.status == 201 for p in one.payments)} of "
                      f"{len(one.payments)} accepted, "
                      f"{sum(p.activated_at is not None for p in one.payments)} activated"
                      + ("" if one.open_loop else
                         f", {sum(p.refusals for p in one.payments)} refusals retried"),
                      flush=True)
                return figures(one)

            results.append(measure(new_run("max", 0, args.payments), key))
            capacity = results[0].completed_rps
            if capacity < 1:
                raise SystemExit("the first run completed no payment: no capacity to go by")
            if args.rate:
                paced_rate = PACED_SHARE * capacity if args.rate == "auto" else args.rate
                results.append(measure(new_run("paced", args.payments, args.payments,
                                               paced_rate), key))
            if args.overload_seconds > 0:
                offered = OVERLOAD_FACTOR * capacity
                count = round(offered * args.overload_seconds)
                first = args.payments * len(closed)
                began = time.perf_counter()
                overload_key = seed_payers(gw, workdir, PACKAGE, phones(first, count),
                                           args.clients, "e2e-overload")
                print(f"seeded {count} phones more for the overload run in "
                      f"{time.perf_counter() - began:.0f} s", flush=True)
                results.append(measure(new_run("overload", first, count, offered,
                                               open_loop=True), overload_key))
            sampler.stop()
            again = (logs / "smpp.log").read_text().count("code code_used")
    finally:
        smsc.terminate()
        smsc.wait(timeout=10)
        sampler.stop()
    body = report(settings_line(args, gw), results, args.rate == "auto", args.overload_seconds,
                  (bare_rps, bare_errors, args.bare_seconds), bare_cpu, sampler,
                  statements.why_not, notes(gw, results, again))
    print("\n" + body)
    if not args.no_record:
        record(body)


def settings_line(args: argparse.Namespace, gw: Gateway) -> str:
    database = gw.db.dialect
    if database == "postgresql":
        with gw.db.read() as session:
            database = f"PostgreSQL {session.scalar(text('SHOW server_version'))}"
    redis_version = gw.redis.info("server")["redis_version"]
    return (f"{args.payments} payments a run, {args.clients} client threads, reply delay "
            f"{args.reply_delay} s; {database}, Redis {redis_version}; rate limits off "
            f"(LIMIT_* = 0), SMPP_MAX_TPS {args.smpp_max_tps}, SMSC redelivery after "
            f"{args.redeliver_after:g} s")


def notes(gw: Gateway, results: list[Figures], again: int) -> list[str]:
    lines = [f"Replies the SMPP worker got again after acting on them (the SMSC redelivering "
             f"what it had not acknowledged in time): {again}."]
    scanned = whole_table_reads(gw)
    if scanned:
        lines.append("Tables read whole (sequential scans) during the run, over 10,000 rows "
                     "in all (a small table is rightly read whole; a scan that reads as many "
                     "rows as the table holds, once per payment, is a missed index): "
                     + ", ".join(f"{name} {scans} scans of {rows // scans:,} rows on average"
                                 for name, scans, rows in scanned) + ".")
    reconnects = sum(one.run.reconnects for one in results)
    if reconnects:
        lines.append(f"{reconnects} POSTs were sent again on a new connection after the "
                     f"server closed a kept-alive one.")
    return lines


if __name__ == "__main__":
    main()
