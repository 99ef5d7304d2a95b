"""Every SMS text the service sends, in zh-CN and en, in this one place."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.domain.money import Money

__all__ = ["CODE_MASK", "Texts"]

CODE_MASK = "******"

_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "code": "【{merchant}】您通过{source}支付{package}，金额{amount}，"
                "确认支付请回复 {code}（{minutes}分钟内有效）。",
        "link": "【{merchant}】请在{minutes}分钟内打开链接支付{package}（{amount}）：{url}",
        "confirmed": "【{merchant}】支付成功，{package}已开通，有效期至{until}。",
        "wrong_code": "【{merchant}】验证码错误，还可尝试{left}次。",
        "too_many_attempts": "【{merchant}】验证码错误次数过多，订单已关闭，未扣款。",
        "code_expired": "【{merchant}】验证码已过期，订单已关闭，未扣款。请在电视上重新下单。",
        "code_used": "【{merchant}】该验证码已使用，订单已支付。",
        "order_closed": "【{merchant}】该订单已关闭，未扣款。",
        "help": "【{merchant}】确认电视订单请回复6位验证码。指令：余额、账单、缴费、"
                "BIND 配对码（绑定电视）、UNBIND（解绑）、退订。",
        "bill_paid": "【{merchant}】缴费成功，已支付{amount}。",
        "pairing_code": "【{merchant}】您正在将手机与电视配对，验证码 {code}"
                        "（{minutes}分钟内有效）。",
        "balance": "【{merchant}】钱包余额{amount}。",
        "not_bound": "【{merchant}】本手机未绑定钱包。",
        "no_tv": "【{merchant}】本手机未绑定电视，请回复 BIND 加电视上显示的配对码。",
        "no_bills": "【{merchant}】您的电视没有待缴账单。",
        "bills": "【{merchant}】待缴账单：{lines}。回复“缴费”支付。",
        "bills_many": "【{merchant}】待缴账单：{lines}。回复“缴费 序号”支付。",
        "bill_line": "{number}.{description}{amount}",
        "more_bills": "等{count}笔",
        "no_such_bill": "【{merchant}】没有第{number}笔账单，请回复“账单”查看。",
        "try_later": "【{merchant}】操作太频繁，请稍后再试。",
        "insufficient_funds": "【{merchant}】钱包和银行卡余额不足，未扣款。",
        "paired": "【{merchant}】已绑定电视 {device}，今后可在电视上直接下单。",
        "bad_pairing_code": "【{merchant}】配对码无效或已过期，请在电视上重新获取。",
        "too_many_binds": "【{merchant}】尝试次数过多，请一小时后再试。",
        "unpaired": "【{merchant}】已解除{count}台电视的绑定。",
        "no_pairing": "【{merchant}】本手机没有绑定电视。",
        "stopped": "【{merchant}】您已退订本服务短信，回复 START 恢复。",
        "started": "【{merchant}】已恢复接收本服务短信。",
        "source_wallet": "钱包",
        "source_card": "尾号{last4}的{bank}银行卡",
        "date": "%Y年%m月%d日",
    },
    "en": {
        "code": "[{merchant}] Pay {amount} for {package} from {source}: reply {code} "
                "within {minutes} min.",
        "link": "[{merchant}] Pay {amount} for {package} within {minutes} min at {url}",
        "confirmed": "[{merchant}] Paid. {package} is active until {until}.",
        "wrong_code": "[{merchant}] Wrong code. {left} tries left.",
        "too_many_attempts": "[{merchant}] Too many wrong codes. The order is closed; "
                             "nothing was charged.",
        "code_expired": "[{merchant}] That code has expired; nothing was charged. "
                        "Please order again on the TV.",
        "code_used": "[{merchant}] That code was already used; the order is paid.",
        "order_closed": "[{merchant}] That order is closed; nothing was charged.",
        "help": "[{merchant}] Reply the 6-digit code to confirm a TV order. Commands: BAL, BILL, "
                "PAY, BIND <code> (pair a TV), UNBIND, STOP.",
        "bill_paid": "[{merchant}] Paid {amount}. Your bill is settled.",
        "pairing_code": "[{merchant}] Your code to pair this phone with your TV is {code} "
                        "(valid {minutes} min).",
        "balance": "[{merchant}] Your wallet balance is {amount}.",
        "not_bound": "[{merchant}] This phone has no wallet.",
        "no_tv": "[{merchant}] No TV is paired with this phone. Reply BIND and the code "
                 "your TV shows.",
        "no_bills": "[{merchant}] Your TVs have no bills to pay.",
        "bills": "[{merchant}] To pay: {lines}. Reply PAY to pay it.",
        "bills_many": "[{merchant}] To pay: {lines}. Reply PAY and a number, e.g. PAY 1.",
        "bill_line": "{number}) {description} {amount}",
        "more_bills": " and {count} more",
        "no_such_bill": "[{merchant}] There is no bill {number}. Reply BILL to see them.",
        "try_later": "[{merchant}] Too many requests. Please try again later.",
        "insufficient_funds": "[{merchant}] Your wallet and card do not hold enough; nothing "
                              "was charged.",
        "paired": "[{merchant}] This phone is paired with TV {device}. Order on the TV "
                  "without typing a number.",
        "bad_pairing_code": "[{merchant}] That pairing code is wrong or has expired. Get a new "
                            "one on the TV.",
        "too_many_binds": "[{merchant}] Too many tries. Please try again in an hour.",
        "unpaired": "[{merchant}] Unpaired {count} TV(s) from this phone.",
        "no_pairing": "[{merchant}] No TV is paired with this phone.",
        "stopped": "[{merchant}] You will get no more SMS from us. Reply START to undo.",
        "started": "[{merchant}] You will get our SMS again.",
        "source_wallet": "your wallet",
        "source_card": "your {bank} card ending {last4}",
        "date": "%Y-%m-%d",
    },
}


class Texts:
    """Renders SMS texts in one language for one merchant and display time zone."""

    def __init__(self, language: str, merchant: str, timezone: str) -> None:
        self._texts = _TEXTS[language]
        self.language = language
        self.merchant = merchant
        self._zone = ZoneInfo(timezone)

    def render(self, kind: str, **values: object) -> str:
        return self._texts[kind].format(merchant=self.merchant, **values)

    def amount(self, money: Money) -> str:
        if money.currency == "CNY" and self.language == "zh-CN":
            return f"{money.decimal_text()}元"
        return f"{money.decimal_text()} {money.currency}"

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the display time zone."""
        return moment.astimezone(self._zone)

    def date(self, moment: datetime) -> str:
        return self.local(moment).strftime(self._texts["date"])

    def source(self, kind: str, *, bank: str = "", last4: str = "") -> str:
        return self.render(f"source_{kind}", bank=bank, last4=last4)
