"""The payment page over HTTP: sign-in, sources, binding, refusals, closed links, languages.

The same flows run in a real browser in ``test_wap_browser.py``; here each refusal and each
state of a link is checked one by one, with the service's clock moved instead of waiting.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from gateway.store.models import Entitlement, JournalEntry, PhoneBinding, Wallet
from tests.conftest import (
    POOR,
    RICH,
    UNBOUND,
    balance,
    code_sent_to,
    order,
    reply,
    sms_to,
    stored_order,
)


def link_in_sms(gw, phone: str) -> str:
    """The path of the payment link in the newest link SMS to ``phone``."""
    body = sms_to(gw, phone, "link")[-1].body
    return urlsplit(re.search(r"https?://\S+", body).group(0)).path


def text_of(response) -> str:
    """What the viewer reads: the page without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


class PayPage:
    """A viewer on one payment link, with the cookies of one phone browser."""

    def __init__(self, client: FlaskClient, path: str, lang: str | None = None) -> None:
        self.client, self.path = client, path
        self.query = f"?lang={lang}" if lang else ""

    def open(self):
        return self.client.get(self.path + self.query)

    def _csrf(self) -> str:
        found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                          self.open().get_data(as_text=True))
        assert found, "the page has no form"
        return found.group(1)

    def sign_in(self, account: str, password: str):
        return self.client.post(f"{self.path}/sign-in{self.query}", data={
            "csrf_token": self._csrf(), "account": account, "password": password})

    def pay(self, source: str, bind: bool = False):
        data = {"csrf_token": self._csrf(), "source": source}
        if bind:
            data["bind"] = "y"
        return self.client.post(f"{self.path}/pay{self.query}", data=data)


def paid_entries(gw, order_id: str) -> int:
    with gw.db.read() as session:
        return session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.order_id == order_id, JournalEntry.kind.in_(("capture", "charge"))))


@pytest.fixture
def unbound_order(client, seeded):
    response = order(client, UNBOUND, "vip_year")
    assert response.get_json()["status"] == "awaiting_wap"
    return response.get_json()


