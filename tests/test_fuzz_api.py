"""Fuzzing of the HTTP API with schemathesis, from the service's own OpenAPI document.

Every operation of ``GET /openapi.json`` is called in-process, through the ``client`` fixture,
with requests generated from its schema (valid ones, and then bodies, queries and headers the
schema refuses). Every answer must be no 5xx, a documented status code with a documented content
type, and match its documented schema. Part of the generated requests name the seeded phones,
packages, device and orders, so the fuzzing also reaches the paths where money moves.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway import create_app
from gateway.context import Gateway
from gateway.web import api_docs
from tests.conftest import CARD_ONLY, INBOUND_SECRET, POOR, RICH, UNBOUND, order

ADMIN_KEY = "admin-key-0123456789abcdef"
DEVICE = "tv-42"
PHONES = [RICH, CARD_ONLY, POOR, UNBOUND, "13800138000", "13600136000"]
PACKAGES = ["vip_month", "vip_year"]
CHECKS = [
    schemathesis.checks.not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]

pytestmark = pytest.mark.settings(
    ADMIN_API_KEY=ADMIN_KEY,
    SSE_MAX_SECONDS=1,  # an event stream ends by itself, so each call returns
    LIMIT_PHONE_INTERVAL_SECONDS=0,  # the fuzzer orders often; a 429 is documented, but
    LIMIT_PHONE_CODES_PER_DAY=0,  # it would stop most requests before the code they test
    LIMIT_DEVICE_ORDERS_PER_HOUR=0,
    SMS_BUDGET_APP_HOUR=0, SMS_BUDGET_APP_DAY=0, SMS_GUARD_MIN_SENT=0,  # the SMS pumping guards
)


def _maybe(values: list[Any], generated: Any) -> st.SearchStrategy[Any]:
    """The generated value, or one the seeded data knows (half the time each)."""
    return st.one_of(st.just(generated), st.sampled_from(values))


def _known_data(schema: BaseSchema, order_ids: list[str]) -> None:
    """Steer part of the generated requests to the seeded data."""
    known_paths = {"order_id": order_ids, "device_id": [DEVICE], "package_id": PACKAGES}

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters:
            return st.just(path_parameters)
        strategies = {name: _maybe(known_paths[name], value) if name in known_paths
                      else st.just(value) for name, value in path_parameters.items()}
        return st.fixed_dictionaries(strategies)

    @schema.hook
    def map_headers(context: Any, headers: dict[str, Any] | None) -> dict[str, Any] | None:
        """Leave out a generated key: the client calls as the test's TV app, and the admin and
        inbound secrets are added per call (``_credentials``)."""
        if headers is None:
            return None
        return {name: value for name, value in headers.items()
                if name.lower() not in {"authorization", "x-inbound-secret"}}

    known_fields = {"device_id": [DEVICE], "package_id": PACKAGES, "phone": PHONES,
                    "from": PHONES}

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        if not isinstance(body, dict):
            return st.just(body)
        strategies = {name: _maybe(known_fields[name], value) if name in known_fields
                      else st.just(value) for name, value in body.items()}
        return st.fixed_dictionaries(strategies)


def _operations() -> list[str]:
    """``GET /api/v1/packages`` ..., every operation of the document, for the test ids."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"DATABASE_URL": f"sqlite:///{folder}/unused.db", "VAR_DIR": folder,
                          "SECRET_KEY": "collecting-the-operations"})
        paths = api_docs.generated(app)["paths"]
    return [f"{method.upper()} {path}" for path, item in paths.items() for method in item
            if method in {"get", "post", "put", "patch", "delete"}]


def _credentials(path: str) -> dict[str, str]:
    """The secrets the fuzzer cannot know: the admin key and the inbound SMS secret.

    The Twilio webhooks get none: their signature is over the whole request, so the fuzzer
    reaches only their refusal (403), which must still be as documented.
    """
    if path.startswith("/api/v1/admin/"):
        return {"Authorization": f"Bearer {ADMIN_KEY}"}
    if path == "/sms/inbound":
        return {"X-Inbound-Secret": INBOUND_SECRET}
    return {}


@pytest.mark.parametrize("label", _operations())
def test_every_operation_answers_as_documented(label: str, app: Flask, seeded: Gateway,
                                               client: FlaskClient) -> None:
    placed = [order(client, phone, device=DEVICE) for phone in (RICH, UNBOUND)]
    assert all(response.status_code == 201 for response in placed), placed
    ids = [response.get_json()["id"] for response in placed]
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    _known_data(schema, ids)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE, hooks=schema.hooks),
                      operation.as_strategy(GenerationMode.NEGATIVE, hooks=schema.hooks))

    @given(case=cases)
    @settings(max_examples=10 if label.endswith("/events") else 30,  # a live stream lasts 1 s
              deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def fuzz(case: Any) -> None:
        headers = _credentials(case.path)
        response = case.call(session=client, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    fuzz()
