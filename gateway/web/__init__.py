"""Web role: the TV API, the payment pages, the SMS webhooks, and the one place errors become
HTTP responses."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, redirect

from gateway.web import (
    admin,
    api_docs,
    dashboard,
    demo,
    live_events,
    ops,
    problems,
    request_log,
    sms_webhooks,
    tv_api,
    wap,
)

__all__ = ["register"]


def _index() -> Response:
    if demo.enabled(current_app):  # a local run: open the demo
        return redirect("/demo")
    return jsonify(service="TV Pay Gateway", packages="/api/v1/packages",
                   orders="/api/v1/orders", docs="/docs", openapi="/openapi.json")


def register(app: Flask) -> None:
    request_log.register(app)
    ops.register(app)
    app.add_url_rule("/", "index", _index)
    app.register_blueprint(tv_api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(live_events.bp)
    app.register_blueprint(sms_webhooks.bp)
    wap.register(app)
    api_docs.register(app)
    dashboard.register(app)
    demo.register(app)
    problems.register(app)
