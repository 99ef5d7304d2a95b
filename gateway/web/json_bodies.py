"""Request bodies as strict JSON (RFC 8259): what the API takes, and how it refuses the rest.

Python's ``json`` takes ``NaN`` and ``Infinity``, which are not JSON, and keeps the last of a
key given twice, where another parser keeps the first: a proxy, a log or a signature check could
read one value and the service act on the other. Both are refused as ``invalid_json``. A body
sent as anything but JSON is refused with 415 before it is read as JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Blueprint, Request, request
from werkzeug.exceptions import UnsupportedMediaType

from gateway.domain.errors import InvalidInput

__all__ = ["StrictJsonRequest", "loads", "object_body", "refuse_bodies_not_json"]


class _NotJson(Exception):
    """A body Python's ``json`` reads but JSON does not allow."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e400: a number JSON can write and no float can hold
        raise _NotJson(f"{text} is out of range")
    return number


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise _NotJson(f"the key {repeated!r} is given twice")
    return found


def loads(raw: bytes | str) -> Any:
    """``raw`` as strict JSON.

    :raise InvalidInput: ``invalid_json``, saying what is wrong.
    """
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite,
                          object_pairs_hook=_no_repeated_keys)
    except _NotJson as error:
        raise InvalidInput(f"the body is not valid JSON: {error}", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..."
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None


def object_body() -> dict[str, Any]:
    """The request body as a JSON object.

    :raise InvalidInput: ``invalid_json`` when it is not one.
    """
    data = loads(request.get_data(cache=True))
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    return data


class StrictJsonRequest(Request):
    """``get_json`` reads the body as strict JSON (whatever ``Content-Type`` says: the API's
    views are guarded by ``refuse_bodies_not_json``), once a request; ``silent`` gives None for
    a body that is not JSON, which the declared models then refuse."""

    def get_json(self, force: bool = False, silent: bool = False,
                 cache: bool = True) -> Any:
        if "_strict_json" not in self.__dict__:
            try:
                self.__dict__["_strict_json"] = (loads(self.get_data(cache=True)), None)
            except InvalidInput as not_json:
                self.__dict__["_strict_json"] = (None, not_json.detail)
        data, refused = self.__dict__["_strict_json"]
        if refused is not None and not silent:
            raise InvalidInput(refused, code="invalid_json")
        # A body is an object: anything else is no body to read (flask-openapi3 would read a
        # JSON string as JSON text once more, Flask-WTF would fail on a list); the models and
        # forms then refuse it.
        return data if isinstance(data, dict) else None


def _only_json() -> None:
    if request.method in ("POST", "PUT", "PATCH") and not request.is_json \
            and request.get_data(cache=True):
        raise UnsupportedMediaType("a request body must be JSON, sent as application/json")


def refuse_bodies_not_json(blueprint: Blueprint) -> None:
    """Answer 415 ``unsupported_media_type`` to a body on ``blueprint`` that is not sent as
    ``application/json`` (or ``application/*+json``), after the blueprint's own checks (a
    caller without a key hears 401 first)."""
    blueprint.before_request(_only_json)
