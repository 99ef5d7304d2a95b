"""The payment page over HTTP: sign-in, sources, binding, refusals, closed links, languages.

The same flows run in a real browser in ``test_wap_browser.py``; here each refusal and each
state of a link is checked one by one, with the service's clock moved instead of waiting.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from gateway.store.models import Entitlement, JournalEntry, PhoneBinding, Wallet
from tests.conftest import (
    POOR,
    RICH,
    UNBOUND,
    accounts,
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

    def __init__(self, client: FlaskClient, path: str, lang: str | None = None,
                 address: str = "127.0.0.1") -> None:
        self.client, self.path = client, path
        self.query = f"?lang={lang}" if lang else ""
        self.environ = {"REMOTE_ADDR": address}
        self.token = ""  # the last CSRF token of the receipt's binding form

    def open(self):
        return self.client.get(self.path + self.query, environ_base=self.environ)

    def _csrf(self) -> str:
        found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                          self.open().get_data(as_text=True))
        assert found, "the page has no form"
        return found.group(1)

    def sign_in(self, account: str, password: str):
        return self.client.post(f"{self.path}/sign-in{self.query}", environ_base=self.environ,
                                data={"csrf_token": self._csrf(), "account": account,
                                      "password": password})

    def pay(self, source: str, bind: bool = False):
        data = {"csrf_token": self._csrf(), "source": source}
        if bind:
            data["bind"] = "y"
        return self.client.post(f"{self.path}/pay{self.query}", data=data,
                                environ_base=self.environ)


def alert_of(response) -> str:
    """The error the page shows."""
    found = re.search(r'role="alert">([^<]*)<', response.get_data(as_text=True))
    return html.unescape(found.group(1)) if found else ""


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


@pytest.mark.settings(WAP_LINK_TTL_SECONDS=3600)
def test_a_guesser_waits_longer_and_longer_and_the_owner_is_not_locked_out(
        client, seeded, clock, unbound_order):
    guesser = PayPage(client, link_in_sms(seeded, UNBOUND), address="203.0.113.9")
    for _ in range(5):
        assert alert_of(guesser.sign_in("w-rich", "000000")) == "钱包账号或支付密码错误。"
    for wait in (30, 60):  # seconds, doubling after each wrong password
        clock.advance(seconds=wait - 1)
        waiting = guesser.sign_in("w-rich", "135790")  # even the right one: it must wait
        assert waiting.status_code == 429 and "登录尝试过多" in alert_of(waiting)
        clock.advance(seconds=1)
        assert guesser.sign_in("w-rich", "000000").status_code == 401
    # The owner, on the link of an order of her own, from her own phone:
    order(client, "+8613500135000", "vip_month", device="tv-2")
    owner = PayPage(client, link_in_sms(seeded, "+8613500135000"), address="198.51.100.7")
    assert owner.sign_in("w-rich", "135790").status_code == 303
    assert owner.pay("wallet").status_code == 303
    with seeded.db.read() as session:
        assert session.get(Wallet, "w-rich").web_failed_attempts == 0


def test_a_right_password_clears_the_clients_waits(client, seeded, clock, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    for _ in range(4):
        page.sign_in("w-rich", "000000")
    assert page.sign_in("w-rich", "135790").status_code == 303
    for _ in range(4):  # four more wrong ones are free again
        assert page.sign_in("w-rich", "000000").status_code == 401


def test_an_unknown_account_and_a_wrong_password_get_the_same_answer(client, seeded, clock,
                                                                    unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    unknown = page.sign_in("w-nobody", "123456")
    wrong = page.sign_in("w-rich", "123456")
    by_phone = page.sign_in("13800138000", "123456")
    assert unknown.status_code == wrong.status_code == by_phone.status_code == 401
    assert alert_of(unknown) == alert_of(wrong) == alert_of(by_phone) == "钱包账号或支付密码错误。"
    for _ in range(4):  # an unknown account is slowed as a known one is
        page.sign_in("w-nobody", "123456")
    assert page.sign_in("w-nobody", "123456").status_code == 429
    empty = page.sign_in("", "")
    assert empty.status_code == 400 and "请输入钱包账号和支付密码" in text_of(empty)
    huge = page.sign_in("w" * 5000, "1" * 5000)
    assert huge.status_code == 400
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"


@pytest.mark.settings(WAP_PASSWORD_LOCK_AFTER=5, WAP_LINK_TTL_SECONDS=3600)
def test_wrong_passwords_in_a_row_stop_page_payments_until_the_operator_unlocks(
        app, client, seeded, unbound_order):
    link = link_in_sms(seeded, UNBOUND)
    for n in range(5):  # from five addresses: no client waits, the wallet counts them all
        assert PayPage(client, link, address=f"203.0.113.{n}").sign_in(
            "w-rich", "000000").status_code == 401
    [notice] = sms_to(seeded, RICH, "notice")  # the owner hears of it on her bound phone
    assert "暂停网页支付" in notice.body and "短信验证码支付不受影响" in notice.body
    owner = PayPage(client, link, address="198.51.100.7")
    stopped = owner.sign_in("w-rich", "135790")
    assert stopped.status_code == 401 and alert_of(stopped) == "钱包账号或支付密码错误。"

    created = order(client, RICH, "vip_month", device="tv-9").get_json()  # codes still pay
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert stored_order(seeded, created["id"]).status == "activated"

    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["wallets", "unlock", "w-nobody"])
    assert unknown.exit_code != 0 and "no wallet w-nobody" in unknown.output
    unlocked = runner.invoke(args=["wallets", "unlock", "w-rich"])
    assert unlocked.exit_code == 0 and "w-rich: page payments unlocked" in unlocked.output
    assert owner.sign_in("w-rich", "135790").status_code == 303
    assert owner.pay("wallet").status_code == 303
    assert stored_order(seeded, unbound_order["id"]).status == "activated"


def test_one_address_may_try_thirty_sign_ins_an_hour(client, seeded):
    pages = []
    for n in range(4):  # four links: each allows ten sign-ins a quarter hour
        phone = f"+861350013500{n}"
        order(client, phone, "vip_month", device=f"tv-{n}")
        pages.append(PayPage(client, link_in_sms(seeded, phone), address="203.0.113.7"))
    for n in range(30):
        assert pages[n // 10].sign_in(f"w-nobody-{n}", "123456").status_code == 401
    limited = pages[3].sign_in("w-nobody-x", "123456")
    assert limited.status_code == 429 and "登录尝试过多" in alert_of(limited)
    elsewhere = PayPage(client, pages[3].path, address="198.51.100.7")
    assert elsewhere.sign_in("w-nobody-y", "123456").status_code == 401


def test_one_link_allows_ten_sign_ins_per_quarter_hour(client, seeded, unbound_order):
    link = link_in_sms(seeded, UNBOUND)
    for n in range(10):
        page = PayPage(client, link, address=f"203.0.113.{n}")
        assert page.sign_in(f"w-nobody-{n}", "123456").status_code == 401
    limited = PayPage(client, link, address="198.51.100.7").sign_in("w-rich", "135790")
    assert limited.status_code == 429 and "登录尝试过多" in text_of(limited)


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


def binding_code_sent_to(gw, phone: str) -> str:
    return re.search(r"验证码 (\d{6})", sms_to(gw, phone, "bind")[-1].body).group(1)


def bind_on_receipt(page: PayPage, code: str):
    """Type ``code`` in the receipt's binding form (with the form's token from when the
    receipt last showed the form)."""
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      page.open().get_data(as_text=True))
    page.token = found.group(1) if found else page.token
    return page.client.post(f"{page.path}/bind", data={"csrf_token": page.token, "code": code},
                            environ_base=page.environ)


def bound_to(gw, phone: str) -> str | None:
    with gw.db.read() as session:
        binding = session.get(PhoneBinding, phone)
        return binding.wallet_id if binding else None


def test_binding_the_phone_takes_the_code_sent_to_it(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    assert "下次使用此手机（136****6000）短信确认支付" in text_of(page.open())
    page.pay("wallet", bind=True)
    assert stored_order(seeded, unbound_order["id"]).status == "activated"
    assert bound_to(seeded, UNBOUND) is None  # not until the phone shows it is there
    receipt = text_of(page.open())
    assert "验证码已发送至136****6000" in receipt
    bound = bind_on_receipt(page, binding_code_sent_to(seeded, UNBOUND))
    assert bound.status_code == 200 and "已绑定" in text_of(bound)
    assert bound_to(seeded, UNBOUND) == "w-rich"
    assert "验证码已发送" not in text_of(page.open())
    # The next order from this phone is confirmed by SMS code, from the same wallet.
    assert order(client, UNBOUND, "vip_month").get_json()["status"] == "awaiting_code"


def test_paying_someones_link_does_not_bind_their_phone(client, seeded, unbound_order):
    """A stranger holding the link pays it from their own wallet and asks to bind: the code
    goes to the phone, which they do not hold, so five guesses later nothing is bound."""
    page = PayPage(client, link_in_sms(seeded, UNBOUND), address="203.0.113.9")
    page.sign_in("w-rich", "135790")
    page.pay("wallet", bind=True)
    right = binding_code_sent_to(seeded, UNBOUND)
    wrong = "000000" if right != "000000" else "111111"
    for left in (4, 3, 2, 1):
        refused = bind_on_receipt(page, wrong)
        assert refused.status_code == 400 and f"还可以尝试{left}次" in alert_of(refused)
    last = bind_on_receipt(page, wrong)
    assert last.status_code == 400 and "绑定验证码已失效" in alert_of(last)
    late = bind_on_receipt(page, right)  # even the right code, now
    assert late.status_code == 400 and "绑定验证码已失效" in alert_of(late)
    assert bound_to(seeded, UNBOUND) is None
    assert order(client, UNBOUND, "vip_month").get_json()["status"] == "awaiting_wap"


def test_a_binding_code_lapses_after_ten_minutes(client, seeded, clock, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    page.pay("wallet", bind=True)
    bind_on_receipt(page, "000000" if binding_code_sent_to(seeded, UNBOUND) != "000000" else "1")
    clock.advance(minutes=10, seconds=1)
    assert "验证码已发送" not in text_of(page.open())
    late = bind_on_receipt(page, binding_code_sent_to(seeded, UNBOUND))
    assert late.status_code == 400 and bound_to(seeded, UNBOUND) is None


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


# --- the time left, and after it ---------------------------------------------------------------


def time_left(response) -> tuple[str, str, int, str]:
    """What the page says of the time left, its ``<time datetime>``, and after how many seconds
    the page reloads itself (its ``<meta http-equiv=refresh>``) onto which address."""
    page = response.get_data(as_text=True)
    shown = re.search(r'<time id="time-left" datetime="([^"]+)">([^<]*)</time>', page)
    refresh = re.search(r'<meta http-equiv="refresh" content="(\d+); url=([^"]+)">', page)
    assert shown and refresh, "the page shows no time left"
    return (html.unescape(shown.group(2)), shown.group(1), int(refresh.group(1)),
            html.unescape(refresh.group(2)))


def local_expiry(gw, order_id: str):
    return stored_order(gw, order_id).expires_at.astimezone(ZoneInfo(gw.settings.TIMEZONE))


@pytest.mark.settings(WAP_LINK_TTL_SECONDS=900, TIMEZONE="Asia/Shanghai")
def test_the_time_left_counts_down_at_each_step(client, seeded, clock, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    until = local_expiry(seeded, unbound_order["id"])
    text, moment, refresh, reload_to = time_left(page.open())
    assert text == f"剩余15分钟，{until:%H:%M}前有效"
    assert moment == until.isoformat(timespec="seconds") and moment.endswith("+08:00")
    assert refresh == 901 and reload_to == page.path  # reloads once the link has run out

    clock.advance(minutes=3, seconds=30)
    assert time_left(page.open())[0] == f"剩余12分钟，{until:%H:%M}前有效"
    signed_in = page.sign_in("w-rich", "135790")  # the next step shows it true again
    assert signed_in.status_code == 303
    clock.advance(minutes=5)
    text, _, refresh, _ = time_left(page.open())
    assert text == f"剩余7分钟，{until:%H:%M}前有效" and "选择付款方式" in text_of(page.open())
    assert refresh == 6 * 60 + 31
    refused = page.pay("nowhere")  # a refused step (a page answering a POST) shows it too
    assert refused.status_code == 409 and time_left(refused)[0].startswith("剩余7分钟")
    assert time_left(refused)[3] == page.path  # and reloads by GET

    clock.advance(minutes=6, seconds=1)  # 29 s left
    text, _, refresh, reload_to = time_left(PayPage(client, page.path, lang="en").open())
    assert text == f"1 min left (until {until:%H:%M})" and refresh == 30
    assert reload_to == f"{page.path}?lang=en"


@pytest.mark.settings(WAP_LINK_TTL_SECONDS=86400)
def test_a_link_that_lasts_past_midnight_shows_the_date_too(client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND), lang="en")
    until = local_expiry(seeded, unbound_order["id"])
    assert time_left(page.open())[0] == f"1440 min left (until {until:%Y-%m-%d %H:%M})"


def test_after_the_link_runs_out_every_form_gets_the_expired_page_and_nothing_changes(
        client, seeded, clock, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    page.sign_in("w-rich", "135790")
    csrf = page._csrf()  # the forms as the viewer left them open
    pending_bind = client.post(f"{page.path}/bind", data={"csrf_token": csrf, "code": "123456"})
    assert pending_bind.status_code == 303  # no receipt to bind on: back to the page
    before = accounts(seeded)

    expires_at = stored_order(seeded, unbound_order["id"]).expires_at
    clock.advance(seconds=(expires_at - clock.now).total_seconds())  # to the second it lapses
    # No worker has run: the order is still awaiting its link, but the page goes by the clock.
    assert stored_order(seeded, unbound_order["id"]).status == "awaiting_wap"
    for action, data in (("pay", {"source": "wallet"}),
                         ("sign-in", {"account": "w-rich", "password": "135790"}),
                         ("sign-out", {}), ("bind", {"code": "123456"})):
        answer = client.post(f"{page.path}/{action}", data={"csrf_token": csrf, **data},
                             follow_redirects=True)
        assert answer.status_code == 410, action
        shown = text_of(answer)
        assert "链接已过期" in shown and "请在电视上重新下单" in shown and "支付成功" not in shown
    shown = page.open()
    assert shown.status_code == 410 and "链接已过期" in text_of(shown)
    assert 'http-equiv="refresh"' not in shown.get_data(as_text=True)
    assert "Please order again on the TV" in text_of(PayPage(client, page.path, "en").open())
    assert accounts(seeded) == before and paid_entries(seeded, unbound_order["id"]) == 0
    assert stored_order(seeded, unbound_order["id"]).status == "expired"
    assert not sms_to(seeded, UNBOUND, "confirmed")


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
    assert "The wallet account or the payment password is wrong." in text_of(wrong)


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


# --- headers, tokens and the cookie -------------------------------------------------------------


def session_of(client: FlaskClient, app) -> dict:
    """What the page's session cookie says, read as anyone holding the phone could (it is signed
    by the service, not encrypted)."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    return app.session_interface.get_signing_serializer(app).loads(cookie.value)


