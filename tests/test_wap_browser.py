"""The payment page in real headless Chromium, at a phone's 360-px width.

A viewer opens the link from the SMS, signs in, pays by wallet or card, and sees the receipt;
a wrong password, an expired link and English are seen as the viewer sees them; with
JavaScript off, the time left counts down step by step and the page turns into the expired
page when it runs out. The service's clock is moved instead of waiting. Skipped, with the
reason, where Chromium is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import PHONE, live_server
from tests.conftest import UNBOUND, accounts, balance, order, stored_order
from tests.test_wap import binding_code_sent_to, bound_to, link_in_sms

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]
# The pages are served over plain HTTP here: the session cookie must not be Secure-only.
pytestmark = pytest.mark.settings(PUBLIC_BASE_URL="http://127.0.0.1")


@pytest.fixture
def site(app, seeded):
    with live_server(app) as base:
        yield base


@pytest.fixture
def link(client, seeded, site) -> str:
    """The link of the SMS sent to an unbound phone, on the live server."""
    assert order(client, UNBOUND, "vip_year").get_json()["status"] == "awaiting_wap"
    return site + link_in_sms(seeded, UNBOUND)


@pytest.fixture
def no_script(browser) -> Iterator[Page]:
    """A phone browser with JavaScript off."""
    context = browser.new_context(viewport=PHONE, locale="zh-CN", java_script_enabled=False)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, account: str, password: str) -> None:
    page.fill("#account", account)
    page.fill("#password", password)
    page.click("button[type=submit]")


def fits_the_screen(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_pay_from_the_wallet_and_see_the_receipt(page, link, seeded, output_dir: Path):
    page.goto(link)
    assert page.inner_text("#item") == "VIP会员包年"
    assert page.inner_text("#amount") == "200.00元"
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=选择付款方式")
    assert page.is_checked("input[value=wallet]")
    page.screenshot(path=output_dir / "pay-360px.png", full_page=True)
    assert fits_the_screen(page)
    page.click("button.pay")
    page.wait_for_selector("h1.done")
    assert page.inner_text("h1") == "支付成功"
    assert page.inner_text("#paid-from") == "钱包余额"
    assert page.inner_text("#active-until")
    page.screenshot(path=output_dir / "receipt-360px.png", full_page=True)
    assert (output_dir / "pay-360px.png").stat().st_size > 0
    order_id = page.inner_text(".order-id")
    assert stored_order(seeded, order_id).status == "activated"
    assert balance(seeded, "wallet:w-rich") == 30000


def test_the_card_pays_when_the_wallet_is_short(page, link, seeded):
    page.goto(link)
    sign_in(page, "13900139000", "246802")  # w-card, by its bound phone: wallet 10.00
    page.wait_for_selector("text=选择付款方式")
    assert page.is_checked("input[value=card]")
    assert "余额不足" in page.inner_text("label.short")
    page.click("button.pay")
    page.wait_for_selector("h1.done")
    assert page.inner_text("#paid-from") == "CMB银行卡，尾号4321"
    assert balance(seeded, "card:w-card") == 80000


def test_a_wrong_password_says_so_without_telling_whether_the_account_exists(page, link,
                                                                            seeded):
    page.goto(link)
    sign_in(page, "w-rich", "999999")
    assert page.inner_text("[role=alert]") == "钱包账号或支付密码错误。"
    sign_in(page, "w-nobody", "999999")
    assert page.inner_text("[role=alert]") == "钱包账号或支付密码错误。"
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=选择付款方式")


def test_binding_the_phone_with_the_code_it_got(page, link, seeded, output_dir: Path):
    page.goto(link)
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=选择付款方式")
    page.check("input[name=bind]")
    page.click("button.pay")
    page.wait_for_selector("h1.done")
    assert "验证码已发送至136****6000" in page.inner_text("label[for=bind-code]")
    page.screenshot(path=output_dir / "receipt-binding-360px.png", full_page=True)
    assert fits_the_screen(page)
    page.fill("#bind-code", binding_code_sent_to(seeded, UNBOUND))
    page.click("form.card button[type=submit]")
    page.wait_for_selector("#bind-result")
    assert page.inner_text("#bind-result") == "已绑定，下次可用此手机短信确认支付。"
    assert bound_to(seeded, UNBOUND) == "w-rich"


def test_an_expired_link_says_so(page, link, clock):
    clock.advance(minutes=16)
    response = page.goto(link)
    assert response is not None and response.status == 410
    assert page.inner_text("h1") == "链接已过期"
    assert "未扣款" in page.inner_text("body")


def test_the_whole_payment_in_english(page, link, seeded, output_dir: Path):
    page.goto(link + "?lang=en")
    assert page.inner_text("h1") == "Pay for your order"
    sign_in(page, "w-rich", "000000")
    assert page.inner_text("[role=alert]") == "The wallet account or the payment password is wrong."
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=Choose how to pay")
    page.screenshot(path=output_dir / "pay-360px-en.png", full_page=True)
    assert fits_the_screen(page)
    page.check("input[value=card]")
    page.click("button.pay")
    page.wait_for_selector("h1.done")
    assert page.inner_text("h1") == "Payment complete"
    assert page.inner_text("#paid-from") == "ICBC card ending 6789"
    page.goto(link + "?lang=en")  # the paid link, opened again
    assert page.inner_text("h1") == "Payment complete"
    page.goto(link.rsplit("/", 1)[0] + "/" + "A" * 32 + "?lang=en")
    assert page.inner_text("h1") == "Link not found"


def test_an_expired_link_in_english(page, link, clock):
    clock.advance(minutes=16)
    page.goto(link + "?lang=en")
    assert page.inner_text("h1") == "This link has expired"
    assert "nothing was charged" in page.inner_text("body")


def test_pays_with_javascript_off(browser, link, seeded):
    context = browser.new_context(viewport=PHONE, locale="zh-CN", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(link)
        sign_in(page, "w-rich", "135790")
        page.wait_for_selector("text=选择付款方式")
        page.click("button.pay")
        page.wait_for_selector("h1.done")
    finally:
        context.close()
    assert balance(seeded, "wallet:w-rich") == 30000


def test_two_tabs_paying_at_once_pay_once(page, link, seeded):
    page.goto(link)
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=选择付款方式")
    other = page.context.new_page()  # same phone browser, same sign-in
    other.goto(link)
    other.wait_for_selector("text=选择付款方式")
    page.click("button.pay", no_wait_after=True)
    other.click("button.pay", no_wait_after=True)
    for tab in (page, other):
        tab.wait_for_selector("h1.done")
    order_id = page.inner_text(".order-id")
    assert stored_order(seeded, order_id).status == "activated"
    assert balance(seeded, "wallet:w-rich") == 30000
    assert balance(seeded, "merchant:CNY") == 20000


def test_the_time_left_counts_down_and_the_page_closes_itself_without_javascript(
        no_script, link, clock, output_dir: Path):
    page = no_script
    page.goto(link)
    assert page.inner_text("#time-left").startswith("剩余15分钟，")
    assert page.get_attribute("#time-left", "datetime").endswith("+08:00")
    page.screenshot(path=output_dir / "time-left-360px.png", full_page=True)
    assert fits_the_screen(page)
    clock.advance(minutes=6)
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=选择付款方式")
    assert page.inner_text("#time-left").startswith("剩余9分钟，")

    clock.advance(minutes=8, seconds=59)
    page.reload()
    assert page.inner_text("#time-left").startswith("剩余1分钟，")
    clock.advance(seconds=1)  # the link lapses; the viewer does nothing
    # The page's <meta http-equiv=refresh> (2 s here) brings the expired page, with no script.
    page.wait_for_selector("h1:text-is('链接已过期')")
    assert "未扣款" in page.inner_text("body") and "请在电视上重新下单" in page.inner_text("body")
    assert page.locator("#time-left").count() == 0
    page.screenshot(path=output_dir / "expired-360px.png", full_page=True)
    assert fits_the_screen(page)


def test_paying_after_the_link_lapsed_shows_the_expired_page_and_moves_no_money(
        no_script, link, seeded, clock):
    page = no_script
    page.goto(link)
    sign_in(page, "w-rich", "135790")
    page.wait_for_selector("text=选择付款方式")
    before = accounts(seeded)
    clock.advance(minutes=15)  # the page stays open past its link; no worker runs here
    with page.expect_navigation() as answer:
        page.click("button.pay")
    assert answer.value is not None and answer.value.status == 410
    assert page.inner_text("h1") == "链接已过期"
    assert accounts(seeded) == before
