"""The local demo (``/demo``): the reference TV app beside a phone on the built-in SMSC.

The browser tests play it in real Chromium as a newcomer would, with the keyboard only, while
every SMS travels over SMPP between the service and the SMSC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from gateway.backend import apps, pages, seed
from gateway.context import Gateway, services
from gateway.domain.texts import CATALOGUE
from gateway.web import demo
from smpp.simulator import Smsc
from tests.browser import live_server
from tests.conftest import FakeClock, tv_key
from tests.smpp_helpers import running

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp")

TV = "tv-demo"
BOUND = "13800138000"  # w-1001: the wallet pays
CARD = "13900139000"  # w-1002: the wallet is short, the linked card pays
POOR = "13700137000"  # w-1003: too little everywhere
UNBOUND = "13600136000"
NOT_LISTED = "13500135000"  # bound to no wallet, and not in the phone's list
ZONE = "Asia/Shanghai"  # the service's TIMEZONE (its default)
ELSEWHERE = "America/Los_Angeles"  # the browser's, in the time zone test
KEYPAD = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "ok"]  # 3 columns


@pytest.fixture
def demo_data(gw: Gateway) -> Gateway:
    """What ``python app.py`` loads at its first start."""
    with gw.db.transaction() as session:
        seed.load_seed(session, seed.DEMO_FILE, gw.settings.PHONE_COUNTRIES, gw.clock())
    return gw


@pytest.fixture
def demo_app(app: Flask, demo_data: Gateway, smsc: Smsc) -> Flask:
    admin_key = pages.demo_key(services(app), "local-admin", apps.ADMIN)
    demo.enable(app, smsc, demo.LocalKeys(tv=tv_key(app), admin=admin_key))
    return app


@pytest.fixture
def demo_url(demo_app: Flask, smsc: Smsc) -> Iterator[str]:
    """The demo served on a free port, with the relay and an SMPP worker bound to the SMSC."""
    gw: Gateway = services(demo_app)
    with running(gw, smsc.port), live_server(demo_app) as base:
        yield f"{base}/demo"


# --- the page and the phone's endpoints -----------------------------------------------------


def test_without_a_built_in_smsc_there_is_no_demo(client, demo_data):
    assert client.get("/demo").status_code == 404
    assert client.get("/demo/phones/13800138000/messages").status_code == 404
    assert client.get("/").get_json()["packages"] == "/api/v1/packages"
    tv = client.get("/tv")  # the reference TV app is served everywhere
    assert tv.status_code == 200 and "data-tv-app" in tv.get_data(as_text=True)


def test_the_demo_page_lists_the_demo_data(demo_app):
    client = demo_app.test_client()
    assert client.get("/").headers["Location"] == "/demo"
    page = client.get("/demo")
    text = page.get_data(as_text=True)
    for expected in ("13800138000", "the wallet pays", "13900139000",
                     "the wallet is short: the linked card pays", "13700137000",
                     "too little everywhere: insufficient_funds", "w-1004", "654321",
                     "13600136000 or any other mobile number"):
        assert expected in text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "<script>" not in text  # scripts only from files


def test_the_phone_refuses_bad_numbers_and_texts_and_sends_nothing(demo_app, smsc):
    client = demo_app.test_client()
    bad_number = client.post("/demo/phones/12345/reply", json={"text": "hi"})
    assert bad_number.status_code == 400 and bad_number.get_json()["code"] == "invalid_phone"
    for body in ({"text": ""}, {"text": "x" * 701}, {"text": 5}, {}):
        answer = client.post(f"/demo/phones/{BOUND}/reply", json=body)
        assert answer.status_code == 400 and answer.get_json()["code"] == "invalid_text"
    assert client.post(f"/demo/phones/{BOUND}/reply", data="text=hi").status_code == 400
    assert smsc.mo_acknowledged == 0 and smsc.phones() == []
    assert client.get(f"/demo/phones/{BOUND}/messages").get_json() == {
        "phone": "86" + BOUND, "messages": [], "last_code": None}


# --- in the browser, keyboard only -----------------------------------------------------------


def focused(page) -> str:
    return page.evaluate("document.activeElement.dataset.key || document.activeElement.id || "
                         "document.activeElement.textContent")


def press_on_keypad(page, key: str) -> None:
    """Move to ``key`` on the on-screen keypad with the arrow keys, and press OK."""
    here, there = KEYPAD.index(focused(page)), KEYPAD.index(key)
    rows, columns = there // 3 - here // 3, there % 3 - here % 3
    for _ in range(abs(rows)):
        page.keyboard.press("ArrowDown" if rows > 0 else "ArrowUp")
    for _ in range(abs(columns)):
        page.keyboard.press("ArrowRight" if columns > 0 else "ArrowLeft")
    assert focused(page) == key
    page.keyboard.press("Enter")


def open_demo(browser, url: str, timezone_id: str | None = None):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN",
                                  timezone_id=timezone_id)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector(".tile:focus")  # the TV has the focus from the start
    return page, errors


def choose_package(page, name: str) -> None:
    tiles = page.locator(".tile .tile-name").all_inner_texts()
    for _ in range(tiles.index(name)):
        page.keyboard.press("ArrowRight")
    assert name in page.evaluate("document.activeElement.textContent")
    page.keyboard.press("Enter")
    page.wait_for_selector(".keypad")


def enter_number_with_arrows(page, number: str) -> None:
    for digit in number + "9":
        press_on_keypad(page, digit)
    assert page.inner_text(".phone-digits").replace(" ", "") == number  # 11 digits at most
    press_on_keypad(page, "del")
    page.keyboard.press("Backspace")  # the remote's back key deletes too
    press_on_keypad(page, number[-2])
    press_on_keypad(page, number[-1])
    assert page.inner_text(".phone-digits").replace(" ", "") == number
    press_on_keypad(page, "ok")


def tab_to(page, selector: str, key: str = "Tab") -> None:
    """Press Tab (or Shift+Tab) until the focus is on or in ``selector``."""
    for _ in range(12):
        if page.evaluate("s => !!document.activeElement.closest(s)", selector):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached {selector}")


def test_a_newcomer_pays_with_the_keyboard_only(browser, demo_url, output_dir):
    page, errors = open_demo(browser, demo_url)
    choose_package(page, "VIP 月卡")
    enter_number_with_arrows(page, BOUND)
    page.wait_for_selector(".order-message:has-text('验证码已发送至138****8000')")
    # the QR code, for those who rather scan: loaded with the key, drawn
    page.wait_for_function("document.querySelector('.qr img')?.naturalWidth > 0")

    # The phone: the code SMS came over SMPP into the inbox of the chosen number.
    assert page.input_value("#phone-number") == BOUND
    sms = page.wait_for_selector("#inbox li.received").inner_text()
    code = re.search(r"回复 (\d{6})", sms).group(1)
    tab_to(page, "#reply-text")
    page.keyboard.type(code)
    page.keyboard.press("Enter")  # a mobile-originated SMS, back over SMPP

    done = page.wait_for_selector(".tv-success .order-message")
    assert re.fullmatch(r"支付成功，服务已开通，有效期至\d{4}年\d{1,2}月\d{1,2}日",
                        done.inner_text())
    assert page.locator("#inbox li.sent").inner_text().endswith(code)
    page.screenshot(path=str(output_dir / "demo.png"))

    tab_to(page, "#tv", "Shift+Tab")  # back to the TV
    page.keyboard.press("Enter")  # 返回首页
    active = page.wait_for_selector(".entitlements li:has-text('VIP 月卡')").inner_text()
    assert re.search(r"有效期至 \d{4}年\d{1,2}月\d{1,2}日", active)
    assert errors == []


def test_a_short_wallet_fails_on_the_tv_which_offers_to_try_again(browser, demo_url):
    page, errors = open_demo(browser, demo_url)
    choose_package(page, "VIP 月卡")
    for digit in POOR:
        page.keyboard.press(digit)  # the remote's digit keys
    page.keyboard.press("ArrowDown")
    press_on_keypad(page, "ok")
    page.wait_for_selector(".order-message:has-text('支付失败：余额不足')")
    assert page.locator(".actions button").all_inner_texts() == ["重试", "返回首页"]
    assert focused(page) == "重试"
    page.keyboard.press("Backspace")
    page.wait_for_selector(".tile:focus")
    assert errors == []


def test_a_payment_link_opens_and_pays_inside_the_phone(browser, demo_url, output_dir):
    page, errors = open_demo(browser, demo_url)
    choose_package(page, "体育频道包月")
    for digit in UNBOUND:
        page.keyboard.press(digit)
    page.keyboard.press("ArrowDown")
    press_on_keypad(page, "ok")
    page.wait_for_selector(".order-message:has-text('支付链接已发送至136****6000')")

    assert page.input_value("#phone-number") == UNBOUND  # the phone follows the TV
    page.wait_for_selector("#inbox li.received a")
    page.keyboard.press("Tab")  # from the TV: the reply box
    assert focused(page) == "reply-text"
    page.keyboard.press("Shift+Tab")  # and back: the link in the inbox
    assert page.evaluate("document.activeElement.target") == "phone-browser"
    page.keyboard.press("Enter")
    wap = page.frame_locator("#phone-browser")
    wap.locator("input[name=account]").fill("w-1004")
    wap.locator("input[name=password]").fill("654321")
    wap.locator("input[name=password]").press("Enter")
    wap.locator("button.pay").click()
    page.wait_for_selector(".tv-success .order-message:has-text('支付成功')")
    page.screenshot(path=str(output_dir / "demo-wap.png"))
    assert errors == []


def digits(page) -> str:
    return page.inner_text(".phone-digits").replace(" ", "").replace("—", "")


def test_ok_submits_a_complete_number_and_back_deletes_before_it_leaves(browser, demo_url):
    page, errors = open_demo(browser, demo_url)
    choose_package(page, "VIP 月卡")
    page.keyboard.press("Backspace")  # an empty number: back to the packages
    page.wait_for_selector(".tile:focus")
    choose_package(page, "VIP 月卡")
    page.keyboard.type(CARD[:-1])  # the remote's digit keys
    assert focused(page) == "1"
    page.keyboard.press(CARD[-1])
    assert digits(page) == CARD and focused(page) == "ok"  # complete: OK is next
    page.keyboard.press("Backspace")  # deletes, and stays
    page.keyboard.press("Backspace")
    assert digits(page) == CARD[:-2] and page.locator(".keypad").is_visible()
    page.keyboard.type(CARD[-2:])
    assert focused(page) == "ok"
    page.keyboard.press("Enter")  # OK, once
    page.wait_for_selector(".order-message:has-text('验证码已发送至139****9000')")

    page.keyboard.press("Backspace")  # back on a pending order cancels it
    page.wait_for_selector(".tile:focus")
    choose_package(page, "VIP 月卡")  # a new order starts on an empty number
    assert digits(page) == ""
    page.keyboard.type("138")
    for left in ("13", "1", ""):
        page.keyboard.press("Backspace")
        assert digits(page) == left
    page.keyboard.press("Backspace")  # only now, on the empty number, back
    page.wait_for_selector(".tile:focus")
    assert errors == []


def test_the_phone_follows_the_number_the_tv_ordered_for(browser, demo_url):
    page, errors = open_demo(browser, demo_url)
    assert page.input_value("#phone-number") == BOUND  # the first of the list
    choose_package(page, "VIP 月卡")
    page.keyboard.type(CARD)
    page.keyboard.press("Enter")
    page.wait_for_selector(".order-message:has-text('验证码已发送至139****9000')")
    assert page.input_value("#phone-number") == CARD
    sms = page.wait_for_selector("#inbox li.received:has-text('回复')").inner_text()
    page.keyboard.press("Tab")  # from the TV, straight to the reply box
    assert focused(page) == "reply-text"
    page.keyboard.type(re.search(r"回复 (\d{6})", sms).group(1))
    page.keyboard.press("Enter")
    page.wait_for_selector(".tv-success .order-message:has-text('支付成功')")

    # a number the list does not have: added, and chosen
    tab_to(page, "#tv", "Shift+Tab")
    page.keyboard.press("Enter")  # 返回首页
    page.wait_for_selector(".tile:focus")
    choose_package(page, "体育频道包月")
    page.keyboard.type(NOT_LISTED)
    page.keyboard.press("Enter")
    page.wait_for_selector(".order-message:has-text('支付链接已发送至135****5000')")
    assert page.input_value("#phone-number") == NOT_LISTED
    page.wait_for_selector("#inbox li.received a")
    assert page.locator("#phone-number option").all_inner_texts()[-1] == NOT_LISTED
    page.keyboard.press("Tab")
    assert focused(page) == "reply-text"
    assert errors == []


def test_dates_and_times_are_in_the_service_time_zone(browser, demo_app, demo_url,
                                                       clock: FakeClock):
    """The browser is in Los Angeles, the service in Shanghai; at 18:00 UTC the two are on
    different days, so a date shown in the browser's zone would show."""
    evening = clock.now.replace(hour=18, minute=0, second=0)
    clock.now = evening if evening >= clock.now else evening + timedelta(days=1)
    page, errors = open_demo(browser, demo_url, timezone_id=ELSEWHERE)
    choose_package(page, "VIP 月卡")
    page.keyboard.type(BOUND)
    page.keyboard.press("Enter")
    sms = page.wait_for_selector("#inbox li.received").inner_text()
    page.keyboard.press("Tab")
    page.keyboard.type(re.search(r"回复 (\d{6})", sms).group(1))
    before = datetime.now(UTC)
    page.keyboard.press("Enter")
    done = page.wait_for_selector(".tv-success .order-message").inner_text()
    after = datetime.now(UTC)

    client = demo_app.test_client()
    entitlements = client.get(f"/api/v1/devices/{TV}/entitlements").get_json()["entitlements"]
    active_until = datetime.fromisoformat(entitlements[0]["active_until"])
    zh, en = CATALOGUE["zh-CN"].pages, CATALOGUE["en"].pages
    until = active_until.astimezone(ZoneInfo(ZONE)).strftime(zh["date"])
    assert until != active_until.astimezone(ZoneInfo(ELSEWHERE)).strftime(zh["date"])
    assert done == f"支付成功，服务已开通，有效期至{until}"
    page.wait_for_selector(f"#inbox li.received:has-text('有效期至{until}')")  # the SMS

    tab_to(page, "#tv", "Shift+Tab")
    page.keyboard.press("Enter")  # 返回首页
    active = page.wait_for_selector(".entitlements li").inner_text()
    assert active == f"VIP 月卡 · 有效期至 {until}"  # the TV's list: the same date

    # The phone: times in TIMEZONE, in the service's format, labels in its SMS language.
    def shown(moment: datetime) -> str:
        return moment.astimezone(ZoneInfo(ZONE)).strftime(zh["datetime"])

    inbox = client.get(f"/demo/phones/{BOUND}/messages").get_json()["messages"]
    assert page.locator("#inbox li.received .meta").all_inner_texts() == [
        f"{m['from']} · {shown(datetime.fromisoformat(m['received_at']))}" for m in inbox]
    assert page.locator("#inbox li.sent .meta").inner_text() in (
        f"我 · {shown(before)}", f"我 · {shown(after)}")
    assert page.get_attribute("#reply-text", "placeholder") == "短信内容"

    page.goto(f"{demo_url}?lang=en")  # the TV in English: the same day, in the English format
    active = page.wait_for_selector(".entitlements li").inner_text()
    local_until = active_until.astimezone(ZoneInfo(ZONE))
    assert active == f"VIP 月卡 · active until {local_until.strftime(en['date'])}"
    assert errors == []
