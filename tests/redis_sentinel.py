"""A Redis primary, a replica and three Sentinels on loopback, as processes of the test's own
(``redis-server``, and ``redis-server --sentinel``), for the failover tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.processes import free_port

SERVICE = "tvpay-test"


@dataclass
class SentinelGroup:
    primary: subprocess.Popen[bytes]
    primary_port: int
    replica_port: int
    sentinels: list[tuple[str, int]]

    @property
    def setting(self) -> str:
        """REDIS_SENTINELS for these."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def kill_primary(self) -> None:
        self.primary.send_signal(signal.SIGKILL)
        self.primary.wait(timeout=10)

    def primary_now(self) -> tuple[str, int] | None:
        """Where the sentinels say the primary is now."""
        with contextlib.suppress(redis.RedisError), \
                redis.Redis(*self.sentinels[0], socket_timeout=1) as sentinel:
            host, port = sentinel.execute_command("SENTINEL", "get-master-addr-by-name",
                                                  SERVICE)
            return host.decode(), int(port)
        return None


def _server(folder: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError), \
                redis.Redis(port=port, socket_timeout=0.5) as client:
            if client.ping():
                return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"redis-server on port {port} did not start")


@contextlib.contextmanager
def sentinel_group(folder: Path) -> Iterator[SentinelGroup]:
    """Start the five servers; stop those still running after the block."""
    primary_port, replica_port = free_port(), free_port()
    processes = [_server(folder, primary_port)]
    processes.append(_server(folder, replica_port, "--replicaof", "127.0.0.1",
                             str(primary_port)))
    sentinels = []
    for n in range(3):
        port = free_port()
        config = folder / f"sentinel-{n}.conf"  # a sentinel rewrites its own file
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")
        processes.append(subprocess.Popen(["redis-server", str(config), "--sentinel"],
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        sentinels.append(("127.0.0.1", port))
    group = SentinelGroup(processes[0], primary_port, replica_port, sentinels)
    try:
        deadline = time.monotonic() + 20
        while group.primary_now() != ("127.0.0.1", primary_port):
            assert time.monotonic() < deadline, "the sentinels did not find the primary"
            time.sleep(0.1)
        yield group
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
