"""End to end: TV payments through the whole stack, against a bare Flask endpoint, in one run.

    python bench/e2e.py [--payments 2000] [--clients 50] [--rate R] [--reply-delay 0.2]
                        [--database-url URL] [--redis-url URL] [--bare-seconds 10]
                        [--smpp-max-tps 10000] [--redeliver-after 30] [--no-record]

Works in a PostgreSQL schema and under a Redis key prefix of its own (both removed at the
end); seeds one wallet per client holding the phones of its payments (a phone pays once, so a
reply belongs to one order), makes a TV app key, and switches every LIMIT_* off. Then:

  1. baseline: ``gunicorn bench.bare_app:app`` with the same gunicorn.conf.py, POST /orders
     from the same CLIENTS threads for --bare-seconds: requests per second;
  2. the real stack: gunicorn from the Procfile's web line with gunicorn.conf.py, ``flask
     --app app worker``, ``python -m smpp`` bound to the built-in SMSC run in its own process
     with phones that reply with their code --reply-delay seconds after the code SMS lands;
     CLIENTS threads (one keep-alive connection each, as a TV app) post PAYMENTS orders back
     to back for distinct TVs and phones; the run lasts until every order has ended;
  3. with --rate: PAYMENTS more, posted on a schedule of R a second (open loop: a late post's
     latency counts from when it was due).

Times: POST /orders as the client measured it; "activated" is the order's ``updated_at`` once
activated (the SMPP worker's clock when the payment's transaction began; same machine);
"reply" is when the phone's code SMS reached the SMSC plus --reply-delay (the SMSC schedules
the reply then), so reply -> activated covers the deliver_sm, the SMPP worker and the
payment's transaction.
Activation is watched in the database, not by polling the API, so that watching costs the
service nothing. Peak RSS and CPU seconds of every process are sampled every 0.5 s (psutil).
Prints a table, and appends the run, the machine and the goals to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from gateway import migrate  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.context import Gateway  # noqa: E402
from gateway.store.models import Order
from gateway.wiring import connect  # noqa: E402
from tests.processes import (  # noqa: E402
    LIMITS_OFF,
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

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PACKAGE = {"id": "bench_month", "name": "Bench 月卡", "price": 3000, "currency": "CNY",
           "period_days": 30}
FINAL = ("activated", "failed", "expired", "cancelled")
CODE_SMS = re.compile(r"回复 \d{6}")
MB = 1_000_000
GOAL_PAYMENTS, GOAL_RATIO, GOAL_P99, GOAL_RATE, GOAL_RSS = 300, 1 / 3, 0.100, 200, 150 * MB


# --- processes ------------------------------------------------------------------------------


SERVERS = ("postgresql", "redis")  # reported as one row each


def watch_servers(sampler: Sampler) -> None:
    """PostgreSQL and Redis, where they run on this machine: their CPU is the payments' too."""
    for process in psutil.process_iter(["name", "ppid"]):
        try:
            if process.info["name"] == "redis-server":
                sampler.watch("redis", process.pid)
            elif process.info["name"] == "postgres" and \
                    psutil.Process(process.info["ppid"]).name() != "postgres":
                sampler.watch("postgresql", process.pid, workers=True)
        except psutil.Error:
            continue


