"""An operator's import: `flask --app app seed FILE` of many wallets (issue 21, point 8).

    python bench/seed_import.py [--wallets 100000] [--passwords hashed|plain]
                                [--baseline 200] [--database-url URL] [--redis-url URL]

Writes a seed file of WALLETS wallets (each with a phone, a card and opening balances) to a
temporary folder, then runs the seed command on it (the CLI's own path: check the file whole,
hash, write in batches in one transaction), and runs it again (a reload: nothing changes).
--passwords hashed gives each wallet a ready-made scrypt hash (werkzeug's default parameters;
16 distinct hashes, reused: the import only checks their format, so the cost is the same);
plain gives plain passwords, which the import hashes across the machine's cores.

Then, as the baseline in the same run, hashes --baseline plain passwords one after another
(what the seed command did before) and in the pool, and projects the plain-password import of
WALLETS wallets from the pool's rate.

Prints wall seconds, wallets/s, CPU seconds of this process and of the hashing processes, and
the machine's load average before and after. Defaults: SQLite in the temporary folder and an
embedded Redis; --database-url runs in a schema of its own on that server, dropped after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from werkzeug.security import generate_password_hash  # noqa: E402

from gateway import create_app, migrate  # noqa: E402
from gateway.backend import seed_passwords  # noqa: E402
from gateway.context import services  # noqa: E402
from tests.processes import bench_settings  # noqa: E402


def seed_file(path: Path, wallets: int, passwords: str) -> None:
    hashes = [generate_password_hash(f"pw-{i:04d}") for i in range(16)] \
        if passwords == "hashed" else []
    items = []
    for i in range(wallets):
        secret = {"password_hash": hashes[i % 16]} if hashes else {"password": f"pw-{i:08d}"}
        items.append({"id": f"w-{i:07d}", "owner": f"owner {i}", "balance": 10000 + i,
                      "phones": [f"+86139{i:08d}"], **secret,
                      "card": {"bank": "ICBC", "last4": f"{i % 10000:04d}", "balance": 50000}})
    packages = [{"id": "vip_month", "name": "VIP", "price": 3000, "period_days": 30}]
    path.write_text(json.dumps({"packages": packages, "wallets": items}), encoding="utf-8")


def cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process, and of its ended children (the pool)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_seed(app, path: Path, label: str, wallets: int) -> float:
    runner = app.test_cli_runner()
    (own0, kids0), start = cpu(), time.perf_counter()
    result = runner.invoke(args=["seed", str(path)])
    wall = time.perf_counter() - start
    own, kids = cpu()
    if result.exit_code != 0:
        raise SystemExit(f"seed failed: {result.output}")
    print(f"{label}: {wall:.1f} s, {wallets / wall:.0f} wallets/s; CPU {own - own0:.1f} s "
          f"(this process) + {kids - kids0:.1f} s (hashing processes); "
          f"{result.output.strip().splitlines()[-1].split(': ', 1)[1]}")
    return wall


def baseline(count: int, wallets: int) -> None:
    """Hash rates one after another and in the pool, by wall clock (which the machine's other
    load moves) and by CPU (which it does not); the pool's start (spawned processes import the
    project) is timed apart: to its first result."""
    tasks: list[tuple[str | None, str]] = [(None, f"pw-{i:08d}") for i in range(count)]
    (own0, _), start = cpu(), time.perf_counter()
    seed_passwords.settle(tasks, workers=1)
    one, one_cpu = (time.perf_counter() - start) / count, (cpu()[0] - own0) / count
    first: list[float] = []

    def note(_stage: str, done: int, _total: int) -> None:
        if done == 1:
            first.append(time.perf_counter())

    (_, kids0), start = cpu(), time.perf_counter()
    seed_passwords.settle(tasks, progress=note)
    end = time.perf_counter()
    pool, pool_cpu = (end - first[0]) / (count - 1), (cpu()[1] - kids0) / count
    print(f"hashing {count} plain passwords: one after another {one * 1000:.0f} ms each "
          f"(CPU {one_cpu * 1000:.0f} ms); pool of {os.cpu_count()} processes "
          f"{pool * 1000:.0f} ms each after its start of {first[0] - start:.1f} s "
          f"(CPU {pool_cpu * 1000:.0f} ms, start included), x{one / pool:.2f}")
    cores = os.cpu_count() or 1
    print(f"projected for {wallets} plain passwords: {wallets * pool:.0f} s at this run's "
          f"pool rate; {wallets * one_cpu / cores:.0f} s on {cores} idle cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wallets", type=int, default=100_000)
    parser.add_argument("--passwords", choices=["hashed", "plain"], default="hashed")
    parser.add_argument("--baseline", type=int, default=200,
                        help="plain passwords hashed for the baseline (0: none)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="seed-import-"))
    url = args.database_url or f"sqlite:///{workdir / 'gateway.db'}"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{os.cpu_count()} cores")
    path = workdir / "wallets.json"
    start = time.perf_counter()
    seed_file(path, args.wallets, args.passwords)
    print(f"{args.wallets} wallets, {args.passwords} passwords: file of "
          f"{path.stat().st_size / 1e6:.1f} MB written in {time.perf_counter() - start:.1f} s")
    with migrate.private_schema(url, prefix="seedbench") as scoped:
        migrate.upgrade(scoped)
        app = create_app({**bench_settings(scoped, args.redis_url, workdir, "seedbench",
                                           sms_provider="log"),
                          "PUBLIC_BASE_URL": "https://pay.example"})
        try:
            print(f"database: {services(app).db.dialect}")
            run_seed(app, path, "import", args.wallets)
            run_seed(app, path, "reload (changes nothing)", args.wallets)
        finally:
            services(app).close()
    if args.baseline:
        baseline(args.baseline, args.wallets)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
