"""Fault injection (issue 9): over a thousand payments through the whole stack while, one after
another, the SMPP worker is SIGKILLed and started again, a gunicorn worker is SIGKILLed, Redis
restarts empty, the SMSC link is cut and the database answers late. Afterwards the database
alone must show the five properties of ``tests.faults.audit``.

The stack is the production one: gunicorn from the Procfile with two workers, ``flask --app app
worker``, ``python -m smpp`` and the built-in SMSC in its own process, whose phones reply with
their codes. The SMPP worker reaches the SMSC, and every service process reaches PostgreSQL,
through loopback proxies (``tests.faults.proxy``) that cut or slow the link. Redis is a
``redis-server`` of the test's own, so that its restart disturbs nobody else.

It needs PostgreSQL (``TEST_DATABASE_URL``): the database's delay is made on its TCP
connections, and SQLite's single writer serves several processes under this storm poorly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from gateway.config import PROJECT_ROOT
from gateway.domain.orders import Status
from gateway.store.models import Order, OutboxMessage
from tests.faults.audit import PROPERTIES, audit
from tests.faults.parts import (
    NEEDS,
    PACKAGE,
    SERVICE_SETTINGS,
    TTL,
    Load,
    end,
    private_stores,
    tallies,
    unsettled,
    wait_until,
)
from tests.faults.proxy import Proxy
from tests.processes import (
    SMSC_PASSWORD,
    command,
    gunicorn,
    logged,
    seed_payers,
    service_env,
    start_smsc,
    started,
)

pytestmark = NEEDS

PAYMENTS = 1000  # orders the TVs create at least
RATE = 15.0  # payments a second, in all: below what this stack completes on two cores
CLIENTS = 4  # TV apps posting at once
PHONES = 3000  # one phone (and TV) a payment; the run goes on until every fault is over
DB_DELAY = 0.02  # seconds added to each chunk to and from PostgreSQL while it is slow


class Stack:
    """The service's processes on the test's stores, and the faults done to them."""

    def __init__(self, workdir: Path, exits: contextlib.ExitStack) -> None:
        self.workdir = workdir
        self.exits = exits
        self.done: dict[str, str] = {}  # fault -> what showed it happened, and how long

    def start(self) -> None:
        exits, workdir = self.exits, self.workdir
        self.redis, scoped, self.gw = private_stores(workdir, exits, "faults")
        self.phones = [f"+86139{n:08d}" for n in range(PHONES)]
        self.key = seed_payers(self.gw, workdir, PACKAGE, self.phones, CLIENTS, "fault-tv")

        smsc, smpp_port, _ = start_smsc(reply_delay=0.2, redeliver_after=5)
        exits.callback(end, smsc)
        self.smsc_link = exits.enter_context(contextlib.closing(
            Proxy(("127.0.0.1", smpp_port)).start()))
        database = make_url(scoped)
        self.database_link = exits.enter_context(contextlib.closing(
            Proxy((database.host or "127.0.0.1", database.port or 5432)).start()))
        proxied = database.set(host="127.0.0.1", port=self.database_link.port)
        self.env = service_env(self.gw, proxied.render_as_string(hide_password=False),
                               SMPP_HOST="127.0.0.1", SMPP_PORT=str(self.smsc_link.port),
                               SMPP_PASSWORD=SMSC_PASSWORD, **SERVICE_SETTINGS)

        exits.enter_context(started(command("worker"), self.env, workdir / "worker.log"))
        self.first_smpp = self._spawn(command("smpp"), workdir / "smpp-1.log")
        logged(workdir / "smpp-1.log", self.first_smpp, r"bound to SMSC", timeout=60)
        self.smpp, self.smpp_log = self.first_smpp, workdir / "smpp-1.log"
        self.base = exits.enter_context(gunicorn(self.env, workers=2, log=workdir / "web.log"))
        self.master = next(p for p in psutil.Process().children()
                           if f"127.0.0.1:{self.env['PORT']}" in " ".join(p.cmdline()))

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen:
        """A process to be killed: not stopped and checked as ``started`` does."""
        out = self.exits.enter_context(open(log, "w"))
        process = subprocess.Popen(argv, env=self.env, cwd=PROJECT_ROOT, stderr=out,
                                   stdout=subprocess.DEVNULL)
        self.exits.callback(end, process)
        return process

    # --- the faults ---------------------------------------------------------------------------

    def kill_smpp_worker(self) -> str:
        """SIGKILL the SMPP worker at work, then start another (as a process manager does)."""
        self.smpp.send_signal(signal.SIGKILL)
        assert self.smpp.wait(timeout=10) == -signal.SIGKILL
        self.smpp_log = self.workdir / "smpp-2.log"
        self.smpp = self.exits.enter_context(started(command("smpp"), self.env, self.smpp_log))
        logged(self.smpp_log, self.smpp, r"bound to SMSC", timeout=60)
        return f"pid {self.first_smpp.pid} killed, pid {self.smpp.pid} bound"

    def kill_web_worker(self) -> str:
        """SIGKILL one gunicorn worker while it serves; its master starts another."""
        victim = self.web_workers()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(self.web_workers()) == 2 and victim not in self.web_workers(),
                   60, "gunicorn to replace its killed worker")
        return f"pid {victim} killed, workers now {sorted(self.web_workers())}"

    def web_workers(self) -> list[int]:
        workers = []
        for child in self.master.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    workers.append(child.pid)
        return workers

    def restart_redis(self) -> str:
        """SIGKILL Redis (it keeps nothing on disk); once every process has seen it gone,
        start it again, empty, on the same port."""
        worker_failures = self.lines("worker.log", "worker round failed")
        feeder_failures = self.lines(self.smpp_log.name, "feeder failed")
        self.redis.kill()
        wait_until(lambda: self.ready() == 503, 30, "/readyz to report Redis away")
        wait_until(lambda: self.lines("worker.log", "worker round failed") > worker_failures
                   and self.lines(self.smpp_log.name, "feeder failed") > feeder_failures, 30,
                   "the background and SMPP workers to fail for want of Redis")
        self.redis.start()
        wait_until(lambda: self.ready() == 200, 60, "/readyz to report ready again")
        return "killed and started empty"

    def cut_smsc_link(self) -> str:
        """Cut the SMPP connection and refuse new ones until the worker has failed to bind
        again; then let it bind."""
        log = self.smpp_log.name
        binds, failures = self.lines(log, "bound to SMSC"), self.lines(log, "binding again")
        self.smsc_link.down()
        wait_until(lambda: self.lines(log, "binding again") >= failures + 3, 60,
                   "the SMPP worker to lose the link and fail to bind twice more")
        self.smsc_link.up()
        wait_until(lambda: self.lines(log, "bound to SMSC") > binds, 60,
                   "the SMPP worker to bind again")
        return f"{self.smsc_link.cut_connections} connections cut"

    def delay_database(self) -> str:
        """Slow every service's PostgreSQL connections until 20 payments completed slowly."""
        self.database_link.delay = DB_DELAY
        try:
            self.wait_for_payments(20, 120, "payments to complete on a slow database")
        finally:
            self.database_link.delay = 0.0
        return f"{self.database_link.delayed_chunks} chunks delayed by {DB_DELAY} s"

    # --- watching ---------------------------------------------------------------------------

    def wait_for_payments(self, count: int, timeout: float, what: str) -> None:
        """Wait until ``count`` more orders have been activated."""
        target = self.count(Order.status == Status.ACTIVATED) + count
        wait_until(lambda: self.count(Order.status == Status.ACTIVATED) >= target, timeout,
                   what, every=0.5)

    def ready(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.base}/readyz", timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code
        except OSError:
            return 0

    def lines(self, log: str, text: str) -> int:
        """How many lines of the process log ``log`` hold ``text``."""
        return sum(text in line for line in (self.workdir / log).read_text().splitlines())

    def count(self, *where: object) -> int:
        with self.gw.db.read() as session:
            return session.scalar(select(func.count()).select_from(Order).where(*where)) or 0

    def unsettled(self) -> tuple[int, int]:
        """Orders still pending, and SMS still on their way."""
        return unsettled(self.gw)

    def report(self, load: Load | None = None) -> str:
        """What to read when the run fails: the tallies and the end of every log."""
        lines = [f"faults: {self.done}"]
        if load is not None:
            lines.append(f"answers to POST /orders: {dict(load.answers)}")
        return tallies(self.gw, self.workdir, lines)