class Sampler(threading.Thread):
    """Peak RSS and CPU seconds of watched processes and their children, every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(name="sampler", daemon=True)
        # (role, pid) -> (process, whether its children count as its workers)
        self.roots: dict[tuple[str, int], tuple[psutil.Process, bool]] = {
            ("bench client", os.getpid()): (psutil.Process(), False)}
        self.peak: dict[tuple[str, int], int] = {}
        self.cpu: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()

    def watch(self, role: str, pid: int, workers: bool = False) -> None:
        with self._lock:
            self.roots[role, pid] = (psutil.Process(pid), workers)
        self.sample()

    def run(self) -> None:
        while not self._done.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        with self._lock:
            for (role, _), (root, workers) in self.roots.items():
                try:
                    members = [(role, root)] + [(f"{role} worker", child)
                                                for child in root.children() if workers]
                except psutil.Error:
                    continue
                for name, process in members:
                    try:
                        with process.oneshot():
                            rss, times = process.memory_info().rss, process.cpu_times()
                    except psutil.Error:
                        continue
                    key = (name, process.pid)
                    self.peak[key] = max(self.peak.get(key, 0), rss)
                    self.cpu[key] = times.user + times.system

    def cpu_since(self, since: dict[tuple[str, int], float]) -> dict[tuple[str, int], float]:
        """CPU seconds each process used since the snapshot ``since``."""
        self.sample()
        with self._lock:
            return {key: seconds - since.get(key, 0.0) for key, seconds in self.cpu.items()}

    def snapshot(self) -> dict[tuple[str, int], float]:
        self.sample()
        with self._lock:
            return dict(self.cpu)


# --- clients --------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection, as a TV app holds one."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Content-Type": "application/json", **headers}
        self.reconnects = 0

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, data, self.headers)
                response = self.connection.getresponse()
                payload = response.read()
                return response.status, json.loads(payload) if payload else {}
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed the kept-alive connection before reading the request
                self.connection.close()
                self.reconnects += 1
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@dataclass
class Payment:
    index: int
    device: str
    phone: str
    due: float | None = None  # perf_counter when a paced run means to post it
    posted_at: float = 0.0  # wall clock (time.time) when the POST was sent
    answered_at: float = 0.0  # wall clock when its answer was read
    latency: float = 0.0  # seconds for the POST, from sending (or from ``due``, if late)
    status: int = 0
    order_id: str | None = None
    ended: str | None = None  # the order's final status
    activated_at: float | None = None  # wall clock
    replied_at: float | None = None  # wall clock


@dataclass
class Run:
    name: str
    payments: list[Payment]
    rate: float | None
    started: float = 0.0  # wall clock of the first POST
    posted: float = 0.0  # wall clock when the last POST was answered
    reconnects: int = 0
    cpu: dict[tuple[str, int], float] = field(default_factory=dict)


def in_threads(clients: int, work: Callable[[int], None]) -> None:
    """Run ``work(k)`` for k in range(clients), each on its own thread, started together."""
    barrier = threading.Barrier(clients)
    failures: list[BaseException] = []

    def body(k: int) -> None:
        barrier.wait()
        try:
            work(k)
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=body, args=(k,), name=f"client-{k}")
               for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} client threads failed; first: {failures[0]!r}")


def bare_rate(base: str, clients: int, seconds: float) -> tuple[float, int]:
    """Requests per second of POST /orders on the bare app: warm up, then ``seconds``."""
    counts = [0] * clients
    errors = [0] * clients
    start = threading.Event()
    stop = threading.Event()
    window: list[float] = []

    def work(k: int) -> None:
        client = Client(base, {})
        body = {"device_id": f"bare-{k}", "package_id": PACKAGE["id"], "phone": "13900000000"}
        for _ in range(5):
            client.request("POST", "/orders", body)
        start.wait()
        while not stop.is_set():
            status, _ = client.request("POST", "/orders", body)
            counts[k] += 1
            errors[k] += status != 201

    def clock() -> None:
        time.sleep(1)  # every thread is past its warm-up by now
        window.append(time.perf_counter())
        start.set()
        time.sleep(seconds)
        stop.set()
        window.append(time.perf_counter())

    timer = threading.Thread(target=clock)
    timer.start()
    in_threads(clients, work)
    timer.join()
    return sum(counts) / (window[1] - window[0]), sum(errors)


def post_orders(base: str, key: str, run: Run, clients: int) -> None:
    """Post every payment of ``run``: client k posts payments k, k + clients, ... in turn."""
    reconnects = [0] * clients
    paced_from = time.perf_counter() + 0.5

    def work(k: int) -> None:
        client = Client(base, {"Authorization": f"Bearer {key}"})
        client.request("GET", "/api/v1/packages")  # opens the connection
        for payment in run.payments[k::clients]:
            if run.rate:
                payment.due = paced_from + payment.index / run.rate
                time.sleep(max(0.0, payment.due - time.perf_counter()))
            sent = time.perf_counter()
            payment.posted_at = time.time()
            payment.status, body = client.request("POST", "/api/v1/orders", {
                "device_id": payment.device, "package_id": PACKAGE["id"],
                "phone": payment.phone})
            payment.latency = time.perf_counter() - min(sent, payment.due or sent)
            payment.answered_at = time.time()
            payment.order_id = body.get("id")
        reconnects[k] = client.reconnects

    in_threads(clients, work)
    run.reconnects = sum(reconnects)
    run.started = min(p.posted_at for p in run.payments)
    run.posted = max(p.answered_at for p in run.payments)


def wait_ended(gw: Gateway, run: Run, stall: float = 30) -> None:
    """Wait until every order of ``run`` has ended, or none has for ``stall`` seconds."""
    devices = f"e2e-{run.name}-%"
    ended, last_change, last = 0, time.monotonic(), -1
    while ended < len(run.payments) and time.monotonic() - last_change < stall:
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


# --- figures --------------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float, float] | None:
    """p50, p95, p99 (None for fewer than two values)."""
    if len(values) < 2:
        return None
    cuts = quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def ms(values: list[float]) -> str:
    found = percentiles(values)
    if found is None:
        return "n/a"
    return " / ".join(f"{v * 1000:.0f}" for v in found) + " ms"


@dataclass
class Figures:
    """What one run of payments measured."""

    run: Run
    refused: Counter[int]
    ended: Counter[str]
    post_rps: float
    completed_rps: float
    post_p: str
    reply_p: str
    total_p: str
    post_p99: float | None


def figures(run: Run) -> Figures:
    payments = run.payments
    done = [p for p in payments if p.activated_at is not None]
    replied = [p for p in done if p.replied_at is not None]
    last = max((p.activated_at for p in done), default=run.started)  # type: ignore[type-var]
    post_latencies = [p.latency for p in payments]
    post_cuts = percentiles(post_latencies)
    return Figures(
        run=run, refused=Counter(p.status for p in payments if p.status != 201),
        ended=Counter(p.ended or "not found" for p in payments if p.status == 201),
        post_rps=len(payments) / max(run.posted - run.started, 1e-6),
        completed_rps=len(done) / max(last - run.started, 1e-6),
        post_p=ms(post_latencies),
        reply_p=ms([p.activated_at - p.replied_at for p in replied]),  # type: ignore[operator]
        total_p=ms([p.activated_at - p.posted_at for p in done]),  # type: ignore[operator]
        post_p99=post_cuts[2] if post_cuts else None)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu}, "
            f"{ram:.1f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def goal(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "**NOT met**"


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, help="also a run paced at RATE payments a second")
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
    args = parser.parse_args()
    if args.payments < args.clients or args.clients < 1:
        parser.error("--payments must be at least --clients, and --clients at least 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    with migrate.private_schema(args.database_url, prefix="bench") as scoped_url:
        migrate.upgrade(scoped_url)
        env = {**os.environ, "DATABASE_URL": scoped_url, "REDIS_URL": args.redis_url,
               "REDIS_PREFIX": f"bench{os.getpid()}:", "VAR_DIR": str(workdir),
               "SECRET_KEY": "bench-secret-key-0123456789", "SMS_PROVIDER": "smpp", **LIMITS_OFF}
        gw = connect(load_settings(environ=env))
        try:
            run(args, gw, scoped_url, workdir)
        finally:
            prefix = gw.settings.REDIS_PREFIX
            for name in gw.redis.scan_iter(match=f"{prefix}*", count=1000):
                gw.redis.delete(name)
            gw.close()


def prepare(args: argparse.Namespace, gw: Gateway, workdir: Path, runs: list[str]) -> str:
    """Seed the package, one wallet per client with its payments' phones; return a TV key."""
    count = args.payments * len(runs)
    phones = [f"+86139{n:08d}" for n in range(count)]
    return seed_payers(gw, workdir, PACKAGE, phones, args.clients, "e2e-bench")


