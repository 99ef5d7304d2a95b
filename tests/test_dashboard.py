"""The operator dashboard (``/admin``): the admin key by form or Bearer header, the figures of a
known set of orders made through the real API and SMS paths, the window, and the charts in a
real browser."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from gateway.background import Worker
from gateway.store.outbox import LogProvider, dispatch_queued
from tests.browser import live_server
from tests.conftest import (
    CARD_ONLY,
    POOR,
    RICH,
    UNBOUND,
    code_sent_to,
    order,
    reply,
    sms_to,
    stored_order,
)
from tests.smpp_helpers import running, wait_until

pytest_plugins = ["tests.browser"]

KEY = "operator-key-0123456789"
LOST = "+8613500135000"  # an unbound phone whose network never delivers
pytestmark = pytest.mark.settings(ADMIN_API_KEY=KEY)


# --- reading the page --------------------------------------------------------------------------


class _Tables(HTMLParser):
    """The text of every cell of every table with an id: ``{id: [[cell, ...], ...]}``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._rows = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("th", "td") and self._rows is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._rows is not None and self._cell is not None:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def by_row(rows: list[list[str]]) -> dict[str, list[str]]:
    """A table's body rows keyed by their first cell."""
    return {row[0]: row[1:] for row in rows[1:]}


def csrf_of(response: Any) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      response.get_data(as_text=True))
    assert found, "the page has no form"
    return found.group(1)


def sign_in(client: FlaskClient, key: str = KEY) -> Any:
    return client.post("/admin/sign-in",
                       data={"csrf_token": csrf_of(client.get("/admin")), "key": key})


