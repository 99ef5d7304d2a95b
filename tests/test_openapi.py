"""The OpenAPI document (generated from ``gateway/web/schemas/``, served at ``/openapi.json``)
and the ``/docs`` page made from it: the document names every route of the API and no other, it
is valid OpenAPI 3.1, its error codes are the README's, and what the service really answers --
driven through real flows over the real stores -- matches its schemas."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from markupsafe import escape
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select

from gateway.backend import apps
from gateway.config import PROJECT_ROOT
from gateway.store.models import Order, OrderEvent
from gateway.web import api_docs
from gateway.web.docs_page import follow, problem_codes, resolve
from tests.browser import live_server
from tests.conftest import (
    CARD_ONLY,
    INBOUND_SECRET,
    POOR,
    RICH,
    UNBOUND,
    code_sent_to,
    new_tv_app,
    order,
    reply,
    tv_key,
)
from tests.test_live_events import events, wrong
from tests.twilio_fake import AUTH_TOKEN, webhook

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytest_plugins = ["tests.browser"]

ADMIN_KEY = "admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DOCUMENTED = ("/api/v1/", "/sms/")  # every route under these must be in the document
OPS_PATHS = {"/healthz", "/readyz", "/metrics"}
DOC_URI = "urn:tvpay:openapi"
TV_KEY = [{"tvAppKey": []}]  # the security of every TV API and event stream operation
TV_CHALLENGE = 'Bearer realm="tvpay"'
JSON_TYPES = ("application/json", "application/problem+json")


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {"SSE_MAX_SECONDS": 10}  # a stream read past its events ends the test soon


@pytest.fixture
def doc(app: Flask) -> dict[str, Any]:
    """The document as the app serves it."""
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


# --- the document and the app's routes ---------------------------------------------------------


def openapi_path(rule: str) -> str:
    """``/orders/<order_id>/qr.<image_format>`` → ``/orders/{order_id}/qr.{image_format}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def routes(app: Flask) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, in OpenAPI's spelling."""
    return {(method.lower(), openapi_path(rule.rule)) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items()
            for method in api_docs.METHODS if method in item}


def coverage_gaps(app: Flask, doc: dict[str, Any]) -> tuple[set[tuple[str, str]],
                                                             set[tuple[str, str]]]:
    """(API routes the document lacks, operations of the document the app lacks)."""
    answered = routes(app)
    owed = {(m, p) for m, p in answered if p.startswith(DOCUMENTED) or p in OPS_PATHS}
    return owed - documented(doc), documented(doc) - answered


def test_every_api_route_is_documented_and_nothing_else(app, doc):
    assert coverage_gaps(app, doc) == (set(), set())
    assert {p for _, p in documented(doc)} >= OPS_PATHS | {"/sms/inbound", "/api/v1/orders"}


def test_the_check_reports_a_route_added_without_documenting_it(app, gw):
    def refund(order_id: str) -> Response:
        return Response(status=204)

    # The document read without a request: an app takes no new route after its first.
    doc = api_docs.document(app)
    app.add_url_rule("/api/v1/orders/<order_id>/refund", "refund", refund, methods=["POST"])
    app.add_url_rule("/api/v1/packages", "replace_packages", refund, methods=["PUT"])
    app.add_url_rule("/somewhere/else", "elsewhere", refund)  # not the API's: not owed
    assert coverage_gaps(app, doc) == (
        {("post", "/api/v1/orders/{order_id}/refund"), ("put", "/api/v1/packages")}, set())


def test_the_check_reports_a_documented_operation_the_app_lacks(app, doc):
    changed = copy.deepcopy(doc)
    changed["paths"]["/api/v1/orders/{order_id}/refund"] = {"post": {"responses": {}}}
    changed["paths"]["/api/v1/packages"]["delete"] = {"responses": {}}
    assert coverage_gaps(app, changed) == (set(), {
        ("post", "/api/v1/orders/{order_id}/refund"), ("delete", "/api/v1/packages")})


def test_the_document_is_valid_openapi_3_1_with_the_projects_version_and_address(doc):
    validate_openapi(doc)
    assert doc["openapi"].startswith("3.1.")
    version = re.search(r'^version = "([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text(),
                        re.MULTILINE)
    assert version and doc["info"]["version"] == version.group(1)
    assert doc["servers"] == [{"url": "https://pay.example"}]  # PUBLIC_BASE_URL of the tests