def run(args: argparse.Namespace, gw: Gateway, database_url: str, workdir: Path) -> None:
    names = ["max"] + (["paced"] if args.rate else [])
    began = time.perf_counter()
    key = prepare(args, gw, workdir, names)
    print(f"seeded {args.payments * len(names)} phones on {args.clients} wallets in "
          f"{time.perf_counter() - began:.0f} s; rate limits off (LIMIT_* = 0), "
          f"SMPP_MAX_TPS {args.smpp_max_tps}", flush=True)
    runs = [Run(name, [Payment(i, f"e2e-{name}-{i}", f"+86139{n * args.payments + i:08d}")
                       for i in range(args.payments)],
                args.rate if name == "paced" else None)
            for n, name in enumerate(names)]
    sampler = Sampler()
    sampler.start()
    watch_servers(sampler)
    base_env = service_env(gw, database_url, SMS_PROVIDER="smpp", **LIMITS_OFF)
    logs = workdir
    print(f"logs of the processes in {logs}", flush=True)

    # 1. the bare endpoint under the same gunicorn.conf.py
    bare_env = {**base_env, "PORT": str(free_port())}
    with started([sys.executable, "-m", "gunicorn", "bench.bare_app:app"], bare_env,
                 logs / "bare.log") as bare:
        base = f"http://127.0.0.1:{bare_env['PORT']}"
        wait_for(f"{base}/healthz", bare, timeout=60)
        sampler.watch("bare gunicorn", bare.pid, workers=True)
        since = sampler.snapshot()
        bare_rps, bare_errors = bare_rate(base, args.clients, args.bare_seconds)
        bare_cpu = sampler.cpu_since(since)
        sampler.sample()
        workers = len(psutil.Process(bare.pid).children())
    print(f"bare Flask POST /orders: {bare_rps:.0f} requests/s ({bare_errors} not 201), "
          f"{workers} workers", flush=True)

    # 2. and 3. the real stack
    smsc, smpp_port, phones_port = start_smsc(args.reply_delay, args.redeliver_after)
    sampler.watch("smsc", smsc.pid)
    stack_env = {**base_env, "SMPP_HOST": "127.0.0.1", "SMPP_PORT": str(smpp_port),
                 "SMPP_MAX_TPS": str(args.smpp_max_tps)}
    try:
        with started(command("worker"), stack_env, logs / "worker.log") as worker, \
                started(command("smpp"), stack_env, logs / "smpp.log") as smpp, \
                gunicorn(stack_env, workers=None, log=logs / "web.log") as base:
            logged(logs / "smpp.log", smpp, r"bound to SMSC")
            sampler.watch("worker", worker.pid)
            sampler.watch("smpp", smpp.pid)
            web_pid = next(p.pid for p in psutil.Process().children()
                           if "app:app" in " ".join(p.cmdline()))
            sampler.watch("web gunicorn", web_pid, workers=True)
            for one in runs:
                since = sampler.snapshot()
                post_orders(base, key, one, args.clients)
                wait_ended(gw, one)
                one.cpu = sampler.cpu_since(since)
                reply_times(phones_port, one, args.reply_delay)
                print(f"run {one.name}: {sum(p.activated_at is not None for p in one.payments)}"
                      f" of {args.payments} activated", flush=True)
            sampler.stop()
            again = (logs / "smpp.log").read_text().count("code code_used")
            report(args, gw, [figures(one) for one in runs], bare_rps, bare_errors, bare_cpu,
                   sampler, again)
    finally:
        smsc.terminate()
        smsc.wait(timeout=10)
        sampler.stop()


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


