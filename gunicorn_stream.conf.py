"""gunicorn settings of the stream role (the Procfile's `stream` line): those of the web role
(gunicorn.conf.py) with gevent workers, in which an open event stream costs a greenlet and a
socket, not a thread. A proxy sends /api/v1/orders/*/events and /api/v1/devices/*/events here
(README, "Running in production"); each worker holds up to SSE_MAX_STREAMS of them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import warnings
from pathlib import Path
from typing import Any

from gunicorn.config import KNOWN_SETTINGS


def _web_settings() -> Any:
    """gunicorn.conf.py, run as a module of its own (its hooks keep reading its globals)."""
    path = Path(__file__).with_name("gunicorn.conf.py")
    spec = importlib.util.spec_from_file_location("gunicorn_web_conf", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


web = _web_settings()
globals().update({setting.name: getattr(web, setting.name) for setting in KNOWN_SETTINGS
                  if hasattr(web, setting.name)})

bind = f"0.0.0.0:{web._whole('STREAM_PORT', 8001, 65535)}"
worker_class = "gevent"
# gunicorn imports ssl itself before its gevent worker patches the standard library; gevent then
# still patches it, and nothing made an SSL context before (PostgreSQL's TLS is libpq's own).
warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already been imported")
# One process holds thousands of waiting streams on one core; more spread a busy host's load.
workers = web._whole("STREAM_WORKERS", 1, 64)
# Only above SSE_MAX_STREAMS, the app's own bound, so that the app answers 503 beyond it.
worker_connections = 200_000
# A worker replaced after some requests would cut every stream it holds at once.
max_requests = 0
max_requests_jitter = 0

# A metrics folder given to every role: this role keeps its files in a folder of its own in
# it, so that neither role's start empties the other's, nor one's /metrics adds up the other's.
if not web._OWN_METRICS_DIR:
    web.METRICS_DIR = web.METRICS_DIR / "stream"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(web.METRICS_DIR)


def post_worker_init(worker: Any) -> None:
    """On SIGTERM, end the worker's streams at once instead of after graceful_timeout: their
    clients reconnect, to another worker, with Last-Event-ID and miss nothing. First, the web
    role's check of the settings."""
    import gevent

    web.post_worker_init(worker)

    from gateway.backend import stream_hub

    stop = worker.handle_exit

    def handle_exit(signum: int, frame: Any) -> None:
        stop(signum, frame)
        gevent.spawn(stream_hub.end_streams)  # out of the signal handler

    signal.signal(signal.SIGTERM, handle_exit)
