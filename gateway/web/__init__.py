"""Web role: the TV API, the payment pages, the SMS webhooks, and the one place errors become
HTTP responses."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, redirect
from flask.typing import ResponseReturnValue
from flask_openapi3 import OpenAPI

from gateway.context import services
from gateway.web import (
    admin,
    admission,
    api_docs,
    client_address,
    dashboard,
    demo,
    live_events,
    ops,
    page_headers,
    problems,
    request_log,
    sms_webhooks,
    tv_api,
    wap,
)

__all__ = ["new_app", "register"]


def new_app(import_name: str, **options: Any) -> OpenAPI:
    """The Flask app, whose routes under ``/api/v1`` and ``/sms`` document themselves."""
    app = OpenAPI(import_name, **api_docs.app_options(), **options)
    api_docs.configure(app)
    return app


def _index() -> ResponseReturnValue:
    if demo.enabled(current_app):  # a local run: open the demo
        return redirect("/demo")
    return jsonify(service="TV Pay Gateway", packages="/api/v1/packages",
                   orders="/api/v1/orders", docs="/docs", openapi="/openapi.json")


def register(app: OpenAPI) -> None:
    request_log.register(app)
    admission.register(app)
    ops.register(app)
    app.add_url_rule("/", "index", _index)
    app.register_api(tv_api.bp)
    app.register_api(admin.bp)
    app.register_api(live_events.bp)
    app.register_api(sms_webhooks.bp)
    wap.register(app)
    api_docs.register(app)
    dashboard.register(app)
    demo.register(app)
    problems.register(app)
    settings = services(app).settings
    if settings.PUBLIC_BASE_URL.startswith("https://"):
        page_headers.require_https(app)
    client_address.install(app, settings.TRUSTED_PROXIES)  # outermost