def report(args: argparse.Namespace, gw: Gateway, results: list[Figures], bare_rps: float,
           bare_errors: int, bare_cpu: dict[tuple[str, int], float], sampler: Sampler,
           again: int) -> None:
    database = gw.db.dialect
    if database == "postgresql":
        with gw.db.read() as session:
            database = f"PostgreSQL {session.scalar(text('SHOW server_version'))}"
    redis_version = gw.redis.info("server")["redis_version"]
    peak_web = max((rss for (role, _), rss in sampler.peak.items()
                    if role == "web gunicorn worker"), default=0)
    maximal = results[0]
    paced = results[1] if len(results) > 1 else None
    ratio = maximal.post_rps / bare_rps
    paced_ok = paced is not None and paced.completed_rps >= 0.95 * (args.rate or 0)
    lines = [
        f"{args.payments} payments a run, {args.clients} client threads, reply delay "
        f"{args.reply_delay} s; {database}, Redis {redis_version}; rate limits off "
        f"(LIMIT_* = 0), SMPP_MAX_TPS {args.smpp_max_tps}, SMSC redelivery after "
        f"{args.redeliver_after:g} s",
        "",
        "| run | POST /orders | not 201 | orders ended | POST /s | completed payments/s "
        "| POST p50 / p95 / p99 | reply → activated p50 / p95 / p99 "
        "| posted → activated p50 / p95 / p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for one in results:
        title = "as fast as they go" if one.run.rate is None else f"paced at {one.run.rate:g}/s"
        ended = ", ".join(f"{n} {s}" for s, n in one.ended.most_common())
        refused = ", ".join(f"{n}× {s}" for s, n in one.refused.most_common()) or "0"
        lines.append(f"| {title} | {len(one.run.payments)} | {refused} | {ended} | "
                     f"{one.post_rps:.0f} | {one.completed_rps:.0f} | {one.post_p} | "
                     f"{one.reply_p} | {one.total_p} |")
    lines += ["", f"Bare Flask POST /orders under the same gunicorn.conf.py: {bare_rps:.0f} "
              f"requests/s ({bare_errors} not 201) over {args.bare_seconds:g} s; POST "
              f"/api/v1/orders at full speed: {maximal.post_rps:.0f}/s, ratio {ratio:.2f}.", ""]
    lines += ["| process | peak RSS | CPU s, bare run | " + " | ".join(
        f"CPU s, {one.run.name} run" for one in results) + " |",
        "| --- | --- | --- |" + " --- |" * len(results)]
    columns = [bare_cpu] + [one.run.cpu for one in results]
    servers: dict[str, list[tuple[str, int]]] = {}
    for (role, pid), rss in sorted(sampler.peak.items()):
        if role.split()[0] in SERVERS:
            servers.setdefault(role.split()[0], []).append((role, pid))
            continue
        cpu = " | ".join(f"{c[role, pid]:.1f}" if c.get((role, pid)) else "" for c in columns)
        lines.append(f"| {role} {pid} | {rss / MB:.0f} MB | {cpu} |")
    for server, keys in servers.items():
        cpu = " | ".join(f"{sum(c.get(key, 0.0) for key in keys):.1f}" for c in columns)
        lines.append(f"| {server}, all {len(keys)} processes | largest "
                     f"{max(sampler.peak[key] for key in keys) / MB:.0f} MB | {cpu} |")
    lines.append("")
    lines.append("(CPU s: user + system seconds of that process during the run; the servers' "
                 "rows add up all their processes, shared with anything else using them.)")
    goals = [
        ("completed payments per second ≥ 300", f"{maximal.completed_rps:.0f}/s",
         maximal.completed_rps >= GOAL_PAYMENTS),
        ("POST /orders ≥ a third of the bare endpoint", f"{ratio:.2f}", ratio >= GOAL_RATIO),
        ("p99 of POST /orders < 100 ms at 200 payments/s",
         "not run (no --rate 200)" if paced is None or args.rate != GOAL_RATE else
         f"{(paced.post_p99 or 0) * 1000:.0f} ms at {paced.completed_rps:.0f} completed/s",
         None if paced is None or args.rate != GOAL_RATE else
         paced_ok and (paced.post_p99 or 1) < GOAL_P99),
        ("no web worker over 150 MB", f"largest {peak_web / MB:.0f} MB", peak_web <= GOAL_RSS),
    ]
    lines += ["", "| goal (2 cores) | measured | |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {goal(met)} |" for name, value, met in goals]
    lines.append(f"\nReplies the SMPP worker got again after acting on them (the SMSC "
                 f"redelivering what it had not acknowledged in time): {again}.")
    scanned = whole_table_reads(gw)
    if scanned:
        lines.append("\nTables read whole (sequential scans) during the run, over 10,000 rows "
                     "in all (a small table is rightly read whole; a scan that reads as many "
                     "rows as the table holds, once per payment, is a missed index): "
                     + ", ".join(f"{name} {scans} scans of {rows // scans:,} rows on average"
                                 for name, scans, rows in scanned) + ".")
    if sum(one.run.reconnects for one in results):
        lines.append(f"\n{sum(one.run.reconnects for one in results)} POSTs were sent again on "
                     f"a new connection after the server closed a kept-alive one.")
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command_line = " ".join(["python", "bench/e2e.py", *sys.argv[1:]])
        new = not RESULTS.exists()
        with RESULTS.open("a", encoding="utf-8") as out:
            if new:
                out.write("# End-to-end benchmark (`bench/e2e.py`)\n\nOne section a run, "
                          "newest last; how it measures is in the script's docstring.\n")
            out.write(f"\n## {stamp}\n\n`{command_line}`\n\nMachine: {machine()}\n\n"
                      f"{body}\n")
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
