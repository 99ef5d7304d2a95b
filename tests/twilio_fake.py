"""A local server that speaks the Twilio Messages API, for the real ``twilio`` client in tests.

It checks the client's HTTP Basic auth, takes ``POST /2010-04-01/Accounts/{sid}/Messages.json``
as Twilio does (form fields ``To``, ``Body``, ``From`` or ``MessagingServiceSid``,
``StatusCallback``), answers 201 with a message resource, or with Twilio's error body when told
to fail. ``sign`` computes ``X-Twilio-Signature`` with the package's own ``RequestValidator``.

Test modules load its fixtures with ``pytest_plugins = ["tests.twilio_fake"]`` (imported first,
so it opts out of assertion rewriting: PYTEST_DONT_REWRITE).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from twilio.request_validator import RequestValidator

from tests.browser import live_server

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-twilio-auth-token"
FROM = "+15005550006"


@dataclass
class FakeTwilio:
    messages: list[dict[str, str]] = field(default_factory=list)
    failures: list[tuple[int, int]] = field(default_factory=list)  # (HTTP status, code) next
    unsubscribed: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""  # where it listens

    def to(self, phone: str) -> list[dict[str, str]]:
        with self.lock:
            return [m for m in self.messages if m["To"] == phone]

    def app(self) -> Flask:
        app = Flask("fake_twilio")

        @app.post("/2010-04-01/Accounts/<sid>/Messages.json")
        def create(sid: str) -> Response:
            auth = request.authorization
            if sid != ACCOUNT_SID or auth is None or (auth.username, auth.password) != (
                    ACCOUNT_SID, AUTH_TOKEN):
                return _error(401, 20003, "Authenticate")
            form = request.form.to_dict()
            to = form.get("To", "")
            with self.lock:
                failure = self.failures.pop(0) if self.failures else None
            if failure:
                return _error(failure[0], failure[1], "Simulated failure")
            if to in self.invalid:
                return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            if to in self.unsubscribed:
                return _error(400, 21610, "Attempt to send to unsubscribed recipient")
            if not form.get("Body") or not (form.get("From") or form.get("MessagingServiceSid")):
                return _error(400, 21602, "Message body and a sender are required")
            message = {**form, "sid": "SM" + secrets.token_hex(16)}
            with self.lock:
                self.messages.append(message)
            return jsonify(sid=message["sid"], account_sid=sid, to=to, body=form["Body"],
                           status="queued", num_segments="1", direction="outbound-api",
                           messaging_service_sid=form.get("MessagingServiceSid"),
                           uri=f"/2010-04-01/Accounts/{sid}/Messages/{message['sid']}.json",
                           **{"from": form.get("From")}), 201

        return app


def _error(status: int, code: int, message: str) -> tuple[Response, int]:
    return jsonify(code=code, message=message, status=status,
                   more_info=f"https://www.twilio.com/docs/errors/{code}"), status


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def settings(base: str, **more: object) -> dict[str, object]:
    """App settings that send by Twilio through the fake at ``base``."""
    return {"SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM": FROM, "TWILIO_API_BASE": base,
            **more}


PUBLIC = "https://pay.example"  # PUBLIC_BASE_URL of the test app: what Twilio calls and signs


@pytest.fixture
def twilio() -> Any:
    fake = FakeTwilio()
    with live_server(fake.app()) as base:
        fake.base = base
        yield fake


def webhook(client: Any, path: str, params: dict[str, str], signature: str | None = "sign") -> Any:
    """POST ``params`` to a Twilio webhook as Twilio would: signed for the public URL."""
    headers = {}
    if signature == "sign":
        headers["X-Twilio-Signature"] = sign(PUBLIC + path, params)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, data=params, headers=headers)
