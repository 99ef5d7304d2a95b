"""The security headers of the service's HTML pages, built in one place.

Every page gets a Content-Security-Policy of its own (what it may load), never a ``<base>``,
``nosniff``, a referrer policy and a cache policy; only our own pages may frame a page that
allows framing at all (the phone of the demo page shows the payment pages).
"""

from __future__ import annotations

from flask import Response

__all__ = ["apply", "policy"]


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
