"""What the fault run (``test_faults``) and the scale-out run (``test_scale_out``) share: the
stores they need, the service's settings, a private ``redis-server``, TV apps posting payments
at a steady rate, and the tallies and log ends printed when a run fails."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from gateway import migrate
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.domain.orders import FINAL
from gateway.domain.sms import SmsStatus
from gateway.store.models import Order, OutboxMessage
from gateway.wiring import connect
from tests.processes import LIMITS_OFF, free_port

__all__ = ["DATABASE_URL", "NEEDS", "PACKAGE", "REDIS_SERVER", "SERVICE_SETTINGS", "TTL", "Load",
           "RedisServer", "end", "tallies", "unsettled", "wait_until"]

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_SERVER = shutil.which("redis-server")

NEEDS = [  # the marks of a run over every process of the stack
    pytest.mark.slow,
    pytest.mark.skipif(not DATABASE_URL.startswith("postgresql"),
                       reason="the fault run needs PostgreSQL (TEST_DATABASE_URL): it delays the "
                              "database on its TCP connections, and SQLite serves several "
                              "processes under a kill storm poorly"),
    pytest.mark.skipif(REDIS_SERVER is None,
                       reason="the fault run restarts a redis-server of its own; none installed"),
]

PACKAGE = {"id": "fault_month", "name": "Fault 月卡", "price": 3000, "currency": "CNY",
           "period_days": 30}
TTL = 60  # seconds a code or link lives (the least allowed): lost replies expire soon
SERVICE_SETTINGS = {
    **LIMITS_OFF, "SMS_PROVIDER": "smpp", "CODE_TTL_SECONDS": str(TTL),
    "WAP_LINK_TTL_SECONDS": str(TTL), "SMPP_MAX_TPS": "1000",
    "SMPP_RECLAIM_AFTER": "3",  # a killed worker's messages wait this long for another
    "SMPP_DLR_TIMEOUT": "15",  # a part whose receipt is missing is asked about after this
}


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def end(process: subprocess.Popen) -> None:
    """Kill a process that is still running (the SMSC, a worker the test killed already)."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


class RedisServer:
    """A private redis-server without persistence: a restart loses all its data."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             "--logfile", str(self.workdir / "redis.log")], stdout=subprocess.DEVNULL)
        wait_until(self.answers, 10, "redis-server to answer", every=0.05)

    def answers(self) -> bool:
        with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


class Load:
    """``clients`` TVs posting payments, each for a phone and a TV of its own (``devices``
    and the phone's index), at ``rate`` a second in all, until told to stop or out of phones.
    An answer that is not 201 (or no answer) is counted, not retried."""

    def __init__(self, base: str, key: str, phones: list[str], *, rate: float, clients: int,
                 devices: str = "fault-tv") -> None:
        self.host, self.port = base.removeprefix("http://").split(":")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.answers: Counter[str] = Counter()
        self.rate, self.clients, self.devices = rate, clients, devices
        self._phones = iter(enumerate(phones))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, name=f"tv-{k}", daemon=True)
                         for k in range(clients)]

    @property
    def created(self) -> int:
        return self.answers["201"]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _post(self) -> None:
        connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        due = time.monotonic()
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                due += self.clients / self.rate
                with self._lock:
                    index, phone = next(self._phones, (None, ""))
                if index is None:
                    return
                body = json.dumps({"device_id": f"{self.devices}-{index}",
                                   "package_id": PACKAGE["id"], "phone": phone})
                try:
                    connection.request("POST", "/api/v1/orders", body, self.headers)
                    with connection.getresponse() as response:
                        response.read()
                        answer = str(response.status)
                except (OSError, http.client.HTTPException) as exc:  # a killed worker, ...
                    answer = type(exc).__name__
                    connection.close()
                with self._lock:
                    self.answers[answer] += 1
        finally:
            connection.close()


def unsettled(gw: Gateway) -> tuple[int, int]:
    """Orders still pending, and SMS still on their way."""
    with gw.db.read() as session:
        orders = session.scalar(select(func.count()).select_from(Order).where(
            Order.status.not_in(FINAL)))
        sms = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status.in_([SmsStatus.QUEUED, SmsStatus.SENDING,
                                      SmsStatus.SUBMITTED])))
    return orders or 0, sms or 0


def tallies(gw: Gateway, workdir: Path, lines: list[str]) -> str:
    """What to read when a run fails: ``lines``, the orders and SMS by outcome, and the
    warnings and errors at the end of every log in ``workdir``."""
    with gw.db.read() as session:
        orders = session.execute(select(Order.status, Order.reason, func.count())
                                 .group_by(Order.status, Order.reason)).all()
        sms = session.execute(select(OutboxMessage.kind, OutboxMessage.status,
                                     OutboxMessage.error, func.count())
                              .group_by(OutboxMessage.kind, OutboxMessage.status,
                                        OutboxMessage.error)).all()
    lines = list(lines)
    lines += ["orders: " + ", ".join(f"{n} {s}" + (f" ({r})" if r else "")
                                     for s, r, n in orders)]
    lines += ["sms: " + ", ".join(f"{n} {k} {s}" + (f" ({e[:60]})" if e else "")
                                  for k, s, e, n in sms)]
    for log in sorted(workdir.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()
        notable = [line for line in text if re.search(r'"level": "(WARNING|ERROR)', line)]
        lines.append(f"--- {log.name}: {len(text)} lines, {len(notable)} warnings or "
                     f"errors" + (", the last of them:" if notable else ""))
        lines += [line[:400] for line in notable[-12:]]
    return "\n".join(lines)


def private_stores(workdir: Path, exits: contextlib.ExitStack,
                   name: str) -> tuple[RedisServer, str, Gateway]:
    """A redis-server of the run's own and a PostgreSQL schema of its own, migrated, stopped
    and dropped by ``exits``; with the run's gateway on them (its Redis keys prefixed
    ``name:``)."""
    server = RedisServer(workdir)
    server.start()
    exits.callback(server.kill)
    scoped = exits.enter_context(migrate.private_schema(DATABASE_URL, prefix=name))
    migrate.upgrade(scoped)
    gw = connect(load_settings(environ={
        "DATABASE_URL": scoped, "REDIS_URL": server.url, "VAR_DIR": str(workdir),
        "REDIS_PREFIX": f"{name}:", "SECRET_KEY": f"{name}-secret-key-0123456789",
        "PUBLIC_BASE_URL": "https://pay.example"}))
    exits.callback(gw.close)
    return server, scoped, gw
