"""Domain errors: what a use case can refuse, independent of HTTP.

    GatewayError                 code: a stable machine-readable string
     ├── InvalidInput            bad request data (phone, device id, body shape, seed file)
     ├── NotFound                an order, package or token that does not exist
     ├── Conflict                a valid request that the current state forbids
     ├── RateLimited             a limit is exhausted; carries retry_after seconds
     └── Overloaded              too busy to take a new order now; carries its reason and
                                 retry_after (seconds) and retry_after_ms

The web layer maps each class to an HTTP status in one place (``gateway.web.problems``).
"""

from __future__ import annotations

import math

__all__ = ["Conflict", "GatewayError", "InvalidInput", "NotFound", "Overloaded", "RateLimited"]


class GatewayError(Exception):
    code = "error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidInput(GatewayError):
    code = "invalid_request"


class NotFound(GatewayError):
    code = "not_found"


class Conflict(GatewayError):
    code = "conflict"


class RateLimited(GatewayError):
    code = "rate_limited"

    def __init__(self, detail: str, *, code: str, retry_after: int) -> None:
        super().__init__(detail, code=code, retry_after=retry_after)
        self.retry_after = retry_after


class Overloaded(GatewayError):
    """Shed: nothing was written. ``retry_after`` is ``retry_after_ms`` in whole seconds, at
    least 1 (what an HTTP ``Retry-After`` can say)."""

    code = "overloaded"

    def __init__(self, detail: str, *, reason: str, retry_after_ms: int) -> None:
        retry_after = max(1, math.ceil(retry_after_ms / 1000))
        super().__init__(detail, reason=reason, retry_after=retry_after,
                         retry_after_ms=retry_after_ms)
        self.retry_after = retry_after
