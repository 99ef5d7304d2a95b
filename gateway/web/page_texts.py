"""Every text of the payment pages, in zh-CN and en, in this one place."""

from __future__ import annotations

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "PageTexts"]

DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")

_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "订单支付",
        "merchant": "商户",
        "item": "商品",
        "amount": "金额",
        "phone": "手机号",
        "time_left": "请在{minutes}分钟内完成支付",
        "item_recharge": "电视余额充值",
        "item_renewal": "续费：{package}",
        "sign_in_title": "登录钱包",
        "account": "钱包账号或绑定的手机号",
        "password": "支付密码",
        "sign_in": "登录",
        "signed_in": "已登录钱包：{owner}",
        "other_wallet": "使用其他钱包",
        "choose_source": "选择付款方式",
        "source_wallet": "钱包余额（{balance}）",
        "source_card": "{bank}银行卡，尾号{last4}（{balance}）",
        "not_enough": "余额不足",
        "bind": "下次使用此手机（{phone}）短信确认支付",
        "pay": "确认支付 {amount}",
        "receipt_title": "支付成功",
        "receipt_lead": "服务已开通，请在电视上查看。",
        "paid_from": "付款方式",
        "paid_at": "支付时间",
        "order_no": "订单号",
        "active_until": "有效期至",
        "credited": "已充值到电视余额",
        "bill_settled": "账单已缴清。",
        "wallet": "钱包余额",
        "card": "{bank}银行卡，尾号{last4}",
        "switch_language": "English",
        "datetime": "%Y年%m月%d日 %H:%M",
        "date": "%Y年%m月%d日",
        # Refusals on a form
        "missing_credentials": "请输入钱包账号和支付密码。",
        "unknown_account": "没有找到这个钱包账号。",
        "wrong_password": "支付密码错误，还可以尝试{tries_left}次。",
        "wallet_locked": "支付密码错误次数过多，该钱包的网页支付已锁定，请{minutes}分钟后再试。",
        "sign_in_limited": "此链接的登录尝试过多，请{minutes}分钟后再试。",
        "insufficient_funds": "所选付款方式余额不足，请选择其他方式。",
        "invalid_source": "请选择付款方式。",
        "currency_mismatch": "该钱包的币种与订单不同，无法支付。",
        "session_expired": "登录已过期，请重新登录。",
        "form_expired": "页面已过期，请重新提交。",
        # Pages that end the flow: a title and a message each
        "link_not_found_title": "链接无效",
        "link_not_found": "没有这个支付链接。请检查短信中的链接，或在电视上重新扫码。",
        "expired_title": "链接已过期",
        "expired": "订单已过期，未扣款。请在电视上重新下单。",
        "cancelled_title": "订单已取消",
        "cancelled": "订单已在电视上取消，未扣款。",
        "failed_title": "订单已关闭",
        "failed": "订单已关闭，未扣款。请在电视上重新下单。",
        "not_found_title": "页面不存在",
        "not_found": "没有这个页面。",
        "error_title": "出错了",
        "error": "暂时无法处理，请稍后再试。未扣款。",
        # Pairing a phone with a TV
        "item_bill": "账单：{description}",
        "pair_title": "绑定电视",
        "pair_lead": "将手机与电视 {device} 绑定。绑定后在电视上下单，验证码会发到这部手机。",
        "pair_phone": "手机号",
        "send_code": "获取短信验证码",
        "code_sent": "验证码已发送至 {phone}。",
        "confirm_code": "短信验证码",
        "confirm_pairing": "确认绑定",
        "paired_title": "绑定成功",
        "paired": "电视 {device} 已与这部手机绑定。",
        "wrong_code": "验证码错误，还可以尝试{tries_left}次。",
        "invalid_phone": "请输入正确的手机号。",
        "phone_country_not_allowed": "暂不支持这个国家或地区的手机号。",
        "phone_rate_limited": "验证码已发送，请1分钟后再试。",
        "pairing_code_not_found_title": "配对码无效",
        "pairing_code_not_found": "配对码无效或已过期，请在电视上重新获取。",
    },
    "en": {
        "title": "Pay for your order",
        "merchant": "Merchant",
        "item": "Item",
        "amount": "Amount",
        "phone": "Phone",
        "time_left": "Please pay within {minutes} min",
        "item_recharge": "TV balance top-up",
        "item_renewal": "Renewal: {package}",
        "sign_in_title": "Sign in to your wallet",
        "account": "Wallet account or bound phone number",
        "password": "Payment password",
        "sign_in": "Sign in",
        "signed_in": "Signed in to the wallet of {owner}",
        "other_wallet": "Use another wallet",
        "choose_source": "Choose how to pay",
        "source_wallet": "Wallet balance ({balance})",
        "source_card": "{bank} card ending {last4} ({balance})",
        "not_enough": "not enough",
        "bind": "Use this phone ({phone}) for SMS confirmation next time",
        "pay": "Pay {amount}",
        "receipt_title": "Payment complete",
        "receipt_lead": "Your service is on; look at your TV.",
        "paid_from": "Paid from",
        "paid_at": "Paid at",
        "order_no": "Order",
        "active_until": "Active until",
        "credited": "Added to the TV balance",
        "bill_settled": "The bill is paid.",
        "wallet": "Wallet balance",
        "card": "{bank} card ending {last4}",
        "switch_language": "中文",
        "datetime": "%Y-%m-%d %H:%M",
        "date": "%Y-%m-%d",
        "missing_credentials": "Enter your wallet account and payment password.",
        "unknown_account": "No wallet has this account.",
        "wrong_password": "Wrong payment password. {tries_left} tries left.",
        "wallet_locked": "Too many wrong passwords: page payments of this wallet are locked. "
                         "Try again in {minutes} min.",
        "sign_in_limited": "Too many sign-in attempts on this link. Try again in {minutes} min.",
        "insufficient_funds": "That source does not hold enough. Choose another.",
        "invalid_source": "Choose how to pay.",
        "currency_mismatch": "This wallet is in another currency than the order.",
        "session_expired": "Your sign-in has expired. Sign in again.",
        "form_expired": "This page has expired. Please submit it again.",
        "link_not_found_title": "Link not found",
        "link_not_found": "There is no such payment link. Check the link in your SMS, or scan "
                          "the code on your TV again.",
        "expired_title": "This link has expired",
        "expired": "The order has expired and nothing was charged. Please order again on "
                   "the TV.",
        "cancelled_title": "Order cancelled",
        "cancelled": "The order was cancelled on the TV. Nothing was charged.",
        "failed_title": "Order closed",
        "failed": "The order is closed and nothing was charged. Please order again on the TV.",
        "not_found_title": "Page not found",
        "not_found": "There is no such page.",
        "error_title": "Something went wrong",
        "error": "We could not handle this just now. Nothing was charged; try again later.",
        "item_bill": "Bill: {description}",
        "pair_title": "Pair with your TV",
        "pair_lead": "Pair this phone with TV {device}. Codes for orders on that TV will then "
                     "come to this phone.",
        "pair_phone": "Phone number",
        "send_code": "Send me a code",
        "code_sent": "We sent a code to {phone}.",
        "confirm_code": "Code from the SMS",
        "confirm_pairing": "Pair",
        "paired_title": "Paired",
        "paired": "TV {device} is paired with this phone.",
        "wrong_code": "That code is not right. {tries_left} tries left.",
        "invalid_phone": "Enter a valid phone number.",
        "phone_country_not_allowed": "Phone numbers of this country are not supported.",
        "phone_rate_limited": "A code was just sent. Try again in a minute.",
        "pairing_code_not_found_title": "Pairing code not valid",
        "pairing_code_not_found": "This pairing code is wrong or has expired. Get a new one on "
                                  "the TV.",
    },
}

assert _TEXTS["zh-CN"].keys() == _TEXTS["en"].keys()


class PageTexts:
    """The page texts of one language; templates call it: ``t("pay", amount=...)``."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._texts = _TEXTS[language]

    def __call__(self, key: str, **values: object) -> str:
        return self._texts[key].format(**values)

    def has(self, key: str) -> bool:
        return key in self._texts
