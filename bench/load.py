"""The bench's TV apps: the orders they post, and how (back to back, paced, or open loop).

Closed loop (``post_orders``): CLIENTS threads, one keep-alive connection each, as TV apps hold
them; with a rate, each posts its share on a schedule, a late post's latency counted from when
it was due. Open loop (``post_open_loop``): one asyncio loop in a process of its own sends
each order when it is due, on an idle connection or a new one, whatever the earlier ones
take, so that the offered rate holds however slow (or quick to refuse) the service is: the
client is not the limit (the overload's printout says how late after due the posts went out).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

__all__ = ["Client", "Payment", "Run", "bare_rate", "post_open_loop", "post_orders"]


@dataclass
class Payment:
    index: int
    device: str
    phone: str
    due: float | None = None  # perf_counter when a paced or open-loop run means to post it
    sent_at: float = 0.0  # perf_counter when the POST was sent
    posted_at: float = 0.0  # wall clock (time.time) when the POST was sent
    answered_at: float = 0.0  # wall clock when its answer was read
    latency: float = 0.0  # seconds for the POST, from sending (or from ``due``, if late)
    status: int = 0  # 0: no answer (connection refused or reset, or 60 s without one)
    code: str | None = None  # the problem's code of a refusal, or why there was no answer
    order_id: str | None = None
    ended: str | None = None  # the order's final status
    activated_at: float | None = None  # wall clock
    replied_at: float | None = None  # wall clock
    refusals: int = 0  # closed loop: 503 overloaded answers it had, each retried as told


@dataclass
class Run:
    name: str
    payments: list[Payment]
    rate: float | None  # None: as fast as they go
    open_loop: bool = False
    started: float = 0.0  # wall clock of the first POST
    posted: float = 0.0  # wall clock when the last POST was answered
    reconnects: int = 0
    connections: int = 0  # open loop: connections it opened
    cpu: dict[tuple[str, int], float] = field(default_factory=dict)  # (process, pid) -> s
    statements: dict[str, dict[str, int]] = field(default_factory=dict)  # process -> counts


def order_body(payment: Payment, package_id: str) -> dict[str, str]:
    return {"device_id": payment.device, "package_id": package_id, "phone": payment.phone}


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


def bare_rate(base: str, package_id: str, clients: int, seconds: float) -> tuple[float, int]:
    """Requests per second of POST /orders on the bare app: warm up, then ``seconds``."""
    counts = [0] * clients
    errors = [0] * clients
    start = threading.Event()
    stop = threading.Event()
    window: list[float] = []

    def work(k: int) -> None:
        client = Client(base, {})
        body = {"device_id": f"bare-{k}", "package_id": package_id, "phone": "13900000000"}
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


def answered(payment: Payment, status: int, body: dict) -> None:
    payment.status = status
    payment.latency = time.perf_counter() - min(payment.due or payment.sent_at, payment.sent_at)
    payment.answered_at = time.time()
    payment.order_id = body.get("id") if status == 201 else None
    payment.code = None if status == 201 else body.get("code")


def sent(payment: Payment) -> None:
    payment.sent_at = time.perf_counter()
    payment.posted_at = time.time()


# a closed-loop client retries a refused order as a TV app does, this many times at most
RETRIES = 50


def post_orders(base: str, key: str, package_id: str, run: Run, clients: int) -> None:
    """Post every payment of ``run``: client k posts payments k, k + clients, ... in turn.

    A ``503 overloaded`` is retried as a TV app does, after the ``retry_after_ms`` it gives
    (counted in the payment's ``refusals``; its latency is the accepted attempt's)."""
    reconnects = [0] * clients
    paced_from = time.perf_counter() + 0.5

    def work(k: int) -> None:
        client = Client(base, {"Authorization": f"Bearer {key}"})
        client.request("GET", "/api/v1/packages")  # opens the connection
        for payment in run.payments[k::clients]:
            if run.rate:
                payment.due = paced_from + payment.index / run.rate
                time.sleep(max(0.0, payment.due - time.perf_counter()))
            for _ in range(RETRIES):
                sent(payment)
                status, body = client.request("POST", "/api/v1/orders",
                                              order_body(payment, package_id))
                answered(payment, status, body)
                if status != 503 or body.get("code") != "overloaded":
                    break
                payment.refusals += 1
                payment.due = None  # the retry's latency counts from its own sending
                time.sleep(body.get("retry_after_ms", 100) / 1000)
        reconnects[k] = client.reconnects

    in_threads(clients, work)
    run.reconnects = sum(reconnects)
    run.started = min(p.posted_at for p in run.payments)
    run.posted = max(p.answered_at for p in run.payments)


class OpenLoop:
    """Connections kept alive between posts, a new one opened whenever none is idle."""

    def __init__(self, base: str, key: str, package_id: str) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.head = (f"POST /api/v1/orders HTTP/1.1\r\nHost: {self.host}\r\n"
                     f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n")
        self.package_id = package_id
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.reconnects = 0

    async def post(self, payment: Payment) -> None:
        body = json.dumps(order_body(payment, self.package_id)).encode()
        request = f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        sent(payment)
        for attempt in (1, 2):
            reused = bool(self.idle)
            writer = None
            try:
                reader, writer = self.idle.pop() if reused else await self.open()
                writer.write(request)
                status, keep, payload = await asyncio.wait_for(answer(reader), 60)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                if writer is not None:
                    writer.close()
                if reused and attempt == 1:  # the server closed an idle one before reading it
                    self.reconnects += 1
                    continue
                answered(payment, 0, {"code": type(exc).__name__})  # no answer: counted as such
                return
            answered(payment, status, json.loads(payload) if payload else {})
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status, whether the connection stays open, and the body of one HTTP/1.1 answer."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in head[1:] if line)}
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close", payload


def post_open_loop(base: str, key: str, package_id: str, run: Run) -> dict[tuple[str, int],
                                                                          float]:
    """Post the payments of ``run`` at ``run.rate`` a second, each when it is due, from a
    process of its own; return its CPU seconds as the bench client's. (In the bench's process,
    whose sampler thread holds the GIL for tens of ms at a time on a loaded machine, posts went
    out up to a second late: p99 954 ms, against 38 ms with the sampler stopped.)"""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        posted, pid, cpu = pool.submit(offer, base, key, package_id, run).result()
    run.payments = posted.payments
    run.reconnects, run.connections = posted.reconnects, posted.connections
    run.started = min(p.posted_at for p in run.payments)
    run.posted = max(p.answered_at for p in run.payments)
    return {("bench client", pid): cpu}


def offer(base: str, key: str, package_id: str, run: Run) -> tuple[Run, int, float]:
    """The open loop itself; returns ``run`` posted, this process's id and its CPU seconds."""
    assert run.rate
    rate = run.rate
    cpu = time.process_time()

    async def post_all() -> OpenLoop:
        loop = OpenLoop(base, key, package_id)
        start = time.perf_counter() + 0.5
        posts = []
        for payment in run.payments:
            payment.due = start + payment.index / rate
            await asyncio.sleep(max(0.0, payment.due - time.perf_counter()))
            posts.append(asyncio.create_task(loop.post(payment)))
        await asyncio.gather(*posts)
        loop.close()
        return loop

    loop = asyncio.run(post_all())
    run.reconnects, run.connections = loop.reconnects, loop.opened
    return run, os.getpid(), time.process_time() - cpu