def test_the_link_shows_the_order_then_pays_from_the_wallet(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    summary = page.open()
    assert summary.status_code == 200
    shown = text_of(summary)
    for expected in ("VIP会员包年", "200.00元", "TV Pay", "136****6000", "15分钟"):
        assert expected in shown
    assert "13600136000" not in summary.get_data(as_text=True)

    signed_in = page.sign_in("w-rich", "135790")
    assert signed_in.status_code == 303
    choice = text_of(page.open())
    assert "钱包余额（500.00元）" in choice and "ICBC银行卡，尾号6789（1000.00元）" in choice

    paid = page.pay("wallet")
    assert paid.status_code == 303
    receipt = text_of(page.open())
    assert "支付成功" in receipt and "钱包余额" in receipt and unbound_order["id"] in receipt
    assert balance(seeded, "wallet:w-rich") == 30000
    assert balance(seeded, "merchant:CNY") == 20000
    tv_view = client.get(f"/api/v1/orders/{unbound_order['id']}").get_json()
    assert tv_view["status"] == "activated"
    with seeded.db.read() as session:
        assert session.get(Entitlement, ("tv-42", "vip_year")) is not None
    assert "支付成功" in sms_to(seeded, UNBOUND, "confirmed")[-1].body


def test_a_bound_phone_is_an_account_too_and_the_card_pays_when_the_wallet_is_short(
        client, seeded):
    created = order(client, UNBOUND, "vip_year").get_json()
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    assert page.sign_in("13900139000", "246802").status_code == 303  # w-card's bound phone
    choice = page.open().get_data(as_text=True)
    # The wallet (10.00) cannot pay 200.00: the card is chosen and the wallet marked short.
    assert re.search(r'value="card"\s+checked', choice)
    assert "余额不足" in text_of(page.open())
    assert page.pay("card").status_code == 303
    assert balance(seeded, "card:w-card") == 80000
    assert balance(seeded, "wallet:w-card") == 1000
    assert "CMB银行卡，尾号4321" in text_of(page.open())
    assert stored_order(seeded, created["id"]).paid_from == "card:w-card"


def test_a_source_that_cannot_pay_is_refused_and_nothing_changes(client, seeded,
                                                                  unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-poor", "112233")
    refused = page.pay("card")  # 10.00 on the card, 200.00 to pay
    assert refused.status_code == 409
    assert "所选付款方式余额不足" in text_of(refused)
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"
    assert balance(seeded, "card:w-poor") == 1000 and balance(seeded, "merchant:CNY") == 0
    assert page.pay("bank-account").status_code == 409  # no such source
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"


@pytest.mark.settings(WAP_LINK_TTL_SECONDS=3600)  # the link outlives the lock
def test_wrong_passwords_count_down_then_lock_the_wallet_for_fifteen_minutes(
        client, seeded, clock, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    for left in (4, 3, 2, 1):
        wrong = page.sign_in("w-rich", "000000")
        assert wrong.status_code == 401
        assert f"支付密码错误，还可以尝试{left}次" in text_of(wrong)
    locked = page.sign_in("w-rich", "000000")
    assert locked.status_code == 429 and "已锁定" in text_of(locked)
    # Locked: even the right password is refused, until fifteen minutes have passed.
    assert page.sign_in("w-rich", "135790").status_code == 429
    clock.advance(minutes=14, seconds=59)
    assert page.sign_in("w-rich", "135790").status_code == 429
    clock.advance(seconds=2)
    assert page.sign_in("w-rich", "135790").status_code == 303
    with seeded.db.read() as session:
        wallet = session.get(Wallet, "w-rich")
        assert wallet.web_failed_attempts == 0 and wallet.web_locked_until is None


def test_a_right_password_resets_the_count(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    for _ in range(4):
        page.sign_in("w-rich", "000000")
    assert page.sign_in("w-rich", "135790").status_code == 303
    assert "还可以尝试4次" in text_of(page.sign_in("w-rich", "000000"))


def test_sign_in_refusals_are_plain_messages(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    unknown = page.sign_in("w-nobody", "123456")
    assert unknown.status_code == 401 and "没有找到这个钱包账号" in text_of(unknown)
    empty = page.sign_in("", "")
    assert empty.status_code == 400 and "请输入钱包账号和支付密码" in text_of(empty)
    huge = page.sign_in("w" * 5000, "1" * 5000)
    assert huge.status_code == 400
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"


def test_one_link_allows_ten_sign_ins_per_quarter_hour(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    for n in range(10):
        assert page.sign_in(f"w-nobody-{n}", "123456").status_code == 401
    limited = page.sign_in("w-rich", "135790")
    assert limited.status_code == 429 and "此链接的登录尝试过多" in text_of(limited)


def test_forms_without_their_csrf_token_change_nothing(client, seeded, unbound_order):
    path = link_in_sms(seeded, UNBOUND)
    forged = client.post(f"{path}/sign-in", data={"account": "w-rich", "password": "135790"})
    assert forged.status_code == 400 and "页面已过期" in text_of(forged)
    PayPage(client, path).sign_in("w-rich", "135790")
    forged = client.post(f"{path}/pay", data={"source": "wallet", "csrf_token": "forged"})
    assert forged.status_code == 400
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"
    assert balance(seeded, "wallet:w-rich") == 50000


def test_paying_without_signing_in_is_refused(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    refused = page.pay("wallet")
    assert refused.status_code == 401 and "登录已过期" in text_of(refused)
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"


@pytest.mark.settings(WAP_SIGN_IN_SECONDS=600)
def test_a_sign_in_lasts_ten_minutes(client, seeded, clock, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    clock.advance(minutes=10, seconds=1)
    assert page.pay("wallet").status_code == 401
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"


def test_binding_the_phone_sends_the_next_order_a_code(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    assert "下次使用此手机（136****6000）短信确认支付" in text_of(page.open())
    page.pay("wallet", bind=True)
    with seeded.db.read() as session:
        assert session.get(PhoneBinding, UNBOUND).wallet_id == "w-rich"
    # The next order from this phone is confirmed by SMS code, from the same wallet.
    assert order(client, UNBOUND, "vip_month").get_json()["status"] == "awaiting_code"


def test_binding_is_not_offered_for_a_bound_phone_and_never_rebinds_it(client, seeded):
    created = order(client, RICH, "vip_month").get_json()  # a code order has a page as well
    page = PayPage(client, urlsplit(created["payment_url"]).path)
    page.sign_in("w-card", "246802")
    assert "下次使用此手机" not in text_of(page.open())
    page.pay("card", bind=True)
    with seeded.db.read() as session:
        assert session.get(PhoneBinding, RICH).wallet_id == "w-rich"
    assert stored_order(seeded, created["id"]).status == "activated"


def test_a_code_order_paid_on_its_page_releases_the_hold_and_its_code(client, seeded):
    created = order(client, RICH, "vip_year").get_json()
    code = code_sent_to(seeded, RICH)
    assert balance(seeded, "wallet:w-rich") == 30000  # held
    page = PayPage(client, urlsplit(created["payment_url"]).path)
    page.sign_in("w-rich", "135790")
    page.pay("card")
    assert balance(seeded, "wallet:w-rich") == 50000  # the hold went back
    assert balance(seeded, "card:w-rich") == 80000
    assert balance(seeded, "holds:CNY") == 0 and balance(seeded, "merchant:CNY") == 20000
    assert "该验证码已使用" in reply_text(client, seeded, RICH, code)
    assert paid_entries(seeded, created["id"]) == 1


def reply_text(client, gw, phone: str, text: str) -> str:
    reply(client, phone, text)
    return sms_to(gw, phone)[-1].body


def test_paying_twice_in_a_row_pays_once(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    token = page._csrf()
    first = client.post(f"{page.path}/pay", data={"csrf_token": token, "source": "wallet"})
    again = client.post(f"{page.path}/pay", data={"csrf_token": token, "source": "wallet"})
    assert first.status_code == again.status_code == 303
    assert "支付成功" in text_of(page.open())
    assert paid_entries(seeded, unbound_order["id"]) == 1
    assert balance(seeded, "wallet:w-rich") == 30000


def test_expired_cancelled_unknown_and_paid_links_each_get_their_page(client, seeded, clock):
    expired = order(client, UNBOUND, "vip_year").get_json()
    clock.advance(minutes=16)
    page = client.get(urlsplit(expired["payment_url"]).path)
    assert page.status_code == 410 and "链接已过期" in text_of(page)
    assert stored_order(seeded, expired["id"]).status == "expired"

    cancelled = order(client, UNBOUND, "vip_month", device="tv-2").get_json()
    client.post(f"/api/v1/orders/{cancelled['id']}/cancel")
    page = client.get(urlsplit(cancelled["payment_url"]).path)
    assert page.status_code == 410 and "订单已取消" in text_of(page)

    failed = order(client, POOR, "vip_year", device="tv-3").get_json()  # insufficient funds
    page = client.get(urlsplit(failed["payment_url"]).path)
    assert page.status_code == 410 and "订单已关闭" in text_of(page)

    for unknown in ("/w/" + "A" * 32, "/w/short", "/w/" + "%00" * 40, "/w/x/y/z"):
        page = client.get(unknown)
        assert page.status_code == 404, unknown
        assert page.mimetype == "text/html" and "Traceback" not in page.get_data(as_text=True)


def test_a_paid_link_shows_its_receipt_again(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    page.pay("wallet")
    later = PayPage(client.application.test_client(), page.path).open()
    assert later.status_code == 200 and "支付成功" in text_of(later)
    assert "有效期至" in text_of(later)


def test_english_by_query_or_by_accept_language(client, seeded, unbound_order):
    path = link_in_sms(seeded, UNBOUND)
    assert "Pay for your order" in text_of(client.get(f"{path}?lang=en"))
    by_header = client.get(path, headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Pay for your order" in text_of(by_header) and "200.00 CNY" in text_of(by_header)
    assert "订单支付" in text_of(client.get(path, headers={"Accept-Language": "zh-CN,zh"}))
    page = PayPage(client, path, lang="en")
    wrong = page.sign_in("w-rich", "000000")
    assert "Wrong payment password. 4 tries left." in text_of(wrong)


def test_pages_forbid_scripts_framing_and_referrers(client, seeded, unbound_order):
    page = client.get(link_in_sms(seeded, UNBOUND))
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "<script" not in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"  # the demo's phone frames it
    assert "frame-ancestors 'self'" in policy
    assert page.headers["Cache-Control"] == "no-store"
    with client.get("/w/static/wap.css") as stylesheet:
        assert stylesheet.status_code == 200 and stylesheet.mimetype == "text/css"
