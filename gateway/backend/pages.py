"""What the payment page, its receipt and the demo page show, read in one transaction each.

The views of ``gateway.web`` render these; they hold no session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from gateway import phones
from gateway.backend import apps, catalog, seed
from gateway.context import Gateway
from gateway.domain import funding
from gateway.domain.money import Money
from gateway.domain.orders import Kind
from gateway.payment import wallets
from gateway.store.models import (
    Bill,
    Card,
    Entitlement,
    Order,
    Package,
    PhoneBinding,
    Wallet,
)

# Order and Package: the rows the views are handed, named here for their annotations.
__all__ = ["DemoWallet", "Order", "OrderPage", "Package", "Receipt", "demo_key", "demo_wallets",
           "order_page", "receipt"]


@dataclass(frozen=True)
class OrderPage:
    """What the payment page of an order shows besides the order itself."""

    package: Package | None
    bill_description: str | None  # of a bill order's bill (None: the bill is gone)
    wallet: Wallet | None  # the signed-in wallet
    sources: tuple[funding.Source, ...]  # what the signed-in wallet can pay from
    may_bind: bool  # the order's phone is bound to no wallet


@dataclass(frozen=True)
class Receipt:
    package: Package | None
    bill_description: str | None
    active_until: datetime | None  # the entitlement the order bought, as it stands now
    card: Card | None  # the card that paid, None when the wallet did
    paid: bool  # the order records what paid it


def _bill_description(session: Session, order: Order) -> str | None:
    if order.kind != Kind.BILL or not order.bill_id:
        return None
    bill = session.get(Bill, order.bill_id)
    return bill.description if bill else None


def order_page(gw: Gateway, order: Order, wallet_id: str | None) -> OrderPage:
    with gw.db.read() as session:
        return OrderPage(
            package=session.get(Package, order.package_id) if order.package_id else None,
            bill_description=_bill_description(session, order),
            wallet=session.get(Wallet, wallet_id) if wallet_id else None,
            sources=wallets.sources(session, wallet_id) if wallet_id else (),
            may_bind=bool(order.phone) and session.get(PhoneBinding, order.phone) is None)


def receipt(gw: Gateway, order: Order) -> Receipt:
    with gw.db.read() as session:
        entitlement = session.get(Entitlement, (order.device_id, order.package_id)) \
            if order.package_id else None
        card = wallets.card_of(session, order.paid_from) if order.paid_from else None
        return Receipt(
            package=session.get(Package, order.package_id) if order.package_id else None,
            bill_description=_bill_description(session, order),
            active_until=entitlement.active_until if entitlement else None,
            card=card, paid=bool(order.paid_from))


# --- the demo page -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoWallet:
    wallet_id: str
    owner: str
    phones: list[str]  # national numbers, as a viewer types them
    password: str
    balance: str
    card: str | None
    outcome: str  # what ordering the cheapest package with its phone does


def _money(amount: int, currency: str) -> str:
    return f"{Money(amount, currency).decimal_text()} {currency}"


def demo_key(gw: Gateway, name: str, kind: str = apps.TV) -> str:
    """A new key of the app ``name`` (a TV app, or an admin app), made at the first call;
    the keys of earlier starts stop working."""
    with gw.db.transaction() as session:
        key = apps.sole_key(session, name, kind, gw.clock())
    gw.key_cache.forget_all()
    return key


# what ordering the cheapest package does, by the source that pays (``gateway.domain.funding``)
_OUTCOMES = {"wallet": "the wallet pays", "card": "the wallet is short: the linked card pays",
             None: "too little everywhere: insufficient_funds"}


def demo_wallets(gw: Gateway) -> list[DemoWallet]:
    """The demo file's wallets with what they hold now (the demo spends them)."""
    found, e164 = seed.parse_seed(seed.DEMO_FILE.read_text(encoding="utf-8"),
                                  gw.settings.PHONE_COUNTRIES)
    rows = []
    with gw.db.read() as session:
        packages = catalog.list_packages(session)
        cheapest = packages[0] if packages else None
        for wallet in found.wallets:
            held = {source.kind: source for source in wallets.sources(session, wallet.id)}
            pays = funding.choose(list(held.values()), cheapest.price, cheapest.currency) \
                if cheapest else held.get("wallet")
            if not wallet.phones:
                outcome = "no phone bound: sign in on the payment page of an unbound number"
            else:
                outcome = _OUTCOMES[pays.kind if pays else None]
            balance = held["wallet"].balance if "wallet" in held else 0
            card = held.get("card")
            rows.append(DemoWallet(
                wallet.id, wallet.owner,
                [phones.national(e164[raw]) for raw in wallet.phones],
                wallet.password or "(given hashed in the file)",
                _money(balance, wallet.currency),
                f"{card.bank} ·{card.last4}: {_money(card.balance, card.currency)}"
                if card else None, outcome))
    return rows
