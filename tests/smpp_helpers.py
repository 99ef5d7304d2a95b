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
    smpp = [SmppWorker(gw, host="127.0.0.1", port=port, consumer=name)
            for name in consumers or ("test-worker",)]
    with running_workers(gw, smpp, wait_for_bind):
        yield smpp


@contextmanager
def running_workers(gw: Gateway, smpp: list[SmppWorker],
                    wait_for_bind: bool = True) -> Iterator[Worker]:
    """The background worker and these SMPP workers, each in a thread; yields the background
    worker once every SMPP worker is bound (with ``wait_for_bind``), stops them all after."""
    relay = Worker(gw)
    threads = [threading.Thread(target=relay.run, daemon=True)]
    threads += [threading.Thread(target=worker.run, daemon=True) for worker in smpp]
    for thread in threads:
        thread.start()
    try:
        for worker in smpp:
            assert not wait_for_bind or worker.bound.wait(10), "an SMPP worker did not bind"
        yield relay
    finally:
        relay.stopping.set()
        for worker in smpp:
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread.name} did not stop"
