"""The security headers of the service's HTML pages, built in one place.

Every page gets a Content-Security-Policy of its own (what it may load), never a ``<base>``,
``nosniff``, a referrer policy and a cache policy; only our own pages may frame a page that
allows framing at all (the phone of the demo page shows the payment pages).
"""

from __future__ import annotations

from flask import Flask, Response

__all__ = ["apply", "policy", "require_https"]

# A year, as browsers' preload lists ask; not includeSubDomains: the operator's other hosts
# are not ours to commit.
_HSTS = "max-age=31536000"


def policy(sources: str, *, framed_by_us: bool = False, referrer: str = "no-referrer",
           cache: str = "no-store") -> dict[str, str]:
    """The headers of a kind of page whose CSP allows ``sources``."""
    ancestors = "'self'" if framed_by_us else "'none'"
    return {
        "Content-Security-Policy": f"{sources}; base-uri 'none'; frame-ancestors {ancestors}",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN" if framed_by_us else "DENY",
        "Referrer-Policy": referrer,
        "Cache-Control": cache,
    }


def apply(response: Response, headers: dict[str, str]) -> Response:
    """Add ``headers`` to ``response``, keeping any a view set itself."""
    for header, value in headers.items():
        response.headers.setdefault(header, value)
    return response


def require_https(app: Flask) -> None:
    """Tell browsers to come back over HTTPS only (HSTS), on every answer of ``app``: for a
    service whose ``PUBLIC_BASE_URL`` is https."""

    @app.after_request
    def strict_transport(response: Response) -> Response:
        response.headers.setdefault("Strict-Transport-Security", _HSTS)
        return response