@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with contextlib.ExitStack() as exits:
        running = Stack(tmp_path, exits)
        running.start()
        yield running


def test_payments_come_through_faults_with_every_order_final_and_the_money_right(stack):
    began = time.monotonic()
    load = Load(stack.base, stack.key, stack.phones, rate=RATE, clients=CLIENTS).start()
    try:
        stack.wait_for_payments(50, 60, "the first payments to complete")
        for fault in (stack.kill_smpp_worker, stack.kill_web_worker, stack.restart_redis,
                      stack.cut_smsc_link, stack.delay_database):
            started_at = time.monotonic()
            shown = fault()
            stack.wait_for_payments(20, 90, f"payments to complete again after {fault.__name__}")
            stack.done[fault.__name__] = f"{shown}; {time.monotonic() - started_at:.0f} s"
        wait_until(lambda: load.created >= PAYMENTS, 300, f"{PAYMENTS} orders")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.report(load)}") from None
    finally:
        load.stop()
    posted = time.monotonic()
    try:
        wait_until(lambda: stack.unsettled() == (0, 0), TTL + 120,
                   "every order to end and every SMS to conclude", every=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {stack.unsettled()} left\n{stack.report(load)}") from None

    with stack.gw.db.read() as session:
        found = audit(session)
        epochs = {ref.split("/")[0] for ref in session.scalars(
            select(OutboxMessage.relay_ref).where(OutboxMessage.relay_ref.is_not(None)))}
        again = session.scalar(  # "code already used": the SMSC offered a reply again
            select(func.count()).select_from(OutboxMessage)
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(OutboxMessage.kind == "reply", Order.status == Status.ACTIVATED))
    orders, activated = stack.count(), stack.count(Order.status == Status.ACTIVATED)
    summary = (f"{load.created} orders created of {sum(load.answers.values())} posted; "
               f"{activated} activated, {stack.count(Order.status == Status.EXPIRED)} "
               f"expired, {stack.count(Order.status == Status.FAILED)} failed; {again} codes "
               f"received again after their payment and refused; posting "
               f"{posted - began:.0f} s, settling {time.monotonic() - posted:.0f} s")
    print(f"\n{summary}\n{stack.report(load)}")
    assert {name: problems[:10] for name, problems in found.items()} == \
        {name: [] for name in PROPERTIES}, f"{summary}\n{stack.report(load)}"
    # the run was what it claims: many payments, most of them through, every fault done
    assert orders >= PAYMENTS and activated >= 0.9 * orders, summary
    assert len(epochs) >= 2, "the relay never noticed that Redis had lost its stream"
    assert stack.database_link.delayed_chunks > 0 and stack.smsc_link.cut_connections > 0
    assert list(stack.done) == ["kill_smpp_worker", "kill_web_worker", "restart_redis",
                                "cut_smsc_link", "delay_database"]