def dashboard(client: FlaskClient, query: str = "") -> dict[str, list[list[str]]]:
    response = client.get(f"/admin{query}", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return tables(response.get_data(as_text=True))


def shows_figures(response: Any) -> bool:
    return 'id="funnel-table"' in response.get_data(as_text=True)


# --- the key -----------------------------------------------------------------------------------


@pytest.mark.settings(ADMIN_API_KEY=None)
def test_without_an_admin_key_the_dashboard_is_off(client):
    for response in (client.get("/admin"),
                     client.get("/admin", headers={"Authorization": "Bearer anything-at-all"}),
                     client.post("/admin/sign-in", data={"key": "anything-at-all"})):
        assert response.status_code == 403
        assert response.mimetype == "text/html"
        page = response.get_data(as_text=True)
        assert "dashboard is off" in page and "ADMIN_API_KEY" in page
        assert "<form" not in page and not shows_figures(response)


def test_a_wrong_key_is_refused_and_signs_nothing_in(client):
    first = client.get("/admin")
    assert first.status_code == 200 and 'name="key"' in first.get_data(as_text=True)
    assert not shows_figures(first)

    wrong = sign_in(client, "not-the-operator-key")
    assert wrong.status_code == 401
    assert "That is not the admin key." in wrong.get_data(as_text=True)
    assert "tvpay_admin" not in wrong.headers.get("Set-Cookie", "")
    assert not shows_figures(client.get("/admin"))

    by_header = client.get("/admin", headers={"Authorization": "Bearer not-the-operator-key"})
    assert by_header.status_code == 401 and not shows_figures(by_header)
    forged = client.post("/admin/sign-in", data={"csrf_token": "forged", "key": KEY})
    assert forged.status_code == 400 and "tvpay_admin" not in forged.headers.get("Set-Cookie", "")
    assert not shows_figures(client.get("/admin"))


def test_wrong_keys_are_limited_per_address_and_the_right_key_is_never_refused(client, clock):
    for _ in range(5):
        assert sign_in(client, "guess-0123456789abc").status_code == 401
    limited = sign_in(client, "guess-0123456789abc")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many wrong keys" in limited.get_data(as_text=True)
    assert sign_in(client).status_code == 303  # the operator is not locked out by a guesser
    assert shows_figures(client.get("/admin"))
    assert shows_figures(client.get("/admin", headers={"Authorization": f"Bearer {KEY}"}))

    clock.advance(minutes=15, seconds=1)
    assert sign_in(client, "guess-0123456789abc").status_code == 401


def by_bearer(client: FlaskClient, key: str, forwarded_for: str | None,
              peer: str = "10.0.0.1") -> int:
    """The dashboard asked with ``key`` from ``peer`` (a proxy, by default), which says it
    forwards for ``forwarded_for``."""
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return client.get("/admin", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code


@pytest.mark.parametrize("trusted", [
    pytest.param(trusted, marks=pytest.mark.settings(ADMIN_API_KEY=KEY, TRUSTED_PROXIES=trusted))
    for trusted in ("1", "10.0.0.0/8")])
def test_behind_trusted_proxies_each_client_has_a_bucket_of_its_own(client, trusted):
    for _ in range(5):
        assert by_bearer(client, "guess-0123456789abc", "203.0.113.5") == 401
    assert by_bearer(client, "guess-0123456789abc", "203.0.113.5") == 429
    # Another viewer behind the same proxy, and the guesser writing another address at the
    # left of the header (which the proxy keeps and appends the real one to):
    assert by_bearer(client, "guess-0123456789abc", "203.0.113.6") == 401
    assert by_bearer(client, "guess-0123456789abc", "198.51.100.1, 203.0.113.5") == 429
    assert by_bearer(client, KEY, "203.0.113.5") == 200


def test_without_trusted_proxies_the_header_is_not_believed(client):
    for n in range(5):
        assert by_bearer(client, "guess-0123456789abc", f"203.0.113.{n}") == 401
    assert by_bearer(client, "guess-0123456789abc", "203.0.113.99") == 429


@pytest.mark.settings(ADMIN_API_KEY=KEY, TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7")
def test_a_chain_of_trusted_networks_is_walked_to_the_client(client):
    for _ in range(5):
        assert by_bearer(client, "guess-0123456789abc", "203.0.113.5, 192.0.2.7, 10.1.2.3") == 401
    assert by_bearer(client, "guess-0123456789abc", "203.0.113.5") == 429
    assert by_bearer(client, "guess-0123456789abc", "203.0.113.5", peer="198.51.100.9") == 401


def test_the_form_signs_in_for_eight_hours_and_out_again(client, seeded, clock):
    signed = sign_in(client)
    assert signed.status_code == 303 and signed.headers["Location"] == "/admin"
    cookie = next(value for value in signed.headers.getlist("Set-Cookie")
                  if value.startswith("tvpay_admin="))
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=28800", "Secure"):
        assert attribute in cookie
    assert KEY not in cookie

    page = client.get("/admin")
    assert page.status_code == 200 and shows_figures(page)
    assert "Sign out" in page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script" not in csp and "<script" not in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"

    clock.advance(hours=7, minutes=59)
    assert shows_figures(client.get("/admin"))
    clock.advance(minutes=1)
    assert not shows_figures(client.get("/admin"))

    sign_in(client)
    out = client.post("/admin/sign-out", data={"csrf_token": csrf_of(client.get("/admin"))})
    assert out.status_code == 303
    assert not shows_figures(client.get("/admin"))


def test_a_bearer_header_opens_the_dashboard_without_a_cookie(client, seeded):
    response = client.get("/admin", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200 and shows_figures(response)
    assert "Set-Cookie" not in response.headers
    assert "Sign out" not in response.get_data(as_text=True)


@pytest.mark.parametrize("minutes", ["abc", "30", "-60", "", "６０", "60.0", "1e3"])
def test_a_window_not_offered_is_a_400_page(client, minutes):
    response = client.get(f"/admin?minutes={minutes}",
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "minutes must be one of 15, 60, 360, 1440" in page
    assert 'href="/admin?minutes=60"' in page and not shows_figures(response)


def test_an_oversized_sign_in_is_a_page_not_a_500(client):
    response = client.post("/admin/sign-in", data={"key": "k" * 70_000})
    assert response.status_code == 413 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"


# --- the figures -------------------------------------------------------------------------------


def outbox_status(gw, phone: str, kind: str) -> str:
    return sms_to(gw, phone, kind)[-1].status


@pytest.fixture
def mixed_hour(client, seeded, clock, smsc) -> dict[str, Any]:
    """Seven orders three minutes apart, made through the API, with their SMS carried over
    SMPP by the built-in SMSC and settled by its receipts; the clock stays at the last one."""
    gw = seeded
    made: dict[str, Any] = {}
    with running(gw, smsc.port):
        made["poor"] = order(client, POOR, device="tv-1").get_json()
        assert made["poor"]["reason"] == "insufficient_funds"

        clock.advance(minutes=3)
        made["paid"] = order(client, RICH, device="tv-2").get_json()
        wait_until(lambda: outbox_status(gw, RICH, "code") == "delivered",
                   what="the code SMS to be delivered")
        reply(client, RICH, code_sent_to(gw, RICH))
        wait_until(lambda: [m.status for m in sms_to(gw, RICH)] == ["delivered"] * 2,
                   what="the code and confirmation SMS to be delivered")
        assert stored_order(gw, made["paid"]["id"]).status == "activated"

        clock.advance(minutes=3)
        made["cancelled"] = order(client, CARD_ONLY, device="tv-3").get_json()
        wait_until(lambda: outbox_status(gw, CARD_ONLY, "code") == "delivered",
                   what="the code SMS to be delivered")
        assert client.post(f"/api/v1/orders/{made['cancelled']['id']}/cancel").status_code == 200

        clock.advance(minutes=3)
        smsc.undeliverable.add(RICH.lstrip("+"))
        made["undeliverable"] = order(client, RICH, device="tv-4").get_json()
        wait_until(lambda: stored_order(gw, made["undeliverable"]["id"]).status == "failed",
                   what="the undeliverable code SMS to fail its order")

        clock.advance(minutes=3)
        made["link"] = order(client, UNBOUND, device="tv-5").get_json()
        wait_until(lambda: outbox_status(gw, UNBOUND, "link") == "delivered",
                   what="the link SMS to be delivered")

        clock.advance(minutes=3)
        smsc.undeliverable.add(LOST.lstrip("+"))
        made["lost_link"] = order(client, LOST, device="tv-6").get_json()
        wait_until(lambda: outbox_status(gw, LOST, "link") == "undeliverable",
                   what="the link SMS to be undeliverable")

        clock.advance(minutes=3)
        made["qr"] = client.post("/api/v1/devices/tv-7/payment-codes",
                                 json={"kind": "recharge", "amount": 5000}).get_json()
    return made


@pytest.mark.settings(ADMIN_API_KEY=KEY, SMS_PROVIDER="smpp")
def test_the_page_counts_a_known_hour_of_orders(client, gw, mixed_hour):
    response = client.get("/admin", headers={"Authorization": f"Bearer {KEY}"})
    page = response.get_data(as_text=True)
    found = tables(page)

    # 7 created; the POOR one sent nothing; QR-only counts as sent and delivered; two SMS lost.
    assert by_row(found["funnel-table"]) == {
        "Created": ["7", "100.0%"],
        "Code or link sent": ["6", "85.7%"],
        "Delivered": ["4", "57.1%"],
        "Confirmed (paid)": ["1", "14.3%"],
        "Activated": ["1", "14.3%"],
    }
    assert by_row(found["failures-table"]) == {
        "insufficient_funds": ["failed", "1", "14.3%"],
        "too_many_attempts": ["failed", "0", "0.0%"],
        "sms_undeliverable": ["failed", "1", "14.3%"],
        "bill_already_paid": ["failed", "0", "0.0%"],
        "expired": ["expired", "0", "0.0%"],
        "cancelled": ["cancelled", "1", "14.3%"],
    }
    # Two codes, a confirmation and two links delivered; a code and a link undeliverable.
    assert by_row(found["providers-table"]) == {
        "smpp": ["6", "6", "4", "2", "0", "0", "66.7%"],
        "twilio": ["0", "0", "0", "0", "0", "0", "–"],
        "log": ["0", "0", "0", "0", "0", "0", "–"],
    }
    timeline = found["timeline-table"][1:]
    totals = [sum(int(row[n]) for row in timeline) for n in range(1, 7)]
    assert totals == [1, 3, 2, 0, 1, 7]  # paid, pending, failed, expired, cancelled, all
    zone = ZoneInfo(gw.settings.TIMEZONE)
    periods = Counter(
        datetime.fromtimestamp(created.timestamp() // 300 * 300, zone).strftime("%Y-%m-%d %H:%M")
        for created in (datetime.fromisoformat(made["created_at"])
                        for made in mixed_hour.values()))
    assert {row[0]: int(row[6]) for row in timeline} == periods

    recent = found["recent-table"][1:]
    assert [row[1] for row in recent] == [made["id"] for made in reversed(mixed_hour.values())]
    assert recent[0][2:] == ["recharge", "wap", "tv-7", "–", "50.00 CNY", "awaiting_wap", ""]
    assert recent[-1][2:] == ["package", "sms_code", "tv-1", "137****7000", "200.00 CNY",
                              "failed", "insufficient_funds"]
    assert recent[3][5:] == ["138****8000", "200.00 CNY", "failed", "sms_undeliverable"]

    for phone in (RICH, CARD_ONLY, POOR, UNBOUND, LOST):
        assert phone.removeprefix("+86") not in page and phone not in page
    for made in mixed_hour.values():
        if made.get("payment_url"):
            assert made["payment_url"].rsplit("/", 1)[1] not in page


def test_orders_older_than_the_window_are_not_counted(client, seeded, clock):
    order(client, RICH, device="tv-1")
    client.post("/api/v1/devices/tv-2/payment-codes", json={"kind": "recharge", "amount": 100})
    dispatch_queued(seeded.db, LogProvider(), clock)  # the log provider: sent, never a receipt

    found = dashboard(client)
    assert by_row(found["funnel-table"])["Created"] == ["2", "100.0%"]
    assert by_row(found["funnel-table"])["Code or link sent"] == ["2", "100.0%"]
    assert by_row(found["funnel-table"])["Delivered"] == ["1", "50.0%"]  # the QR-only one
    assert by_row(found["providers-table"])["log"] == ["1", "1", "0", "0", "0", "0", "–"]

    clock.advance(minutes=61)
    hour = dashboard(client, "?minutes=60")
    assert by_row(hour["funnel-table"])["Created"] == ["0", "–"]
    assert by_row(hour["providers-table"])["log"] == ["0", "0", "0", "0", "0", "0", "–"]
    assert "recent-table" not in hour and "timeline-table" not in hour

    six_hours = dashboard(client, "?minutes=360")
    assert by_row(six_hours["funnel-table"])["Created"] == ["2", "100.0%"]
    # Both lapsed meanwhile: shown expired, as the API shows them, before the worker runs.
    assert by_row(six_hours["failures-table"])["expired"] == ["expired", "2", "100.0%"]
    assert [row[7] for row in six_hours["recent-table"][1:]] == ["expired", "expired"]


# --- in a browser ------------------------------------------------------------------------------


@pytest.mark.settings(ADMIN_API_KEY=KEY, SMS_PROVIDER="smpp")
def test_an_operator_signs_in_and_sees_the_charts(app, mixed_hour, browser, output_dir):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        with live_server(app) as base:
            page.goto(f"{base}/admin")
            page.fill("#key", "a-wrong-key-0123456789")
            page.click("button[type=submit]")
            assert page.locator("[role=alert]").inner_text() == "That is not the admin key."
            page.screenshot(path=str(output_dir / "dashboard-sign-in.png"))
            page.fill("#key", KEY)
            page.click("button[type=submit]")
            page.wait_for_selector("#funnel-chart")

            assert page.locator("#funnel-chart rect.bar").count() == 5
            created = page.locator("#funnel-chart rect.step-created").get_attribute("width")
            paid = page.locator("#funnel-chart rect.step-paid").get_attribute("width")
            assert float(created) > float(paid) > 0
            assert page.locator("#provider-chart rect.bar").count() == 3
            assert float(page.locator("#provider-chart rect.bar").first
                         .get_attribute("width")) > 0  # smpp, 66.7 %
            assert page.locator("#timeline-chart rect.bar").count() >= 5
            for chart in ("funnel-chart", "provider-chart", "timeline-chart"):
                assert page.locator(f"#{chart} > title").text_content()
                assert page.locator(f"#{chart}").get_attribute("role") == "img"
            page.screenshot(path=str(output_dir / "dashboard.png"))
            page.screenshot(path=str(output_dir / "dashboard-full.png"), full_page=True)

            page.click("text=Sign out")
            page.wait_for_selector("#key")
    finally:
        context.close()


@pytest.mark.settings(SMS_PROVIDER="smpp", ADMIN_API_KEY=KEY)
def test_the_dashboard_shows_each_smpp_connection_its_binds_and_what_waits(client, seeded,
                                                                           smsc, clock):
    with running(seeded, smsc.port):
        wait_until(lambda: by_row(dashboard(client)["connections-table"]).get("default",
                                                                            [""])[0] == "1",
                   what="the bind on the dashboard")
        [binds, window, tps, throttled, waiting] = by_row(
            dashboard(client)["connections-table"])["default"]
        assert (binds, window, throttled, waiting) == ("1", "0", "0", "—")
    # no bind now, and an SMS routed to it waits: the row says so
    order(client, RICH)
    Worker(seeded).relay()  # routed to "default", which nothing reads now
    clock.advance(seconds=90)
    assert by_row(dashboard(client)["connections-table"])["default"] == [
        "0", "0", "0.0", "0", "90 s"]


def test_without_smpp_the_dashboard_has_no_connections_table(client):
    assert "connections-table" not in dashboard(client)
