"""Open event streams against order latency, on the Procfile stack.

    python bench/streams.py [--levels 0,1000,2500,5000] [--rate 20] [--seconds 12]
                            [--target stream|web] [--database-url URL] [--redis-url URL]

Works in a PostgreSQL schema and under a Redis key prefix of its own (both removed at the end);
seeds the phones of the orders on wallets, makes a TV app key, switches every LIMIT_* off, and
runs gunicorn from the Procfile's web line (gunicorn.conf.py, as production) and the stream role
(its stream line: gevent workers). Then, for each level: TVs follow their device streams on the
stream role (``/api/v1/devices/bench-tv-K/events``, plain asyncio sockets in this process) until
LEVEL are open; orders are posted to the web tier at --rate a second for --seconds (open loop:
a late post's latency counts from when it was due), each for a TV whose stream is open; and
the bench waits for each order's ``created`` event to reach its TV. With ``--target web`` the
TVs follow their streams on the web tier instead, as a client that bypasses the proxy's routing
would: its workers hold SSE_WEB_MAX_STREAMS each and refuse the rest.

Prints, a level a row: streams open and refused, POST /orders p50/p95/p99, the created events
that reached their TV and how long after the POST was sent, the stream process's RSS and CPU,
its connections to PostgreSQL and Redis, and the largest web worker's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench.e2e import PACKAGE  # noqa: E402
from bench.e2e_report import ms  # noqa: E402
from gateway import migrate  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.wiring import connect  # noqa: E402
from tests.processes import (  # noqa: E402
    LIMITS_OFF,
    bench_settings,
    gunicorn,
    seed_payers,
    service_env,
    stream_role,
    workers_of,
)

MB = 1_000_000
CREATED = re.compile(rb'"order_id": "(ord_[a-z0-9]+)", "status": "created"')
OPENING_AT_ONCE = 100  # stream handshakes in flight at once


@dataclass
class Tvs:
    """The TVs' streams, held by an asyncio loop on a thread of its own."""

    base: str
    key: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    open: list[str] = field(default_factory=list)  # devices whose stream is open, in order
    refused: int = 0  # 503 too_many_streams
    failed: dict[str, int] = field(default_factory=dict)  # other answers, errors
    ended: int = 0  # streams that ended while held
    seen: dict[str, float] = field(default_factory=dict)  # order id -> when its created came
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # the loop keeps weak ones only

    def start(self) -> None:
        threading.Thread(target=self.loop.run_forever, name="tvs", daemon=True).start()

    def grow(self, count: int) -> None:
        """Open streams for new TVs until ``count`` are open (or refused)."""
        future = asyncio.run_coroutine_threadsafe(self._grow(count), self.loop)
        future.result()

    async def _grow(self, count: int) -> None:
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        first = len(self.open) + self.refused + sum(self.failed.values())
        wanted = count - len(self.open)
        opened = [asyncio.Event() for _ in range(max(wanted, 0))]
        for k, event in enumerate(opened):
            self.tasks.add(asyncio.ensure_future(self._follow(f"bench-tv-{first + k}", gate,
                                                              event)))
        for event in opened:
            await event.wait()

    async def _follow(self, device: str, gate: asyncio.Semaphore, opened: asyncio.Event) -> None:
        host, port = self.base.removeprefix("http://").split(":")
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(f"GET /api/v1/devices/{device}/events HTTP/1.1\r\nHost: {host}\r\n"
                             f"Authorization: Bearer {self.key}\r\n"
                             f"Accept: text/event-stream\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.failed[type(exc).__name__] = self.failed.get(type(exc).__name__, 0) + 1
                opened.set()
                return
        status = head.split(b" ", 2)[1].decode()
        if status != "200":
            if status == "503" and b"too_many_streams" in await reader.read(4096):
                self.refused += 1
            else:
                self.failed[status] = self.failed.get(status, 0) + 1
            writer.close()
            opened.set()
            return
        self.open.append(device)
        opened.set()
        tail = b""
        while chunk := await reader.read(65536):
            now = time.perf_counter()
            tail = tail[-200:] + chunk
            for found in CREATED.finditer(tail):
                self.seen.setdefault(found.group(1).decode(), now)
        self.ended += 1


@dataclass
class Level:
    streams: int
    open: int = 0
    refused: int = 0
    failed: str = ""
    posted: list[tuple[str, float, float, str | None]] = field(default_factory=list)
    stream_rss: int = 0
    stream_cpu: float = 0.0  # share of one core over the posting window
    database_connections: int = 0
    redis_connections: int = 0
    web_rss: int = 0


def post_orders(base: str, key: str, devices: list[str], phones: list[str], rate: float,
                seconds: float, clients: int = 4) -> list[tuple[str, float, float, str | None]]:
    """POST /orders at ``rate`` a second for ``seconds``; (device, sent, latency, order id)."""
    count = int(rate * seconds)
    start = time.perf_counter() + 0.2
    results: list[tuple[str, float, float, str | None]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for i in range(k, count, clients):
            due = start + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            device = devices[i % len(devices)]
            sent = time.perf_counter()
            body = json.dumps({"device_id": device, "package_id": PACKAGE["id"],
                               "phone": phones.pop()})
            try:
                connection.request("POST", "/api/v1/orders", body, headers)
                response = connection.getresponse()
                answer = json.loads(response.read() or b"{}")
                order_id = answer.get("id") if response.status == 201 else None
            except (OSError, http.client.HTTPException):
                connection.close()
                order_id = None
            with lock:
                results.append((device, sent, time.perf_counter() - min(sent, due), order_id))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def connections_to(pid: int, port: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.raddr and c.raddr.port == port)


def measure(args: argparse.Namespace, tvs: Tvs, web: str, key: str, phones: list[str],
            stream_worker: psutil.Process, web_master: int, streams: int) -> Level:
    level = Level(streams)
    began = time.perf_counter()
    tvs.grow(streams)
    level.open, level.refused = len(tvs.open), tvs.refused
    level.failed = ", ".join(f"{n}× {what}" for what, n in tvs.failed.items()) or "0"
    opening = time.perf_counter() - began
    cpu_before = sum(stream_worker.cpu_times()[:2])
    window = time.perf_counter()
    devices = tvs.open or [f"bench-idle-{k}" for k in range(100)]
    level.posted = post_orders(web, key, devices, phones, args.rate, args.seconds)
    level.stream_cpu = (sum(stream_worker.cpu_times()[:2]) - cpu_before) / (
        time.perf_counter() - window)
    deadline = time.perf_counter() + 10
    expected = [order for device, _, _, order in level.posted if order and tvs.open]
    while time.perf_counter() < deadline and not all(o in tvs.seen for o in expected):
        time.sleep(0.1)
    level.stream_rss = stream_worker.memory_info().rss
    level.database_connections = connections_to(stream_worker.pid, args.database_port)
    level.redis_connections = connections_to(stream_worker.pid, args.redis_port)
    level.web_rss = max(psutil.Process(pid).memory_info().rss for pid in workers_of(web_master))
    print(f"  {streams} streams: {level.open} open after {opening:.1f} s", flush=True)
    return level


def row(level: Level, tvs: Tvs) -> str:
    latencies = [latency for _, _, latency, _ in level.posted]
    answered = [p for p in level.posted if p[3]]
    delivered = [tvs.seen[order] - sent for _, sent, _, order in answered if order in tvs.seen]
    reached = f"{len(delivered)} of {len(answered)}, {ms(delivered)}" if level.open else "n/a"
    return (f"| {level.streams:,} | {level.open:,} | {level.refused} | {level.failed} | "
            f"{len(level.posted)} ({len(level.posted) - len(answered)} not 201) | "
            f"{ms(latencies)} | {reached} | {level.stream_rss / MB:.0f} MB | "
            f"{level.stream_cpu * 100:.0f}% | {level.database_connections} / "
            f"{level.redis_connections} | {level.web_rss / MB:.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="0,1000,2500,5000")
    parser.add_argument("--rate", type=float, default=20, help="orders a second at each level")
    parser.add_argument("--seconds", type=float, default=12, help="of posting at each level")
    parser.add_argument("--target", choices=("stream", "web"), default="stream",
                        help="where the TVs follow their streams")
    parser.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    args.database_port = 5432
    args.redis_port = int(args.redis_url.rsplit(":", 1)[1].split("/")[0])
    workdir = Path(tempfile.mkdtemp(prefix="streams-bench-"))
    with migrate.private_schema(args.database_url, prefix="bench") as scoped_url:
        migrate.upgrade(scoped_url)
        env = {**os.environ, **bench_settings(scoped_url, args.redis_url, workdir, "bench",
                                              sms_provider="log")}
        gw = connect(load_settings(environ=env))
        try:
            run(args, gw, scoped_url, workdir, levels)
        finally:
            for name in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*", count=1000):
                gw.redis.delete(name)
            gw.close()


def run(args: argparse.Namespace, gw, database_url: str, workdir: Path,  # type: ignore[no-untyped-def]
        levels: list[int]) -> None:
    count = int(args.rate * args.seconds) * len(levels)
    phones = [f"+86139{n:08d}" for n in range(count)]
    key = seed_payers(gw, workdir, PACKAGE, phones, 20, "streams-bench")
    env = service_env(gw, database_url, SMS_PROVIDER="log", **LIMITS_OFF)
    print(f"ulimit -n {os.sysconf('SC_OPEN_MAX')}; seeded {count} phones; logs in {workdir}",
          flush=True)
    with gunicorn(env, workers=None, log=workdir / "web.log") as web, \
            stream_role(env, log=workdir / "stream.log") as (streams, master):
        web_master = next(p.pid for p in psutil.Process().children()
                          if "app:app" in " ".join(p.cmdline())
                          and "gunicorn_stream" not in " ".join(p.cmdline()))
        [worker] = workers_of(master.pid)
        stream_worker = psutil.Process(worker)
        tvs = Tvs(web if args.target == "web" else streams, key)
        tvs.start()
        results = [measure(args, tvs, web, key, phones, stream_worker, web_master, level)
                   for level in levels]
        lines = [
            f"web: gunicorn.conf.py ({len(workers_of(web_master))} gthread workers); stream "
            f"role: gunicorn_stream.conf.py (1 gevent worker); streams on the {args.target} "
            f"role; orders at {args.rate:g}/s for {args.seconds:g} s a level, each for a TV "
            f"whose stream is open",
            "",
            "| streams asked | open | refused | failed | POST /orders | POST p50 / p95 / p99 "
            "| created events on their TV, POST sent → event p50 / p95 / p99 "
            "| stream process RSS | its CPU (of a core) | its PostgreSQL / Redis connections "
            "| largest web worker RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *[row(level, tvs) for level in results]]
        if tvs.ended:
            lines.append(f"\n{tvs.ended} streams ended while held.")
        print("\n" + "\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
