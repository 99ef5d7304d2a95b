"""A loopback TCP proxy that breaks the network on demand: the link faults of the fault run.

``Proxy(("127.0.0.1", 5432)).start()`` listens on ``127.0.0.1:<port>`` and forwards every
connection to the target, one thread per direction. ``cut()`` drops every connection at once,
as a failed link does; ``down()`` drops them and refuses new ones until ``up()``; ``delay``
seconds are waited before passing on each chunk read, in both directions, as a slow network
(or a database answering late) would.
"""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["Proxy"]


class _Link:
    """A client's connection and the proxy's own connection to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self._pumps = 2
        self._lock = threading.Lock()

    def shut(self) -> None:
        """End both connections; wakes the pumps blocked on them."""
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected any more
                pass

    def pump_done(self) -> bool:
        """One direction has ended; return True (and close) when both have."""
        self.shut()
        with self._lock:
            self._pumps -= 1
            if self._pumps:
                return False
        for sock in self.sockets:
            sock.close()
        return True


class Proxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.delay = 0.0  # seconds before each chunk is passed on
        self.connections = 0  # accepted and forwarded
        self.cut_connections = 0  # dropped by cut() or down()
        self.delayed_chunks = 0
        self._refusing = False
        self._stopping = threading.Event()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # so that close() is noticed
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def start(self) -> Proxy:
        self._acceptor.start()
        return self

    def cut(self) -> int:
        """Drop every open connection; return how many were dropped."""
        with self._lock:
            links = list(self._links)
            self.cut_connections += len(links)
        for link in links:
            link.shut()
        return len(links)

    def down(self) -> int:
        """Drop every connection and refuse new ones (accepted, then closed) until ``up``."""
        self._refusing = True
        return self.cut()

    def up(self) -> None:
        self._refusing = False

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        self.cut()
        deadline = time.monotonic() + 5
        while self._links and time.monotonic() < deadline:  # each pump closes its sockets
            time.sleep(0.01)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self._refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:  # the target is away: so is the proxy, for this client
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self._lock:
                self._links.add(link)
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(link, source, sink),
                                 name="proxy-pump", daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                if self.delay:
                    self.delayed_chunks += 1
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:  # reset, or shut by cut()
            pass
        finally:
            if link.pump_done():
                with self._lock:
                    self._links.discard(link)
