"""The two hot paths of a payment, in one process: what each costs in CPU and SQL.

    python bench/hot_paths.py [--payments 500] [--database-url URL] [--redis-url URL]
                              [--profile order|reply]

1. ``POST /api/v1/orders`` through the Flask app (test client: auth, JSON, logging, metrics
   and the order's transaction, without gunicorn or sockets) for PAYMENTS bound phones;
2. the code reply of each: half of them one at a time (``inbound.receive_sms``, as an HTTP
   gateway or Twilio hands one over), the other half in batches of 25
   (``inbound.receive_together``, as the SMPP worker hands over the replies that arrived
   together under load).

Against a baseline in the same run: ``GET /healthz`` through the same test client (the fixed
cost of a Flask request here), in blocks alternating with each path's. Prints, per call:
Python CPU ms, wall ms, SQL statements, commits and the ratio to the baseline; ``--profile``
prints the top of a cProfile of that path, whose count of function calls does not wander with
the VM's speed as CPU time does: compare that count between two commits to see a change of a
few percent.
e2e.py measures the whole stack; this one says where a change to a hot path lands.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402
from sqlalchemy import event, select  # noqa: E402

from gateway import create_app, migrate
from gateway.context import Gateway, services  # noqa: E402
from gateway.messaging import inbound
from gateway.store.models import Order, OutboxMessage
from tests.processes import bench_settings, seed_payers  # noqa: E402

PACKAGE = {"id": "hot_month", "name": "Hot 月卡", "price": 3000, "currency": "CNY",
           "period_days": 30}
CODE = re.compile(r"回复 (\d{6})")


class Statements:
    """Counts the SQL statements and the commits the engine runs."""

    def __init__(self, gw: Gateway) -> None:
        self.count = 0
        self.commits = 0
        event.listen(gw.db.engine, "before_cursor_execute", self._seen)
        event.listen(gw.db.engine, "commit", self._committed)

    def _seen(self, *_args: object) -> None:
        self.count += 1

    def _committed(self, *_args: object) -> None:
        self.commits += 1


class Meter:
    """CPU, wall time and SQL statements per call of each measured step.

    Steps are run in small blocks, each path's blocks alternating with the baseline's, so that
    the VM's wandering speed moves both alike and the ratio stays meaningful.
    """

    BLOCK = 25

    def __init__(self, statements: Statements, profile: str | None) -> None:
        self.statements = statements
        self.profiled = profile
        self.profiler = cProfile.Profile()
        # label: [cpu s, wall s, statements, commits, calls]
        self.totals: dict[str, list[float]] = {}

    def run(self, label: str, step: Callable[[range], None], calls: range) -> None:
        before = self.statements.count, self.statements.commits
        profile = label == self.profiled
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            self.profiler.enable()
        step(calls)
        if profile:
            self.profiler.disable()
        total = self.totals.setdefault(label, [0.0] * 5)
        total[0] += time.process_time() - cpu
        total[1] += time.perf_counter() - wall
        total[2] += self.statements.count - before[0]
        total[3] += self.statements.commits - before[1]
        total[4] += len(calls)

    def alternate(self, label: str, step: Callable[[range], None], baseline: str,
                  base_step: Callable[[range], None], span: range) -> None:
        """Blocks of BLOCK calls of ``step`` (given the block's indexes), each after one of the
        baseline's."""
        for start in span[::self.BLOCK]:
            calls = range(start, min(start + self.BLOCK, span.stop))
            self.run(baseline, base_step, calls)
            self.run(label, step, calls)

    def per_call(self, label: str) -> tuple[float, float, float, float]:
        cpu, wall, sql, commits, calls = self.totals[label]
        return cpu * 1000 / calls, wall * 1000 / calls, sql / calls, commits / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--profile", choices=["order", "reply", "replies"])
    args = parser.parse_args()
    if args.payments < 2:
        parser.error("--payments must be at least 2")
    workdir = Path(tempfile.mkdtemp(prefix="hot-paths-"))
    with migrate.private_schema(args.database_url, prefix="hot") as url:
        migrate.upgrade(url)
        app = create_app(bench_settings(url, args.redis_url, workdir, "hot"))
        gw: Gateway = services(app)
        log_file = (workdir / "app.log").open("w", encoding="utf-8")
        for handler in logging.getLogger().handlers:  # logs cost what they cost, out of sight
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(log_file)
        print(f"the app's logs: {log_file.name}", flush=True)
        try:
            run(args, app, gw, workdir)
        finally:
            for name in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*", count=1000):
                gw.redis.delete(name)
            gw.close()


def run(args: argparse.Namespace, app: Flask, gw: Gateway, workdir: Path) -> None:
    n = args.payments
    phones = [f"+86139{i:08d}" for i in range(n + 50)]
    key = seed_payers(gw, workdir, PACKAGE, phones, 10, "hot-paths")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    statements = Statements(gw)
    for i in range(50):  # warm up: pools, caches, first imports
        client.post("/api/v1/orders", headers=headers, json={
            "device_id": f"warm-{i}", "phone": phones[n + i], "package_id": PACKAGE["id"]})
        client.get("/healthz")

    def healthz(calls: range) -> None:
        for _ in calls:
            assert client.get("/healthz").status_code == 200

    order_ids: list[str] = []

    def order(calls: range) -> None:
        for i in calls:
            response = client.post("/api/v1/orders", headers=headers, json={
                "device_id": f"hot-{i}", "phone": phones[i], "package_id": PACKAGE["id"]})
            assert response.status_code == 201, response.get_json()
            order_ids.append(response.get_json()["id"])

    meter = Meter(statements, {"order": "POST /orders", "reply": "code reply",
                               "replies": "code replies"}.get(args.profile))
    meter.alternate("POST /orders", order, "GET /healthz", healthz, range(n))
    with gw.db.read() as session:
        bodies = dict(session.execute(select(OutboxMessage.order_id, OutboxMessage.body).where(
            OutboxMessage.order_id.in_(order_ids), OutboxMessage.kind == "code")).all())
    codes = [CODE.search(bodies[order_id]).group(1) for order_id in order_ids]

    def reply(calls: range) -> None:
        for i in calls:
            inbound.receive_sms(gw, sender=phones[i], text=codes[i])

    def replies(calls: range) -> None:
        assert all(inbound.receive_together(gw, [(phones[i], codes[i]) for i in calls]))

    meter.alternate("code reply", reply, "GET /healthz", healthz, range(n // 2))
    meter.alternate("code replies", replies, "GET /healthz", healthz, range(n // 2, n))
    if args.profile:
        print(f"--- cProfile of {meter.profiled}")
        pstats.Stats(meter.profiler).sort_stats("cumulative").print_stats(45)
    with gw.db.read() as session:
        activated = session.scalar(select(Order.id).where(
            Order.id.in_(order_ids), Order.status != "activated").limit(1))
    assert activated is None, f"order {activated} was not activated"
    print(f"{n} payments, {gw.db.dialect}; per call (blocks of {Meter.BLOCK}, alternating "
          f"with the baseline):")
    print(f"{'':16} {'CPU ms':>8} {'wall ms':>8} {'SQL':>6} {'commits':>8} "
          f"{'CPU × healthz':>14}")
    base = meter.per_call("GET /healthz")[0]
    for label in ("GET /healthz", "POST /orders", "code reply", "code replies"):
        cpu, wall, sql, commits = meter.per_call(label)
        print(f"{label:16} {cpu:8.2f} {wall:8.2f} {sql:6.1f} {commits:8.2f} "
              f"{cpu / base:14.1f}")
    print(f"(code reply: one at a time; code replies: in batches of {Meter.BLOCK}, per reply)")


if __name__ == "__main__":
    main()
