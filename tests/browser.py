"""Real-browser helpers: a live server for a Flask app and Playwright fixtures over Chromium.

A test module loads the fixtures as a plugin and imports the helper::

    from tests.browser import live_server

    pytest_plugins = ["tests.browser"]

(Importing the fixtures by name works too, but ruff then flags as F811 each test argument
that shadows one.) The module is imported before pytest loads it as a plugin, too late for
assertion rewriting, so it opts out -- PYTEST_DONT_REWRITE -- rather than warn (an error here).

The browser is Debian's Chromium (``apt-get install chromium``), or ``CHROMIUM_PATH``;
without it, or without Playwright, the browser tests are skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu",
    # Without these Chromium stalls on a closed network, reaching for Google's services.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 360, "height": 740}


@contextlib.contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a free local port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the whole session, skipped when it or Playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -r requirements-dev.txt")
    path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not Path(path).exists():
        pytest.skip(f"no Chromium at {path}: apt-get install chromium (or set CHROMIUM_PATH)")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page of a Chinese phone's browser, with a 10 s default timeout."""
    context = browser.new_context(viewport=PHONE, locale="zh-CN")
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's artifacts (screenshots) under ``TEST_OUTPUT_DIR``."""
    root = Path(os.environ.get("TEST_OUTPUT_DIR", REPO / "test-output"))
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.removeprefix("tests/")).strip("_")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