def test_the_cookie_of_a_signed_in_page_names_neither_wallet_nor_order(
        app, client, seeded, unbound_order):
    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    assert page.sign_in("w-rich", "135790").status_code == 303
    said = repr(session_of(client, app))
    assert "w-rich" not in said and unbound_order["id"] not in said
    assert page.pay("wallet").status_code == 303  # the sign-in still holds, kept server-side
    assert stored_order(seeded, unbound_order["id"]).status == "activated"


def test_a_sign_in_holds_for_its_own_order_only(client, seeded, unbound_order):
    first = PayPage(client, link_in_sms(seeded, UNBOUND))
    first.sign_in("w-rich", "135790")
    order(client, "+8613500135000", "vip_month", device="tv-2")
    other = PayPage(client, link_in_sms(seeded, "+8613500135000"))
    assert other.pay("wallet").status_code == 401  # the same browser, another order's page


class _Later:
    """``time`` as itsdangerous reads it (the clock of CSRF tokens), ``seconds`` ahead."""

    def __init__(self, seconds: float) -> None:
        import time

        self.seconds, self._time = seconds, time.time

    def time(self) -> float:
        return self._time() + self.seconds


@pytest.mark.settings(WAP_LINK_TTL_SECONDS=900)
def test_a_form_of_the_page_lasts_as_long_as_the_link(client, seeded, unbound_order,
                                                      monkeypatch):
    import itsdangerous.timed

    page = PayPage(client, link_in_sms(seeded, UNBOUND))
    token = page._csrf()
    monkeypatch.setattr(itsdangerous.timed, "time", _Later(899))
    taken = client.post(f"{page.path}/sign-in", data={"csrf_token": token, "account": "w-rich",
                                                      "password": "135790"})
    assert taken.status_code == 303
    monkeypatch.setattr(itsdangerous.timed, "time", _Later(901))
    stale = client.post(f"{page.path}/sign-in", data={"csrf_token": token, "account": "w-rich",
                                                      "password": "135790"})
    assert stale.status_code == 400 and "页面已过期" in text_of(stale)


def test_https_answers_tell_browsers_to_stay_on_https(client, seeded, unbound_order):
    for path in (link_in_sms(seeded, UNBOUND), "/api/v1/packages", "/healthz", "/admin"):
        answer = client.get(path)
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000", path


@pytest.mark.settings(PUBLIC_BASE_URL="http://127.0.0.1:5000")
def test_no_hsts_where_the_service_is_not_on_https(client, seeded, unbound_order):
    assert "Strict-Transport-Security" not in client.get(link_in_sms(seeded, UNBOUND)).headers
