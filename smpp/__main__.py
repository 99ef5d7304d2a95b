"""``python -m smpp [--connections ID[,ID]]``: the SMPP workers, a bind each.

It keeps every connection of ``SMPP_CONFIG`` (or only those named), each with its ``binds``
transceiver binds, at most ``max_tps / binds`` each; the binds are slots shared through Redis
by every such process, so that a connection has ``binds`` binds however many run (the others
stand by, and take over the slots of one that stops or dies). Without ``SMPP_CONFIG``: the one
connection of ``SMPP_*`` (``default``), bound to SMPP_HOST or to a built-in SMSC, once per
process, as before. Any number of these processes may run against one database and one Redis:
the SQL claim of each message keeps it from being sent twice.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading

from gateway import metrics
from gateway.config import ConfigError, load_settings, refuse_local_defaults
from gateway.context import Gateway
from gateway.logs import configure_logging
from gateway.messaging.connections import Connection, load_connections
from gateway.messaging.health import BindSlots
from gateway.wiring import connect
from smpp.simulator import SmscHttp, smsc_address
from smpp.window import TokenBucket
from smpp.worker import SmppWorker

log = logging.getLogger("smpp")


def chosen(connections: tuple[Connection, ...], names: str | None) -> tuple[Connection, ...]:
    """The connections ``--connections`` names (all without it)."""
    if names is None:
        return connections
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    known = {c.id for c in connections}
    if unknown := [name for name in wanted if name not in known]:
        raise ConfigError(f"--connections: no connection {', '.join(map(repr, unknown))}; "
                          f"there are {', '.join(sorted(known))}")
    if not wanted:
        raise ConfigError("--connections: name at least one connection")
    return tuple(c for c in connections if c.id in wanted)


def workers_for(gw: Gateway, connections: tuple[Connection, ...], elsewhere: bool,
                shared: bool) -> list[SmppWorker]:
    """A worker for each bind of each connection. ``shared`` (SMPP_CONFIG): a connection's
    binds are slots for every SMPP process to share (the others' workers stand by), each bind
    sending at most ``max_tps / binds``; else each worker binds, and a connection's binds in
    this process share its ``max_tps``."""
    slots = BindSlots(gw.redis, gw.settings.REDIS_PREFIX) if shared else None
    workers = []
    for connection in connections:
        host, port = connection.host, connection.port
        if host is None:  # ``default`` without SMPP_HOST
            host, port, smsc = smsc_address(gw.settings)
            if smsc is not None:
                phones = SmscHttp(smsc).start()
                log.warning("no SMPP_HOST: using a built-in SMSC; its phones are at "
                            "http://127.0.0.1:%d/", phones.port)
        bucket = TokenBucket(connection.max_tps)
        for bind in range(connection.binds):
            workers.append(SmppWorker(
                gw, host=host, port=port, connection=connection,
                bucket=TokenBucket(connection.max_tps / connection.binds) if shared else bucket,
                consumer=f"{socket.gethostname()}-{os.getpid()}-{connection.id}-{bind}",
                elsewhere=elsewhere, slots=slots))
    return workers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m smpp", description=__doc__.split("\n")[0])
    parser.add_argument("--connections", metavar="ID[,ID]",
                        help="serve only these connections of SMPP_CONFIG (default: all)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = load_settings()
        every = load_connections(settings)
        served = chosen(every, args.connections)
        refuse_local_defaults(settings)
    except ConfigError as exc:
        raise SystemExit(f"TV Pay Gateway will not start: {exc}") from None
    gw = connect(settings)
    metrics.serve(gw.settings.METRICS_PORT)
    workers = workers_for(gw, served, elsewhere=len(every) > 1,
                          shared=settings.SMPP_CONFIG is not None)

    def stop(*_: object) -> None:
        for worker in workers:
            worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    failed: list[str] = []

    def serve(worker: SmppWorker) -> None:
        """Run one worker; if it fails (Redis away at the start, say), stop them all, so the
        process exits and its manager starts it again, rather than serve a connection less."""
        try:
            worker.run()
        except Exception:
            log.exception("SMPP worker %s failed: stopping every worker", worker.consumer)
            failed.append(worker.consumer)
            stop()

    threads = [threading.Thread(target=serve, args=(worker,), name=f"smpp-{worker.consumer}")
               for worker in workers[1:]]
    for thread in threads:
        thread.start()
    serve(workers[0])  # in the main thread, which takes the signals
    for thread in threads:
        thread.join()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
