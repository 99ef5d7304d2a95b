"""The reads and admin calls of the HTTP API, each one transaction of its own.

The views of ``gateway.web`` call these and render what they return; they hold no session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gateway import phones
from gateway.backend import activation, apps, bills, catalog, pairing
from gateway.backend.bills import BillIn, ImportReport
from gateway.context import Gateway
from gateway.domain.times import iso
from gateway.payment import ledger
from gateway.store.models import Device, Order

__all__ = ["active_entitlements", "add_bills", "admin_key_live", "any_admin_app",
           "bills_of_device", "claim_device", "device_account", "may_use_device", "order_app",
           "packages", "pairing_status", "revoke_entitlement"]


# --- the TV API --------------------------------------------------------------------------------


def packages(gw: Gateway) -> list[dict[str, object]]:
    """The packages for sale, cheapest first, as the API shows them."""
    with gw.db.read() as session:
        return [catalog.package_json(p) for p in catalog.list_packages(session)]


def device_account(gw: Gateway, device_id: str) -> dict[str, Any]:
    """What the device can renew (its entitlements, live or lapsed), its stored value, and the
    operator's bills it has still to pay."""
    now = gw.clock()
    with gw.db.read() as session:
        items = [{
            "package_id": package.id, "name": package.name,
            "active_until": iso(entitlement.active_until),
            "active": entitlement.active_until > now,
            "renewal": {"amount": package.price, "currency": package.currency,
                        "period_days": package.period_days},
        } for entitlement, package in activation.entitlements(session, device_id)]
        balance = ledger.balance(session, ledger.device_account(device_id))
        due = [bills.bill_json(bill) for bill in bills.outstanding(session, [device_id])]
    return {"device_id": device_id, "balance": balance, "currency": gw.settings.CURRENCY,
            "entitlements": items, "bills": due}


def active_entitlements(gw: Gateway, device_id: str) -> list[dict[str, Any]]:
    """The device's live entitlements."""
    with gw.db.read() as session:
        active = activation.active_entitlements(session, device_id, gw.clock())
        return [{"package_id": e.package_id, "active_until": iso(e.active_until)}
                for e in active]


def pairing_status(gw: Gateway, device_id: str) -> dict[str, Any]:
    """Whether a phone is paired with the device, and which (masked)."""
    with gw.db.read() as session:
        phone = pairing.paired_phone(session, device_id)
    return {"device_id": device_id, "paired": phone is not None, "phone": phones.mask(phone)}


# --- whose devices -----------------------------------------------------------------------------


def order_app(gw: Gateway, order_id: str) -> tuple[bool, str | None]:
    """Whether the order exists, and the TV app its device belongs to (None: nobody's)."""
    with gw.db.read() as session:
        row = session.execute(select(Device.app_id).join(Order, Order.device_id == Device.id)
                              .where(Order.id == order_id)).first()
    return (row is not None, row.app_id if row is not None else None)


def may_use_device(gw: Gateway, app_id: str, device_id: str) -> bool:
    """The device is the app's, or nobody's yet."""
    with gw.db.read() as session:
        return apps.may_use_device(session, app_id, device_id)


def claim_device(gw: Gateway, app_id: str, device_id: str) -> None:
    """Make the device the app's if nobody's. :raise NotFound: ``device_not_found``."""
    with gw.db.transaction() as session:
        apps.claim_device(session, app_id, device_id, gw.clock())


# --- the admin API -----------------------------------------------------------------------------


def admin_key_live(gw: Gateway, key_id: str) -> bool:
    with gw.db.read() as session:
        return apps.key_is_live(session, key_id)


def any_admin_app(gw: Gateway) -> bool:
    with gw.db.read() as session:
        return apps.any_admin_app(session)


def add_bills(gw: Gateway, parsed: list[BillIn]) -> ImportReport:
    """Load the bills all or none. :raise Conflict: ``bill_exists``."""
    with gw.db.transaction() as session:
        return bills.add_bills(session, parsed, gw.clock())


def bills_of_device(gw: Gateway, device_id: str) -> list[dict[str, Any]]:
    """Every bill of the device, newest first."""
    with gw.db.read() as session:
        return [bills.bill_json(bill) for bill in bills.for_device(session, device_id)]


def revoke_entitlement(gw: Gateway, device_id: str, package_id: str) -> None:
    """End an entitlement now. :raise NotFound: ``entitlement_not_found``."""
    with gw.db.transaction() as session:
        activation.revoke(session, device_id, package_id, gw.clock())
