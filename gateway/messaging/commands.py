"""Commands viewers text to the service number (CN101079132A), in Chinese or English, in any
case: 余额/BAL, 账单/BILL, 缴费/PAY [n], 帮助/HELP, 绑定/BIND <code>, 解绑/UNBIND, 退订/STOP,
START. The answer is in the language of the command and fits one SMS where it can.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.backend import bills, checkout, pairing
from gateway.context import Gateway
from gateway.domain.errors import Conflict, NotFound, Overloaded, RateLimited
from gateway.domain.money import Money
from gateway.domain.orders import Status
from gateway.domain.texts import Texts
from gateway.payment import ledger, wallets
from gateway.store import outbox
from gateway.store.models import Bill

__all__ = ["Command", "answer", "parse", "pay"]

_KEYWORDS: dict[str, tuple[str, str]] = {
    "余额": ("balance", "zh-CN"), "BAL": ("balance", "en"), "BALANCE": ("balance", "en"),
    "账单": ("bill", "zh-CN"), "BILL": ("bill", "en"), "BILLS": ("bill", "en"),
    "缴费": ("pay", "zh-CN"), "PAY": ("pay", "en"),
    "帮助": ("help", "zh-CN"), "HELP": ("help", "en"),
    "绑定": ("bind", "zh-CN"), "BIND": ("bind", "en"),
    "解绑": ("unbind", "zh-CN"), "UNBIND": ("unbind", "en"),
    "退订": ("stop", "zh-CN"), "STOP": ("stop", "en"),
    "START": ("start", "en"),
}
_COMMAND = re.compile(r"(余额|账单|缴费|帮助|绑定|解绑|退订|[A-Za-z]+)\s*(.*)", re.DOTALL)
_BILLS_LISTED = 3  # more would not fit one SMS


@dataclass(frozen=True)
class Command:
    name: str  # balance, bill, pay, help, bind, unbind, stop, start
    argument: str
    language: str  # of the keyword: the answer's language


def parse(text: str) -> Command | None:
    """The command an SMS text is, or None (a confirmation code, or anything else)."""
    found = _COMMAND.fullmatch(unicodedata.normalize("NFKC", text).strip())
    if found is None or found.group(1).upper() not in _KEYWORDS:
        return None
    name, language = _KEYWORDS[found.group(1).upper()]
    return Command(name, found.group(2).strip(), language)


def answer(gw: Gateway, session: Session, phone: str, command: Command,
           now: datetime) -> str:
    """Carry out any command but PAY in the caller's transaction; return the answer's text.

    STOP is answered before the opt-out it asks for takes effect (the caller records it).
    """
    texts = gw.texts_in(command.language)
    if command.name == "balance":
        wallet = wallets.bound_wallet(session, phone)
        if wallet is None:
            return texts.render("not_bound")
        amount = ledger.balance(session, ledger.wallet_account(wallet.id))
        return texts.render("balance", amount=texts.amount(Money(amount, wallet.currency)))
    if command.name == "bill":
        return _bill_list(texts, _due(session, phone))
    if command.name == "bind":
        result = pairing.bind_by_sms(gw, session, phone, command.argument, now)
        if result.outcome is pairing.BindOutcome.PAIRED:
            return texts.render("paired", device=result.device_id)
        if result.outcome is pairing.BindOutcome.TOO_MANY:
            return texts.render("too_many_binds")
        return texts.render("bad_pairing_code")
    if command.name == "unbind":
        count = pairing.unpair_phone(session, phone, now)
        return texts.render("unpaired", count=count) if count else texts.render("no_pairing")
    if command.name == "stop":
        return texts.render("stopped")
    if command.name == "start":
        outbox.opt_in(session, phone)
        return texts.render("started")
    return texts.render("help")


def _bill_list(texts: Texts, due: list[Bill] | str) -> str:
    """The unpaid bills of the phone's TVs (``_due``) as one SMS, or why there are none."""
    if isinstance(due, str):
        return texts.render(due)
    if not due:
        return texts.render("no_bills")
    lines = [texts.render("bill_line", number=n, description=b.description,
                          amount=texts.amount(Money(b.amount, b.currency)))
             for n, b in enumerate(due[:_BILLS_LISTED], start=1)]
    listed = ("；" if texts.language == "zh-CN" else "; ").join(lines)
    if len(due) > _BILLS_LISTED:
        listed += texts.render("more_bills", count=len(due))
    return texts.render("bills" if len(due) == 1 else "bills_many", lines=listed)


def _due(session: Session, phone: str) -> list[Bill] | str:
    """The unpaid bills of the phone's TVs, oldest first, or ``"no_tv"``."""
    devices = pairing.paired_devices(session, phone)
    if not devices:
        return "no_tv"
    return bills.outstanding(session, devices)


def pay(gw: Gateway, phone: str, command: Command) -> str | None:
    """``PAY [n]``: start an order for the bill (its code or link SMS is the answer).

    Runs its own transactions, as any order does; returns an answer only when no order's SMS
    answers for it.
    """
    texts = gw.texts_in(command.language)
    with gw.db.read() as session:
        due = _due(session, phone)
    if isinstance(due, str) or not due or (not command.argument and len(due) > 1):
        return _bill_list(texts, due)  # nothing to pay, or which bill?
    numeric = command.argument.isascii() and command.argument.isdecimal()  # not "²", "٣"
    number = int(command.argument) if numeric else 1
    if command.argument and not (numeric and 1 <= number <= len(due)):
        shown = "".join(c for c in command.argument[:8] if c.isprintable())  # no NUL in SQL
        return texts.render("no_such_bill", number=shown)
    bill = due[number - 1]
    try:
        gw.admission.admit_new_order()  # SMS leave late: say so now rather than send a late code
    except Overloaded:
        return texts.render("busy")
    try:
        order = checkout.start_order(gw, device_id=bill.device_id, phone=phone, bill_id=bill.id)
    except RateLimited:
        return texts.render("try_later")
    except (Conflict, NotFound):  # paid a moment ago by another channel
        return texts.render("no_bills")
    if order.status == Status.FAILED:
        return texts.render("insufficient_funds")
    return None
