"""The baseline of bench/e2e.py: a bare Flask app with one JSON endpoint, nothing behind it.

    gunicorn bench.bare_app:app    (from the project folder, so gunicorn.conf.py applies)

``POST /orders`` reads a JSON body and answers 201 with a small JSON order, as the service's
``POST /api/v1/orders`` does, without the database, Redis, keys or logs; ``GET /healthz`` says
it is up.
"""

from __future__ import annotations

import itertools

from flask import Flask, jsonify, request

__all__ = ["app"]

app = Flask(__name__)
_numbers = itertools.count(1)


@app.post("/orders")
def create_order():  # type: ignore[no-untyped-def]
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="a JSON object is required"), 400
    return jsonify(id=f"ord_{next(_numbers)}", status="awaiting_code",
                   device_id=body.get("device_id"), package_id=body.get("package_id")), 201


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")
