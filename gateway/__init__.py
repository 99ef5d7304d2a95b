"""TV Pay Gateway: pay for a smart-TV package from the phone.

``create_app`` builds the web app on the services of ``gateway.wiring.connect``. Nothing
connects to a database, Redis or an SMSC at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flask import Flask

from gateway import cli, web
from gateway.config import PROJECT_ROOT, load_settings
from gateway.context import attach
from gateway.domain.times import utc_now
from gateway.logs import configure_logging
from gateway.wiring import connect

__all__ = ["create_app"]

MAX_BODY_BYTES = 64 * 1024


def create_app(config: Mapping[str, Any] | None = None, *,
               clock: Callable[[], datetime] = utc_now) -> Flask:
    """Build the app from the environment, then ``config`` overrides (tests, local runs)."""
    settings = load_settings(config)
    configure_logging(settings.LOG_FORMAT)
    app = web.new_app(__name__, template_folder=str(PROJECT_ROOT / "wap_templates"))
    app.config.update(SECRET_KEY=settings.SECRET_KEY, MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    attach(app, connect(settings, clock))
    web.register(app)
    cli.register(app)
    return app
