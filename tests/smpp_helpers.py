"""Running the SMPP path in tests: the built-in SMSC, the relay and the SMPP worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gateway.background import Worker
from gateway.context import Gateway
from smpp.worker import SmppWorker


def wait_until(condition: Callable[[], object], timeout: float = 15, what: str = "") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


@contextmanager
def running(gw: Gateway, port: int, *consumers: str,
            wait_for_bind: bool = True) -> Iterator[list[SmppWorker]]:
    """The background worker (relay, expiry) and an SMPP worker bound to 127.0.0.1:port for
    each consumer name (one, by default); yields the SMPP workers."""
    relay = Worker(gw)
    smpp = [SmppWorker(gw, host="127.0.0.1", port=port, consumer=name)
            for name in consumers or ("test-worker",)]
    threads = [threading.Thread(target=relay.run, daemon=True)]
    threads += [threading.Thread(target=worker.run, daemon=True) for worker in smpp]
    for thread in threads:
        thread.start()
    try:
        for worker in smpp:
            assert not wait_for_bind or worker.bound.wait(10), "an SMPP worker did not bind"
        yield smpp
    finally:
        relay.stopping.set()
        for worker in smpp:
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread.name} did not stop"
