"""gunicorn settings of the web role: `gunicorn app:app` reads this file from the working
directory. Each value can be changed from the environment (README, "Running in production").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


def _whole(name: str, default: int, high: int) -> int:
    """The environment variable ``name`` as a whole number from 1 to ``high``."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from 1 to {high}, not {raw!r}")
    return int(raw)


def _cores() -> int:
    """The cores this process may run on (a container's cpuset, not the whole host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


bind = f"0.0.0.0:{_whole('PORT', 8000, 65535)}"

# Threads, not processes, carry the concurrency: a request mostly waits on PostgreSQL or Redis.
# (Event streams wait for minutes: the stream role serves them, gunicorn_stream.conf.py; a web
# worker holds at most SSE_WEB_MAX_STREAMS, each on a thread, README "Live events".)
# Processes only spread the Python work over the cores: two a core, so at least two (a worker
# being replaced never leaves the service without one), and at most 4, because every worker
# has a SQL pool of its own with up to one busy connection a thread: 4 x 16 = 64 stays under
# PostgreSQL's default max_connections (100), with room for the worker, the SMPP worker and a
# migration. Beyond that, run more instances against a database sized for them, and set
# WEB_CONCURRENCY and GUNICORN_THREADS so that all of them fit its max_connections.
workers = _whole("WEB_CONCURRENCY", min(2 * _cores(), 4), 64)
threads = _whole("GUNICORN_THREADS", 16, 1000)


class QueueTimedWorker(ThreadWorker):
    """gunicorn's gthread worker, telling the app how long each request waited for a thread:
    ``environ["gateway.queue_wait"]``, in seconds, on which gateway.admission sheds new orders.

    A connection is stamped whenever it is queued for the thread pool (accepted, or readable
    again on a kept-alive connection); its wait ends when a thread takes it, before the thread
    waits for the client's first bytes, so a slow client is not counted as a wait.
    """

    def init_process(self) -> None:
        self._taken = threading.local()  # the wait of the connection each thread took
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app, taken = self.wsgi, self._taken

        def with_queue_wait(environ: dict[str, Any], start_response: Any) -> Any:
            # the request the thread took the connection for (HTTP/2 serves more on the same
            # thread, which waited for no thread: no figure)
            environ["gateway.queue_wait"], taken.wait = getattr(taken, "wait", None), None
            return app(environ, start_response)

        self.wsgi = with_queue_wait

    def enqueue_req(self, conn: Any) -> None:
        conn.queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        self._taken.wait = time.monotonic() - conn.queued_at
        return super().handle(conn)


worker_class = QueueTimedWorker

# With gthread, `timeout` is how long a worker's main loop may go silent before the master kills
# it, not a limit on a request: a five-minute event stream is fine.
timeout = 30
# SIGTERM: stop accepting, give requests 30 s to finish, then stop. Event streams still open are
# cut; their clients reconnect with Last-Event-ID and miss nothing.
graceful_timeout = 30
keepalive = 5  # seconds an idle connection stays open; a proxy reusing them must drop them sooner
# A worker is replaced after about 100,000 requests, the jitter keeping workers from all
# restarting at once: a slow leak cannot grow for ever. Not sooner: a new worker costs about a
# second of CPU (it imports the app) and starts with cold caches; at 2,000 a saturated web tier
# replaced a worker every 15-25 s, which showed in the tail of its answers (bench/RESULTS.md).
max_requests = 100_000
max_requests_jitter = 10_000
# X-Forwarded-* are trusted only from these addresses (the proxy in front), default localhost.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The heartbeat file in memory: on a container's disk-backed /tmp it can block a worker.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No control socket: it would sit at one path in $HOME, shared by every gunicorn of the user.
control_socket_disable = True

# Prometheus: every worker keeps its metrics in files of this folder and /metrics adds them up
# (prometheus_client's multi-process mode). It must be set before a worker first imports
# prometheus_client, so here in the master, before anything forks or imports the app.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tvpay-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

# Logs: gunicorn's own lines go to the root logger, written as the app writes its lines
# (gateway.logs: JSON unless LOG_FORMAT=text). gunicorn's access log stays off: its lines hold
# the raw path, and a payment link's path is its secret token; the app writes an access line
# of its own with the route's rule instead (gateway.access).
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {"stderr": {"()": "gateway.logs.stderr_handler"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
}


def post_worker_init(worker: Any) -> None:
    """Refuse the local run's defaults (gateway.config.refuse_local_defaults): the worker stops
    as it boots, naming the settings, and gunicorn stops with it instead of starting it again."""
    from gunicorn.arbiter import Arbiter

    from gateway.config import ConfigError, load_settings, refuse_local_defaults

    try:
        refuse_local_defaults(load_settings())
    except ConfigError as exc:
        worker.log.error("TV Pay Gateway will not start: %s", exc)
        sys.exit(Arbiter.WORKER_BOOT_ERROR)


def on_starting(server: object) -> None:
    """Start with an empty metrics folder: files of a previous run's workers would count."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for path in METRICS_DIR.iterdir():
        if path.is_file():
            path.unlink()


def child_exit(server: object, worker: object) -> None:
    """Drop the live gauges of a worker that exited."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(METRICS_DIR))  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """Remove the metrics folder this file made (one given in the environment stays)."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
