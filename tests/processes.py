"""Real service processes in tests: their environment, their commands (the Procfile's), starting
them, waiting until they answer or log a line, and stopping them as an operator would."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.backend import apps, seed
from gateway.config import PROJECT_ROOT
from gateway.context import Gateway

__all__ = ["LIMITS_OFF", "SMSC_PASSWORD", "command", "free_port", "gunicorn", "logged",
           "procfile", "seed_payers", "service_env", "start_smsc", "started", "stop",
           "stream_role", "wait_for", "workers_of"]

STOP_SECONDS = 30  # gunicorn's graceful_timeout: what SIGTERM may take before a kill
# Every rate limit off: a load of payments from a few TVs is not an abuse to refuse (nor a
# pumping of SMS: the TV app's budgets go too; the guard on unpaid blocks stays).
LIMITS_OFF = {"LIMIT_PHONE_INTERVAL_SECONDS": "0", "LIMIT_PHONE_CODES_PER_DAY": "0",
              "LIMIT_DEVICE_ORDERS_PER_HOUR": "0", "SMS_BUDGET_APP_HOUR": "0",
              "SMS_BUDGET_APP_DAY": "0"}


def bench_settings(database_url: str, redis_url: str, workdir: Path, prefix: str,
                   sms_provider: str = "smpp") -> dict[str, str]:
    """The settings a benchmark runs the service with: its own schema's database, its own
    Redis key prefix, a fixed secret and every rate limit off."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"{prefix}{os.getpid()}:", "VAR_DIR": str(workdir),
            "SECRET_KEY": "bench-secret-key-0123456789", "SMS_PROVIDER": sms_provider,
            **LIMITS_OFF}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(gw: Gateway, database_url: str, **env: str) -> dict[str, str]:
    """The environment of a service process on the stores and secrets of ``gw``, with a free
    PORT; ``env`` adds to it or overrides it."""
    gw.redis.ping()  # this process opens the embedded Redis first and keeps it up
    environ = {k: v for k, v in os.environ.items()
               if k not in {"TEST_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT"}}
    settings = gw.settings
    environ.update(DATABASE_URL=database_url, VAR_DIR=str(settings.VAR_DIR),
                   REDIS_PREFIX=settings.REDIS_PREFIX, SECRET_KEY=settings.SECRET_KEY,
                   PUBLIC_BASE_URL=settings.PUBLIC_BASE_URL, SMS_PROVIDER="log",
                   PORT=str(free_port()), PYTHONUNBUFFERED="1")
    if settings.INBOUND_SMS_SECRET:
        environ["INBOUND_SMS_SECRET"] = settings.INBOUND_SMS_SECRET
    if settings.REDIS_URL:
        environ["REDIS_URL"] = settings.REDIS_URL
    return {**environ, **env}


def procfile(role: str) -> list[str]:
    """The Procfile's command for ``role`` (release, web, worker, smpp), as words."""
    line = next(line for line in (PROJECT_ROOT / "Procfile").read_text().splitlines()
                if line.startswith(f"{role}:"))
    return shlex.split(line.split(":", 1)[1])


def command(role: str) -> list[str]:
    """The command of ``role`` (a Procfile role, or "app.py") run by this Python."""
    words = ["python", "app.py"] if role == "app.py" else procfile(role)
    return [sys.executable, *words[1:]] if words[0] == "python" else [sys.executable, "-m", *words]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as a process manager stops a service; a kill only if it has not exited in time
    (and then the wait's TimeoutExpired fails the test)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def started(argv: list[str], env: dict[str, str], log: Path | None = None,
            stdout: bool = False) -> Iterator[subprocess.Popen]:
    """Run ``argv`` in the project folder, its stderr (and its stdout with ``stdout``) written
    to ``log`` (else to a temporary file); after the block stop it and check that it exited
    with 0, showing the end of what it wrote if not."""
    with open(log, "w+") if log else tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stderr=out,
                                   stdout=out if stdout else subprocess.DEVNULL)
        try:
            yield process
        finally:
            stop(process)
        out.seek(0)
        assert process.returncode == 0, f"exit {process.returncode}:\n{out.read()[-4000:]}"


@contextmanager
def gunicorn(env: dict[str, str], workers: int | None = 2, log: Path | None = None,
             **extra: str) -> Iterator[str]:
    """The Procfile's web line on ``env``'s PORT, bound to 127.0.0.1 with ``workers`` workers
    (None: bind and workers as production has them, from gunicorn.conf.py), ``extra`` added to
    its environment; yields its base URL once it answers, stops it after the block and checks
    that it exited with 0 (stderr in ``log``)."""
    port = env["PORT"]
    pinned = [] if workers is None else ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    with started([*command("web"), *pinned], {**env, **extra}, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz", process, timeout=60)  # workers take seconds to import
        yield base


@contextmanager
def stream_role(env: dict[str, str], log: Path | None = None,
                **extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The Procfile's stream line (gunicorn's gevent workers) on a free port of 127.0.0.1,
    ``extra`` added to its environment; yields its base URL and its master process once it
    answers, stops it after the block and checks that it exited with 0 (stderr in ``log``)."""
    port = free_port()
    with started([*command("stream"), "--bind", f"127.0.0.1:{port}"], {**env, **extra},
                 log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz", process, timeout=60)
        yield base, process


def workers_of(master: int) -> list[int]:
    """The process ids of a gunicorn master's workers (Linux)."""
    return [int(pid) for pid in
            Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until ``url`` answers with a success; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited early ({process.returncode})"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:  # refused, reset, an error status, or timed out while still booting
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def logged(log: Path, process: subprocess.Popen, pattern: str,
           timeout: float = 30) -> re.Match[str]:
    """Wait until ``pattern`` is found in ``log``; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if found := re.search(pattern, log.read_text()):
            return found
        assert process.poll() is None, f"exited ({process.returncode}):\n{log.read_text()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} within {timeout} s:\n{log.read_text()}")
        time.sleep(0.1)


SMSC_PASSWORD = "secret"  # python -m smpp.simulator's default


def start_smsc(reply_delay: float, redeliver_after: float) -> tuple[subprocess.Popen, int, int]:
    """The built-in SMSC in its own process, its phones replying with their codes
    ``reply_delay`` seconds after a code SMS lands; returns it, its SMPP port and its phones'
    HTTP port. The caller stops it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "smpp.simulator", "--port", "0", "--http-port", "0",
         "--auto-reply-codes", str(reply_delay), "--redeliver-after", str(redeliver_after)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    process.stdout.close()  # it prints that one line only
    found = re.search(r"SMSC on 127\.0\.0\.1:(\d+), phones on http://127\.0\.0\.1:(\d+)/", line)
    if not found:
        process.kill()
        process.wait()
        raise RuntimeError(f"the SMSC did not start: {line!r}")
    return process, int(found.group(1)), int(found.group(2))


def seed_payers(gw: Gateway, workdir: Path, package: dict, phones: list[str], wallets: int,
                app_name: str) -> str:
    """Load ``package`` and ``wallets`` wallets that share ``phones`` between them, each with
    money for twice its share of payments; make the TV app ``app_name`` and return its key."""
    share = -(-len(phones) // wallets)
    data = {"packages": [package], "wallets": [
        {"id": f"{app_name}-{k}", "owner": f"Payer {k}", "password": "135790",
         "balance": package["price"] * share * 2, "phones": phones[k::wallets]}
        for k in range(wallets)]}
    path = workdir / "seed.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with gw.db.transaction() as session:
        seed.load_seed(session, path, gw.settings.PHONE_COUNTRIES, gw.clock())
        return apps.create(session, app_name, apps.TV, gw.clock())
