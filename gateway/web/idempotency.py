"""``Idempotency-Key`` on the TV API's creating calls: the first answer to the same request,
replayed for 24 hours (``gateway.store.redis_store.IdempotencyCache``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from flask import Response, request

from gateway.context import services
from gateway.domain.errors import GatewayError, InvalidInput
from gateway.store.redis_store import StoredResponse
from gateway.web import api_keys, json_bodies
from gateway.web.problems import response_for

__all__ = ["idempotent"]

_REPLAYED_HEADERS = ("Location",)


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Honour ``Idempotency-Key``: replay the first answer to the same request for 24 h."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        given = request.headers.get("Idempotency-Key")
        if given is None:
            return view(*args, **kwargs)
        if not 1 <= len(given) <= 255 or not given.isascii() or not given.isprintable():
            raise InvalidInput("Idempotency-Key must be 1-255 printable ASCII characters",
                               code="invalid_idempotency_key")
        key = f"{api_keys.caller().app_id}:{given}"  # each app's keys are its own
        raw = request.get_data(cache=True)
        try:
            canonical: str | bytes = json.dumps(json_bodies.loads(raw), sort_keys=True)
        except InvalidInput:
            canonical = raw
        cache = services().idempotency
        answer = cache.once(key, cache.fingerprint(request.method, request.path, canonical),
                            lambda: _answer(view, args, kwargs), _kept)
        if isinstance(answer, StoredResponse):
            replay = _json_response(answer.body, answer.status)
            replay.headers.update(answer.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        return answer

    return wrapper


def _answer(view: Callable[..., Response], args: Any, kwargs: Any) -> Response:
    try:
        return view(*args, **kwargs)
    except GatewayError as error:
        return response_for(error)


def _kept(response: Response) -> tuple[int, Any, dict[str, str]] | None:
    """What an ``Idempotency-Key`` keeps of an answer: not a 429 or 5xx, which is no answer
    (the same request may be tried again)."""
    if response.status_code == 429 or response.status_code >= 500:
        return None
    kept = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
    return response.status_code, response.get_json(), kept


def _json_response(body: Any, status: int) -> Response:
    mimetype = "application/problem+json" if status >= 400 else "application/json"
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=mimetype)
