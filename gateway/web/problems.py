"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``; never a traceback."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from gateway import store
from gateway.domain.errors import (
    Conflict,
    GatewayError,
    InvalidInput,
    NotFound,
    Overloaded,
    RateLimited,
)
from gateway.web import request_log, wap

__all__ = ["api_problem", "problem", "register", "require", "response_for",
           "store_unavailable_answer"]

log = logging.getLogger(__name__)

_STATUS: dict[type[GatewayError], int] = {
    InvalidInput: 400, NotFound: 404, Conflict: 409, RateLimited: 429, Overloaded: 503,
}
_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
}


def problem(status: int, code: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "code": code, "detail": detail, **extra}
    return Response(json.dumps(body, ensure_ascii=False), status=status,
                    mimetype="application/problem+json")


def _on_page() -> bool:
    """A payment page asked: answer with a page, not JSON."""
    return request.path.startswith("/w/")


def response_for(error: GatewayError) -> Response:
    if _on_page():
        return wap.error_page(_status(error), error.code)
    return api_problem(error)


def api_problem(error: GatewayError) -> Response:
    """The ``application/problem+json`` answer to ``error``; needs no request context."""
    response = problem(_status(error), error.code, error.detail, **error.extra)
    if isinstance(error, RateLimited | Overloaded):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def store_unavailable_answer(method: str, rule: str | None, error: Exception, *,
                             page: bool = False) -> Response:
    """The answer, logged, to a request of ``method`` on route ``rule`` that found a data store
    away (``error``): a page for a payment page, else a problem, which needs no request
    context."""
    log.error("store unavailable on %s %s: %s", method, rule or "-", type(error).__name__)
    response = wap.error_page(503, "error") if page else \
        problem(503, "service_unavailable", "a data store is unavailable; retry")
    response.headers["Retry-After"] = "5"
    return response


def _status(error: GatewayError) -> int:
    return next(s for cls, s in _STATUS.items() if isinstance(error, cls))


def require(data: dict[str, Any], *names: str) -> None:
    """:raise InvalidInput: ``missing_field`` naming the first absent field."""
    for name in names:
        if data.get(name) is None:
            raise InvalidInput(f"{name} is required", code="missing_field", field=name)


def register(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def domain_error(error: GatewayError) -> Response:
        return response_for(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        detail = error.description or HTTPStatus(status).phrase
        if status == 413:
            detail = "the request body is too large"
        if _on_page():
            response = wap.error_page(status, _HTTP_CODES.get(status, "http_error"))
        else:
            response = problem(status, _HTTP_CODES.get(status, "http_error"), detail)
        # Werkzeug's own headers, such as the Allow a 405 must carry (RFC 9110, 15.5.6).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def store_unavailable(error: Exception) -> Response:
        return store_unavailable_answer(request.method, request_log.route(), error,
                                        page=_on_page())

    unavailable_kinds: tuple[type[Exception], ...] = (
        redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *store.UNAVAILABLE)
    for unavailable in unavailable_kinds:
        app.register_error_handler(unavailable, store_unavailable)

    @app.errorhandler(store.ValueRefused)
    def data_error(error: Exception) -> Response:
        # A value the database cannot store that validation let through: the caller's input.
        log.warning("database refused a value on %s %s", request.method, request_log.route() or "-")
        if _on_page():
            return wap.error_page(400, "error")
        return problem(400, "invalid_request", "the request holds a value that is not allowed")

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request_log.route() or "-")
        if _on_page():
            return wap.error_page(500, "error")
        return problem(500, "internal_error", "an unexpected error occurred")
