"""The browser fixtures end to end: Chromium loads the live app's index."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask

from tests.browser import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]


def test_index_in_a_real_browser(app: Flask, page: Page, output_dir: Path) -> None:
    with live_server(app) as base:
        response = page.goto(base + "/")
        assert response is not None and response.ok
        assert "TV Pay Gateway" in page.inner_text("body")
        page.screenshot(path=output_dir / "index.png")
    assert (output_dir / "index.png").stat().st_size > 0