@pytest.mark.settings(PUBLIC_BASE_URL="https://tv.operator.example/pay")
def test_the_servers_follow_the_public_base_url(doc):
    assert doc["servers"] == [{"url": "https://tv.operator.example/pay"}]


@pytest.mark.settings(RECHARGE_MAX_AMOUNT=20000, CURRENCY="HKD", PHONE_COUNTRIES="CN,HK")
def test_the_document_states_the_limits_the_settings_and_the_catalog_set(client, seeded):
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    recharge = schemas["RechargeCodeRequest"]["properties"]
    assert recharge["amount"]["maximum"] == 20000
    assert recharge["currency"]["anyOf"][0]["enum"] == ["HKD"]
    packages = [p["id"] for p in client.get("/api/v1/packages").get_json()["packages"]]
    given = schemas["OrderRequest"]["properties"]
    assert given["package_id"]["anyOf"][0]["enum"] == packages
    phone = given["phone"]["anyOf"][0]["pattern"]
    assert all(re.fullmatch(phone, number) for number in ("13800138000", "+85251234567"))
    assert not any(re.fullmatch(phone, number) for number in ("51234567", "+14155550123"))


def test_a_body_that_is_not_a_json_object_is_invalid_json(client, seeded):
    order_body = {"device_id": "tv-42", "package_id": "vip_month", "phone": RICH}
    for raw in (json.dumps(json.dumps(order_body)), "[]", "{", ""):
        refused = client.post("/api/v1/orders", data=raw,
                              headers={"Content-Type": "application/json"})
        assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_json", raw


def test_an_optional_field_given_as_null_is_left_out(client, seeded):
    placed = client.post("/api/v1/orders", json={
        "device_id": "tv-42", "package_id": "vip_month", "phone": RICH, "bill_id": None,
        "amount": None})
    assert placed.status_code == 201 and placed.get_json()["package_id"] == "vip_month"
    recharge = client.post("/api/v1/devices/tv-42/payment-codes",
                           json={"kind": "recharge", "amount": 100, "currency": None})
    assert recharge.status_code == 201
    neither = client.post("/api/v1/orders", json={
        "device_id": "tv-42", "package_id": None, "bill_id": None, "phone": RICH})
    assert neither.status_code == 400 and neither.get_json()["code"] == "missing_field"


def test_a_method_a_route_does_not_take_answers_405_with_allow(client):
    refused = client.delete("/api/v1/packages")
    assert refused.status_code == 405 and refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "method_not_allowed"
    assert set(refused.headers["Allow"].split(", ")) >= {"GET", "HEAD", "OPTIONS"}


def readme_error_table() -> dict[int, set[str]]:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    return {int(status): set(re.findall(r"`([a-z_]+)`", codes))
            for status, codes in re.findall(r"^\| (\d{3}) \| (.+) \|$", readme, re.MULTILINE)}


def operation_problem_codes(doc: dict[str, Any]) -> Iterator[tuple[str, str, str, list[str]]]:
    for path, item in doc["paths"].items():
        for method in api_docs.METHODS:
            for status, response in item.get(method, {}).get("responses", {}).items():
                media = resolve(doc, response).get("content", {})
                if "application/problem+json" in media:
                    schema = media["application/problem+json"]["schema"]
                    yield path, method, status, problem_codes(doc, schema)


def test_the_problem_codes_are_the_readme_error_table(doc):
    schemas = doc["components"]["schemas"]
    by_status = {int(name.removeprefix("Problem")): set(problem_codes(doc, schemas[name]))
                 for name in schemas if re.fullmatch(r"Problem\d{3}", name)}
    table = readme_error_table()
    assert set(table) == set(by_status)
    for status, codes in by_status.items():
        assert codes == table[status], status
    for path, method, status, codes in operation_problem_codes(doc):
        assert codes, f"{method} {path} {status}: no codes"
        assert set(codes) <= by_status[int(status)], f"{method} {path} {status}"


