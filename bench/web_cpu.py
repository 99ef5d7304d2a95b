"""CPU of ``POST /api/v1/orders`` in the gunicorn web workers against the same request in-process.

    python bench/web_cpu.py [--rounds 4] [--posts 400] [--clients 50]
                            [--database-url URL] [--redis-url URL] [--env NAME=VALUE ...]

Works in a PostgreSQL schema and under a Redis key prefix of its own (both removed at the end),
with every LIMIT_* off and SMS_PROVIDER=smpp, as bench/e2e.py runs the web tier. Starts the
Procfile's web line with gunicorn.conf.py as production has it (``--env`` adds to its
environment, e.g. ``--env GUNICORN_THREADS=4``), and builds the same app in this process. Then
ROUNDS times, alternating: POSTS orders from CLIENTS threads over keep-alive connections to
gunicorn (as bench/e2e.py's TV apps post them), CPU of gunicorn's processes read from
/proc before and after; and POSTS orders through the in-process Flask test client, CPU of this
process. Prints CPU ms a POST of each, per round and the median, and what gunicorn adds.
Orders stay pending: no SMPP worker runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
from flask import Flask  # noqa: E402

from bench.load import Payment, Run, post_orders  # noqa: E402
from gateway import create_app, migrate  # noqa: E402
from gateway.context import Gateway, services  # noqa: E402
from tests.processes import LIMITS_OFF, bench_settings, gunicorn, seed_payers, service_env  # noqa: E402

PACKAGE = {"id": "web_month", "name": "Web 月卡", "price": 3000, "currency": "CNY",
           "period_days": 30}


def cpu_of_tree(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process and its living children."""
    root = psutil.Process(pid)
    user = system = 0.0
    for process in [root, *root.children()]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        user += times.user
        system += times.system
    return user, system


def cpu_of_this() -> tuple[float, float]:
    times = os.times()
    return times.user, times.system


def since(before: tuple[float, float], after: tuple[float, float], n: int) -> tuple[float, float]:
    """User and system CPU ms a POST."""
    return (after[0] - before[0]) * 1000 / n, (after[1] - before[1]) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="add to gunicorn's environment")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    workdir = Path(tempfile.mkdtemp(prefix="web-cpu-"))
    with migrate.private_schema(args.database_url, prefix="webcpu") as url:
        migrate.upgrade(url)
        config = bench_settings(url, args.redis_url, workdir, "webcpu")
        app = create_app(config)
        gw = services(app)
        log_file = (workdir / "app.log").open("w", encoding="utf-8")
        for handler in logging.getLogger().handlers:  # logs cost what they cost, out of sight
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(log_file)
        try:
            run(args, app, gw, url, workdir, extra)
        finally:
            for name in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*", count=1000):
                gw.redis.delete(name)
            gw.close()


def run(args: argparse.Namespace, app: Flask, gw: Gateway, url: str, workdir: Path,
        extra: dict[str, str]) -> None:
    n = args.posts
    per_round = 2 * n
    phones = [f"+86139{i:08d}" for i in range(args.rounds * per_round + 100)]
    key = seed_payers(gw, workdir, PACKAGE, phones, args.clients, "web-cpu")
    env = service_env(gw, url, SMS_PROVIDER="smpp", **LIMITS_OFF, **extra)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    spare = iter(phones[args.rounds * per_round:])

    def in_process(first: int) -> tuple[float, float]:
        before = cpu_of_this()
        for i in range(first, first + n):
            response = client.post("/api/v1/orders", headers=headers, json={
                "device_id": f"inproc-{i}", "phone": phones[i], "package_id": PACKAGE["id"]})
            assert response.status_code == 201, response.get_json()
        return since(before, cpu_of_this(), n)

    for i in range(30):  # warm up the in-process app
        client.post("/api/v1/orders", headers=headers, json={
            "device_id": f"warm-{i}", "phone": next(spare), "package_id": PACKAGE["id"]})
    log = workdir / "web.log"
    print(f"gunicorn's log: {log}; extra environment: {extra or 'none'}", flush=True)
    with gunicorn(env, workers=None, log=log) as base:
        master = next(p.pid for p in psutil.Process().children()
                      if "app:app" in " ".join(p.cmdline()))
        workers = len(psutil.Process(master).children())
        print(f"gunicorn master {master}", flush=True)
        warm = Run("warm", [Payment(i, f"warmweb-{i}", next(spare)) for i in range(60)], None)
        post_orders(base, key, PACKAGE["id"], warm, min(args.clients, 60))
        served, local, rates = [], [], []
        for r in range(args.rounds):
            first = r * per_round
            one = Run(f"r{r}", [Payment(i, f"web-{r}-{i}", phones[first + i])
                                for i in range(n)], None)
            before = cpu_of_tree(master)
            began = time.perf_counter()
            post_orders(base, key, PACKAGE["id"], one, args.clients)
            took = time.perf_counter() - began
            used = since(before, cpu_of_tree(master), n)
            bad = sum(p.status != 201 for p in one.payments)
            if bad:  # PostgreSQL out of connections (others' runs share it), say
                print(f"round {r + 1}: {bad} POSTs were not 201", flush=True)
            served.append(used[0] + used[1])
            rates.append(n / took)
            mine = in_process(first + n)
            local.append(mine[0] + mine[1])
            print(f"round {r + 1}: gunicorn {served[-1]:.2f} ms a POST (user {used[0]:.2f}, "
                  f"system {used[1]:.2f}; {rates[-1]:.0f}/s), in-process {local[-1]:.2f} ms "
                  f"(user {mine[0]:.2f}, system {mine[1]:.2f})", flush=True)
    med_served, med_local = statistics.median(served), statistics.median(local)
    print(f"{workers} workers, {args.clients} clients, {n} POSTs a round; median CPU ms a "
          f"POST: gunicorn {med_served:.2f}, in-process {med_local:.2f}, gunicorn adds "
          f"{med_served - med_local:.2f}; {statistics.median(rates):.0f} POSTs/s")


if __name__ == "__main__":
    main()
