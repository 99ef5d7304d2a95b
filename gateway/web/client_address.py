"""The viewer's or operator's address behind the operator's proxies (``TRUSTED_PROXIES``).

Every per-client limit and log line reads ``request.remote_addr``; behind a load balancer that
is the balancer's address, so everyone would share one bucket. With ``TRUSTED_PROXIES`` the
address is taken from ``X-Forwarded-For``, trusting only the hops the proxies added: a client
can write anything at the left of that header, never at its right.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

__all__ = ["install"]

Networks = tuple[IPv4Network | IPv6Network, ...]


def install(app: Flask, trusted: int | Networks) -> None:
    """Put the reading of the client's address in front of everything else of ``app``."""
    if isinstance(trusted, int):
        if trusted:
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted)  # type: ignore[method-assign]
    elif trusted:
        app.wsgi_app = _FromTrustedNetworks(app.wsgi_app, trusted)  # type: ignore[method-assign]


class _FromTrustedNetworks:
    """``REMOTE_ADDR`` becomes the last address of ``X-Forwarded-For`` that is not one of the
    proxies, when the request came from one of them (else it is left as it is)."""

    def __init__(self, app: Any, networks: Networks) -> None:
        self.app, self.networks = app, networks

    def _proxy(self, address: str) -> bool:
        try:
            parsed = ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and self._proxy(peer):
            client = peer
            for hop in reversed([part.strip() for part in forwarded.split(",")]):
                if not self._proxy(hop):
                    try:
                        client = str(ip_address(hop))
                    except ValueError:  # not an address: the last proxy's peer is all we know
                        pass
                    break
                client = hop
            environ["werkzeug.proxy_fix.orig"] = {"REMOTE_ADDR": peer}
            environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)