def tv_operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of the TV API and the event streams: ``/api/v1``, not admin."""
    for path, item in doc["paths"].items():
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/admin/"):
            for method in api_docs.METHODS:
                if method in item:
                    yield path, method, item[method]


def response_codes(doc: dict[str, Any], operation: dict[str, Any], status: str) -> list[str]:
    answer = resolve(doc, operation["responses"].get(status, {}))
    return problem_codes(doc, answer["content"]["application/problem+json"]["schema"]) \
        if answer else []


def test_every_tv_operation_needs_a_tv_apps_key_and_documents_its_refusals(app, doc):
    operations = list(tv_operations(doc))
    assert {op["operationId"] for _, _, op in operations} >= {
        "listPackages", "createOrder", "streamDeviceEvents", "streamOrderEvents"}
    for path, method, operation in operations:
        where = f"{method} {path}"
        assert operation.get("security") == TV_KEY and "401" in operation["responses"], where
        unauthorized = resolve(doc, operation["responses"]["401"])
        assert resolve(doc, unauthorized["headers"]["WWW-Authenticate"])["required"], where
        assert response_codes(doc, operation, "401") == ["unauthorized"], where
        if "{device_id}" in path or operation["operationId"] == "createOrder":
            assert "device_not_found" in response_codes(doc, operation, "404"), where
        if "{order_id}" in path:
            assert "order_not_found" in response_codes(doc, operation, "404"), where
    tv_ids = {op["operationId"] for _, _, op in operations}
    others = [op for item in doc["paths"].values() for method, op in item.items()
              if method in api_docs.METHODS and op["operationId"] not in tv_ids]
    assert others and all(TV_KEY[0] not in op.get("security", []) for op in others)

    scheme = doc["components"]["securitySchemes"]["tvAppKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "flask --app app apps create NAME" in scheme["description"]
    key_format = re.search(r"`(\^tvpay_[^`]+\$)`", scheme["description"])
    assert key_format and re.fullmatch(key_format.group(1), tv_key(app))


# --- real answers against the document ---------------------------------------------------------


def pointer_escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def settle(doc: dict[str, Any], pointer: str) -> str:
    """The pointer of what ``pointer`` names, past any ``$ref``."""
    while "$ref" in (node := follow(doc, pointer)):
        pointer = node["$ref"].removeprefix("#")
    return pointer


def closed(node: Any) -> Any:
    """A copy where every object schema with properties and no word on others refuses others:
    an answer carrying a field the document does not describe fails the check."""
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    copied = {key: closed(value) for key, value in node.items()}
    if (node.get("type") == "object" and "properties" in node
            and not {"additionalProperties", "unevaluatedProperties"} & set(node)):
        copied["unevaluatedProperties"] = False
    return copied


class Contract:
    """Checks real answers against the document, and notes which operations answered what."""

    def __init__(self, app: Flask, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.urls = app.url_map.bind("pay.example")
        self.registry = Registry().with_resource(
            DOC_URI, DRAFT202012.create_resource(closed(doc)))
        self.answered: set[tuple[str, int]] = set()  # (operationId, status)

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        rule, _ = self.urls.match(path, method=method, return_rule=True)
        base = f"/paths/{pointer_escape(openapi_path(rule.rule))}/{method.lower()}"
        return base, follow(self.doc, base)

    def validate(self, instance: Any, pointer: str) -> None:
        validator = Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"},
                                         registry=self.registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(instance)]
        assert not errors, f"{pointer}: {errors}"

    def check(self, response: Any, sent: Any = None) -> Any:
        """Check ``response`` against its operation's documented answer of that status;
        ``sent``: the JSON or form body of the request, checked against the request schema."""
        method, path = response.request.method, response.request.path
        base, operation = self._operation(method, path)
        status = str(response.status_code)
        assert status in operation["responses"], \
            f"{method} {path} answered {status}, which is not documented: {response.data[:300]}"
        answer = settle(self.doc, f"{base}/responses/{status}")
        documented = follow(self.doc, answer)
        for name, header in documented.get("headers", {}).items():
            if resolve(self.doc, header).get("required"):
                assert name in response.headers, f"{method} {path} {status}: no {name} header"
        content = documented.get("content", {})
        if not content:
            assert response.data == b"", f"{method} {path} {status} has a body"
        else:
            assert response.mimetype in content, \
                f"{method} {path} {status} is {response.mimetype}, not one of {list(content)}"
        if response.mimetype in JSON_TYPES:
            body = json.loads(response.data)
            self.validate(body, f"{answer}/content/{pointer_escape(response.mimetype)}/schema")
            if response.mimetype == "application/problem+json":
                codes = problem_codes(self.doc, content[response.mimetype]["schema"])
                assert body["code"] in codes, f"{method} {path} {status}: {body['code']}"
        if sent is not None and response.status_code < 400:
            body_types = follow(self.doc, base)["requestBody"]["content"]
            media = next(m for m in body_types if m == response.request.mimetype)
            self.validate(sent, f"{base}/requestBody/content/{pointer_escape(media)}/schema")
        self.answered.add((operation["operationId"], response.status_code))
        return response

    def check_events(self, response: Any, seen: list[dict[str, Any]]) -> None:
        """Check the events read from a ``text/event-stream`` answer of ``response``."""
        base, _ = self._operation(response.request.method, response.request.path)
        media = settle(self.doc, f"{base}/responses/200") + "/content/text~1event-stream"
        event_data = settle(self.doc, media + "/x-event-data")
        declared = set(follow(self.doc, event_data)["properties"])
        for event in seen:
            self.validate(event["data"], event_data)
            assert (event["event"], event["id"]) == (event["data"]["type"], event["data"]["id"])
            assert set(event["data"]) <= declared, f"undocumented fields: {event['data']}"

    def succeeded(self, tag: str) -> tuple[set[str], set[str]]:
        """(operations of ``tag``, those that answered 2xx here)."""
        tagged = {op["operationId"] for item in self.doc["paths"].values()
                  for method, op in item.items()
                  if method in api_docs.METHODS and tag in op["tags"]}
        return tagged, {op for op, status in self.answered if op in tagged and status < 300}


@pytest.fixture
def contract(app, doc) -> Contract:
    return Contract(app, doc)


def test_the_tv_api_answers_as_documented(client, seeded, contract):
    check = contract.check
    check(client.get("/api/v1/packages"))
    body = {"device_id": "tv-42", "package_id": "vip_year", "phone": "13800138000"}
    rich = check(client.post("/api/v1/orders", json=body), sent=body).get_json()
    assert rich["status"] == "awaiting_code"
    unbound = check(order(client, UNBOUND, "vip_month")).get_json()
    assert unbound["status"] == "awaiting_wap"
    poor = check(order(client, POOR)).get_json()
    assert (poor["status"], poor["reason"], poor["expires_at"]) == (
        "failed", "insufficient_funds", None)
    check(client.get(f"/api/v1/orders/{rich['id']}"))
    for image in ("png", "svg"):
        check(client.get(f"/api/v1/orders/{unbound['id']}/qr.{image}"))
    assert check(client.get(f"/api/v1/orders/{unbound['id']}/qr.gif")).status_code == 404

    check(client.post(f"/api/v1/orders/{unbound['id']}/cancel"))
    assert check(client.post(f"/api/v1/orders/{unbound['id']}/cancel")).status_code == 409
    assert check(client.get(f"/api/v1/orders/{unbound['id']}/qr.png")).status_code == 409
    retried = check(client.post(f"/api/v1/orders/{unbound['id']}/retry")).get_json()
    assert retried["retry_of"] == unbound["id"]
    again = check(client.post(f"/api/v1/orders/{unbound['id']}/retry")).get_json()
    assert again["code"] == "order_already_retried"
    assert check(client.post(f"/api/v1/orders/{rich['id']}/retry")).get_json()["code"] == \
        "order_not_retryable"

    reply(client, RICH, code_sent_to(seeded, RICH))
    assert check(client.get(f"/api/v1/orders/{rich['id']}")).get_json()["status"] == "activated"
    entitlements = check(client.get("/api/v1/devices/tv-42/entitlements")).get_json()
    assert [e["package_id"] for e in entitlements["entitlements"]] == ["vip_year"]
    assert check(client.get("/api/v1/devices/tv-42/bill")).get_json()["entitlements"]

    for body in ({"kind": "renewal", "package_id": "vip_year"},
                 {"kind": "recharge", "amount": 5000, "currency": "CNY"}):
        created = check(client.post("/api/v1/devices/tv-42/payment-codes", json=body), sent=body)
        assert created.get_json()["status"] == "awaiting_wap"
    for body, code in (({"kind": "gift"}, "invalid_kind"),
                       ({"kind": "recharge", "amount": 0}, "invalid_amount")):
        refused = check(client.post("/api/v1/devices/tv-42/payment-codes", json=body))
        assert refused.get_json()["code"] == code

    pairing = check(client.post("/api/v1/devices/tv-42/pairing")).get_json()
    check(client.get(pairing["qr_url"]))
    assert check(client.get("/api/v1/devices/tv-42/pairing/AAAAAA/qr.png")).get_json()[
        "code"] == "pairing_code_not_found"
    assert check(client.get("/api/v1/devices/tv-42/pairing")).get_json()["paired"] is False
    reply(client, CARD_ONLY, pairing["sms"])
    assert check(client.get("/api/v1/devices/tv-42/pairing")).get_json()["phone"] == \
        "139****9000"
    check(client.delete("/api/v1/devices/tv-42/pairing"))
    body = {"device_id": "tv-42", "package_id": "vip_month", "use_paired_phone": True}
    assert check(client.post("/api/v1/orders", json=body)).get_json()["code"] == \
        "device_not_paired"

    tagged = [contract.succeeded(tag) for tag in ("Orders", "Devices", "Pairing")]
    assert set().union(*(operations - done for operations, done in tagged)) == set()


def test_refusals_answer_as_documented(client, seeded, contract):
    check = contract.check
    refusals = [
        (order(client, "12345"), 400, "invalid_phone"),
        (order(client, "+447911123456"), 400, "phone_country_not_allowed"),
        (client.post("/api/v1/orders", data="{", content_type="application/json"), 400,
         "invalid_json"),
        (client.post("/api/v1/orders", json={"device_id": "tv-42"}), 400, "missing_field"),
        (order(client, package="vip_forever"), 400, "unknown_package"),
        (client.post("/api/v1/orders", json={"device_id": "tv-42", "bill_id": "B-none",
                                             "phone": RICH}), 404, "bill_not_found"),
        (client.get("/api/v1/orders/ord_nothing"), 404, "order_not_found"),
        (client.post("/api/v1/orders/ord_nothing/cancel"), 404, "order_not_found"),
        (client.get("/api/v1/devices/bad%20id!/entitlements"), 400, "invalid_device_id"),
        (client.post("/api/v1/orders", json={"device_id": "tv-42", "package_id": "vip_year",
                                             "phone": RICH, "pad": "x" * 70_000}),
         413, "payload_too_large"),
        (client.get("/api/v1/admin/bills?device_id=tv-42"), 401, "admin_api_off"),
        (order(client, RICH, **{"Idempotency-Key": "k" * 256}), 400, "invalid_idempotency_key"),
    ]
    for response, status, code in refusals:
        check(response)
        assert (response.status_code, response.get_json()["code"]) == (status, code)

    first = check(order(client, CARD_ONLY, device="tv-7", **{"Idempotency-Key": "tv-7-1"}))
    replayed = check(order(client, CARD_ONLY, device="tv-7", **{"Idempotency-Key": "tv-7-1"}))
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == first.get_json()
    reused = check(order(client, CARD_ONLY, "vip_month", device="tv-7",
                         **{"Idempotency-Key": "tv-7-1"}))
    assert reused.get_json()["code"] == "idempotency_key_reused"
    limited = check(order(client, CARD_ONLY, "vip_month", device="tv-7"))
    assert (limited.status_code, limited.get_json()["code"]) == (429, "phone_rate_limited")
    assert int(limited.headers["Retry-After"]) == limited.get_json()["retry_after"] > 0


def in_path(path: str, order_id: str) -> str:
    """A URL of the documented ``path``, its parameters filled in."""
    values = {"device_id": "tv-42", "order_id": order_id, "image_format": "png",
              "code": "AAAAAA"}
    return re.sub(r"\{(\w+)\}", lambda found: values[found.group(1)], path)


def test_without_a_tv_apps_key_every_tv_operation_answers_401_as_documented(app, gw, client,
                                                                             seeded, contract):
    ordered = order(client, RICH).get_json()  # a real device and order behind each URL
    with gw.db.transaction() as session:
        admin_key = apps.create(session, "operator", apps.ADMIN, gw.clock())
    revoked_key = new_tv_app(app, "retired-tv")
    apps.revoke(gw, revoked_key.split("_")[1])
    anonymous = FlaskClient(app, app.response_class)  # a plain client: no key at all
    wrong_secret = tv_key(app)[:-1] + ("A" if tv_key(app)[-1] != "A" else "B")
    callers = [(anonymous, {})] + [(client, {"Authorization": value}) for value in (
        f"Bearer {wrong_secret}", f"Bearer {revoked_key}", f"Bearer {admin_key}",
        f"Basic {tv_key(app)}", "Bearer nope")]
    for path, method, _ in tv_operations(contract.doc):
        url = in_path(path, ordered["id"])
        for caller, headers in callers:
            refused = contract.check(caller.open(url, method=method.upper(), headers=headers))
            assert (refused.status_code, refused.get_json()["code"],
                    refused.headers["WWW-Authenticate"]) == (401, "unauthorized", TV_CHALLENGE), \
                f"{method} {url} {headers}"
    assert {op for op, status in contract.answered if status == 401} == {
        op["operationId"] for _, _, op in tv_operations(contract.doc)}


def test_another_tv_apps_devices_and_orders_answer_404_as_documented(app, gw, client, seeded,
                                                                     contract):
    ordered = order(client, RICH, **{"Idempotency-Key": "k-1"}).get_json()  # tv-42: this app's
    other = {"Authorization": f"Bearer {new_tv_app(app, 'other-tv')}"}
    for path, method, _ in tv_operations(contract.doc):
        expected = ("device_not_found" if "{device_id}" in path
                    else "order_not_found" if "{order_id}" in path else None)
        if expected is not None:
            url = in_path(path, ordered["id"])
            refused = contract.check(client.open(url, method=method.upper(), headers=other))
            assert (refused.status_code, refused.get_json()["code"]) == (404, expected), url
    body = {"device_id": "tv-42", "package_id": "vip_year", "phone": CARD_ONLY}
    refused = contract.check(client.post("/api/v1/orders", json=body, headers=other))
    assert (refused.status_code, refused.get_json()["code"]) == (404, "device_not_found")
    with seeded.db.read() as session:
        assert session.scalars(select(Order.id).where(Order.device_id == "tv-42")).all() == [
            ordered["id"]]
    assert contract.check(client.get(f"/api/v1/orders/{ordered['id']}")).status_code == 200

    own = {**body, "device_id": "tv-43"}  # the other app's own device; the same key is its own
    created = contract.check(client.post("/api/v1/orders", json=own,
                                         headers={**other, "Idempotency-Key": "k-1"}), sent=own)
    assert created.status_code == 201 and "Idempotent-Replayed" not in created.headers
    assert created.get_json()["id"] != ordered["id"]


@pytest.mark.settings(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
def test_a_store_outage_answers_as_documented(client, seeded, contract):
    unavailable = contract.check(order(client, RICH))
    assert (unavailable.status_code, unavailable.get_json()["code"]) == (
        503, "service_unavailable")
    assert unavailable.headers["Retry-After"]
    not_ready = contract.check(client.get("/readyz"))
    assert (not_ready.status_code, not_ready.get_json()["status"]) == (503, "not_ready")
    assert not_ready.get_json()["checks"]["redis"]["ok"] is False


@pytest.mark.settings(ADMIN_API_KEY=ADMIN_KEY)
def test_the_admin_api_and_bills_answer_as_documented(client, seeded, contract):
    check = contract.check
    bill = {"bill_id": "B-2026-10-42", "device_id": "tv-42", "amount": 4500,
            "description": "2026年10月收视费"}
    assert check(client.post("/api/v1/admin/bills", json=bill, headers=ADMIN),
                 sent=bill).status_code == 201
    both = {"bills": [bill, {**bill, "bill_id": "B-2026-11-42"}]}
    assert check(client.post("/api/v1/admin/bills", json=both, headers=ADMIN), sent=both
                 ).get_json() == {"added": 1, "unchanged": 1}
    assert check(client.post("/api/v1/admin/bills", json=bill, headers=ADMIN)).status_code == 200
    for body, status, code in (({**bill, "amount": 4600}, 409, "bill_exists"),
                               ({**bill, "amount": -1}, 400, "invalid_bill"),
                               ({"bills": []}, 400, "invalid_bill")):
        refused = check(client.post("/api/v1/admin/bills", json=body, headers=ADMIN))
        assert (refused.status_code, refused.get_json()["code"]) == (status, code)
    listed = check(client.get("/api/v1/admin/bills?device_id=tv-42", headers=ADMIN)).get_json()
    assert {b["bill_id"] for b in listed["bills"]} == {"B-2026-10-42", "B-2026-11-42"}
    assert check(client.get("/api/v1/admin/bills", headers=ADMIN)).get_json()["code"] == \
        "invalid_device_id"
    wrong_key = check(client.get("/api/v1/admin/bills?device_id=tv-42",
                                 headers={"Authorization": "Bearer nope"}))
    assert (wrong_key.get_json()["code"], wrong_key.headers["WWW-Authenticate"]) == (
        "unauthorized", "Bearer")

    partial = {"device_id": "tv-42", "bill_id": "B-2026-10-42", "amount": 4000, "phone": RICH}
    refused = check(client.post("/api/v1/orders", json=partial)).get_json()
    assert (refused["code"], refused["amount"]) == ("partial_payment_refused", 4500)
    by_code = {"kind": "bill", "bill_id": "B-2026-11-42"}
    check(client.post("/api/v1/devices/tv-42/payment-codes", json=by_code), sent=by_code)
    pay = {"device_id": "tv-42", "bill_id": "B-2026-10-42", "phone": RICH}
    paying = check(client.post("/api/v1/orders", json=pay), sent=pay).get_json()
    assert (paying["kind"], paying["package_id"]) == ("bill", None)
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert check(client.get(paying["qr_url"])).get_json()["code"] == "order_not_pending"
    assert check(client.post("/api/v1/orders", json=pay)).get_json()["code"] == \
        "bill_already_paid"
    assert check(client.get("/api/v1/devices/tv-42/bill")).get_json()["bills"][0][
        "bill_id"] == "B-2026-11-42"

    revoke = "/api/v1/admin/devices/tv-42/entitlements/vip_year"
    assert check(client.delete(revoke, headers=ADMIN)).get_json()["code"] == \
        "entitlement_not_found"
    order(client, RICH)
    reply(client, RICH, code_sent_to(seeded, RICH))
    check(client.delete(revoke, headers=ADMIN))
    operations, done = contract.succeeded("Admin")
    assert operations - done == set()


@pytest.mark.settings(ADMIN_API_KEY=ADMIN_KEY)
def test_event_streams_send_documented_events(client, seeded, contract):
    created = order(client, RICH, "vip_month", device="tv-9").get_json()
    reply(client, RICH, wrong(code_sent_to(seeded, RICH)))
    reply(client, RICH, code_sent_to(seeded, RICH))
    pairing = client.post("/api/v1/devices/tv-9/pairing").get_json()
    reply(client, CARD_ONLY, pairing["sms"])
    client.delete("/api/v1/devices/tv-9/pairing")
    client.delete("/api/v1/admin/devices/tv-9/entitlements/vip_month", headers=ADMIN)
    unbound = order(client, UNBOUND, "vip_month", device="tv-9").get_json()
    client.post(f"/api/v1/orders/{unbound['id']}/cancel")
    client.post("/api/v1/devices/tv-9/payment-codes", json={"kind": "renewal",
                                                             "package_id": "vip_year"})
    with seeded.db.read() as session:
        recorded = session.scalar(select(func.count()).select_from(OrderEvent)
                                  .where(OrderEvent.device_id == "tv-9"))

    stream = contract.check(client.get("/api/v1/devices/tv-9/events?last_event_id=0",
                                       buffered=False))
    reading = events(stream.response)
    seen = [next(reading) for _ in range(recorded)]
    stream.close()
    contract.check_events(stream, seen)
    assert {e["event"] for e in seen} == {"order.status", "order.wrong_code", "pairing.paired",
                                          "pairing.unpaired", "entitlement.revoked"}

    stream = contract.check(client.get(f"/api/v1/orders/{created['id']}/events",
                                       buffered=False))
    seen = list(events(stream.response))  # the stream ends after the order's final status
    contract.check_events(stream, seen)
    assert [e["data"]["status"] for e in seen][-1] == "activated"

    for url, code in (("/api/v1/orders/ord_nothing/events", "order_not_found"),
                      ("/api/v1/devices/bad%20id!/events", "invalid_device_id"),
                      ("/api/v1/devices/tv-9/events?last_event_id=x1", "invalid_last_event_id")):
        assert contract.check(client.get(url)).get_json()["code"] == code
    operations, done = contract.succeeded("Live events")
    assert operations - done == set()


@pytest.mark.settings(TWILIO_AUTH_TOKEN=AUTH_TOKEN)
def test_sms_webhooks_answer_as_documented(client, seeded, contract):
    check = contract.check
    order(client, RICH)
    sms = {"from": RICH, "to": "10690000", "text": wrong(code_sent_to(seeded, RICH))}
    answered = check(client.post("/sms/inbound", json=sms,
                                 headers={"X-Inbound-Secret": INBOUND_SECRET}), sent=sms)
    assert answered.get_json() == {"accepted": True, "replied": True}
    form = {"from": RICH, "text": "BAL"}
    check(client.post("/sms/inbound", data=form, headers={"X-Inbound-Secret": INBOUND_SECRET}),
          sent=form)
    assert check(client.post("/sms/inbound", json=sms)).status_code == 403
    missing = check(client.post("/sms/inbound", json={"from": RICH},
                                headers={"X-Inbound-Secret": INBOUND_SECRET})).get_json()
    assert (missing["code"], missing["field"]) == ("missing_field", "text")

    twilio_sms = {"From": RICH, "To": "+15005550006", "Body": code_sent_to(seeded, RICH),
                  "MessageSid": "SM" + "1" * 32}
    check(webhook(client, "/sms/twilio/inbound", twilio_sms), sent=twilio_sms)
    assert check(webhook(client, "/sms/twilio/inbound", twilio_sms, signature=None)
                 ).status_code == 403
    status = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered"}
    check(webhook(client, "/sms/twilio/status", status), sent=status)
    assert check(webhook(client, "/sms/twilio/status", {"MessageSid": "SM1"})
                 ).get_json()["code"] == "missing_field"
    operations, done = contract.succeeded("SMS webhooks")
    assert operations - done == set()


def test_operations_endpoints_answer_as_documented(client, contract):
    assert contract.check(client.get("/healthz")).get_json() == {"status": "ok"}
    assert contract.check(client.get("/readyz")).get_json()["status"] == "ready"
    assert b"# TYPE" in contract.check(client.get("/metrics")).data
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert contract.check(openmetrics).mimetype == "application/openmetrics-text"
    operations, done = contract.succeeded("Operations")
    assert operations - done == set()


# --- the page ----------------------------------------------------------------------------------


def test_the_docs_page_shows_every_operation_schema_and_code(client, doc):
    response = client.get("/docs")
    assert (response.status_code, response.mimetype) == (200, "text/html")
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; "
                                                                  "style-src 'self'")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = response.get_data(as_text=True)
    assert "<script" not in html and 'href="/openapi.json"' in html
    for method, path in documented(doc):
        operation = doc["paths"][path][method]
        assert f'id="op-{operation["operationId"]}"' in html
        assert f'<code class="path">{escape(path)}</code>' in html
        assert escape(operation["summary"]) in html
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    for _path, _method, _status, codes in operation_problem_codes(doc):
        assert all(f"<code>{code}</code>" in html for code in codes)
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert stylesheet
    with client.get(stylesheet.group(1)) as css:  # a file: closed, or it warns
        assert (css.status_code, css.mimetype) == (200, "text/css")


def test_the_docs_page_is_styled_and_readable_in_a_browser(app, browser: Browser,
                                                           output_dir: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and not message.location["url"].endswith("/favicon.ico") else None)
    try:
        with live_server(app) as base:
            page.goto(f"{base}/docs")
            header = page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor")
            assert header == "rgb(31, 95, 191)"  # the stylesheet applied, under the CSP
            page.click("nav a[href='#op-createOrder']")
            assert page.url.endswith("#op-createOrder")
            assert page.is_visible("#op-createOrder >> text=invalid_phone")
            page.screenshot(path=output_dir / "docs.png")
            page.set_viewport_size({"width": 360, "height": 740})  # an operator's phone
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
            page.screenshot(path=output_dir / "docs-360px.png")
            page.click("header a[href='/openapi.json']")
            assert json.loads(page.inner_text("body"))["openapi"].startswith("3.1.")
    finally:
        context.close()
    assert problems == []
