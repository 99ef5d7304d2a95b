"""Every SMS text the service sends, in zh-CN and en, in this one place."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.money import Money

__all__ = ["CODE_MASK", "Texts"]

CODE_MASK = "******"

_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "code": "【{merchant}】您通过{source}购买{package}，金额{amount}，"
                "确认支付请回复 {code}（{minutes}分钟内有效）。",
        "link": "【{merchant}】您购买{package}，金额{amount}，请在{minutes}分钟内打开链接完成支付："
                "{url}",
        "confirmed": "【{merchant}】支付成功，{package}已开通，有效期至{until}。",
        "wrong_code": "【{merchant}】验证码错误，还可尝试{left}次。",
        "too_many_attempts": "【{merchant}】验证码错误次数过多，订单已关闭，未扣款。",
        "code_expired": "【{merchant}】验证码已过期，订单已关闭，未扣款。请在电视上重新下单。",
        "code_used": "【{merchant}】该验证码已使用，订单已支付。",
        "order_closed": "【{merchant}】该订单已关闭，未扣款。",
        "help": "【{merchant}】确认电视订单，请回复短信中的6位验证码。",
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
        "help": "[{merchant}] To confirm a TV order, reply with the 6-digit code we sent you.",
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
