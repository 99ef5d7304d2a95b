"""Backend role: entitlements a paid order switches on for the TV device."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from gateway.backend import boss, tv_events
from gateway.domain.errors import NotFound
from gateway.store.db import insert_ignore, one_of, padded
from gateway.store.models import Device, Entitlement, Package
from gateway.store.writes import insert_at_commit

__all__ = ["activate", "active_entitlements", "ensure_device", "entitlements", "prepare",
           "revoke"]


def ensure_device(session: Session, device_id: str, now: datetime) -> None:
    insert_ignore(session, Device, id=device_id, created_at=now)


_LOCK_DEVICE = (select(Device.id).where(Device.id == bindparam("device"))
                .with_for_update(key_share=True))


_ACTIVE_UNTIL = select(Entitlement.active_until).where(
    Entitlement.device_id == bindparam("device"), Entitlement.package_id == bindparam("package"))
_EXTEND = (update(Entitlement)
           .where(Entitlement.device_id == bindparam("device"),
                  Entitlement.package_id == bindparam("package"))
           .values(active_until=bindparam("until"), updated_at=bindparam("at")))


_LOCK_DEVICES = (select(Device.id).where(one_of(Device.id, "devices"))
                 .order_by(Device.id).with_for_update(key_share=True))
_ENTITLEMENTS_OF = select(Entitlement.device_id, Entitlement.package_id,
                          Entitlement.active_until).where(
    one_of(Entitlement.device_id, "devices"))
# session.info: (device, package) -> the entitlement's end (None: none yet), for devices this
# transaction has locked
_KNOWN = "activation.known"
_NEW = "activation.new"  # session.info: (device, package) -> an entitlement to write at commit


def prepare(session: Session, pairs: Iterable[tuple[str, str]]) -> None:
    """Lock the devices of ``(device, package)`` pairs that this transaction may activate, and
    read their entitlements, in two statements for all of them (a batch of payments), so that
    ``activate`` reads nothing more for them."""
    devices = sorted({device for device, _ in pairs})
    if not devices:
        return
    sql = session.connection()
    sql.execute(_LOCK_DEVICES, {"devices": padded(devices)})
    known: dict[tuple[str, str], datetime | None] = session.info.setdefault(_KNOWN, {})
    found = {(row.device_id, row.package_id): row.active_until
             for row in sql.execute(_ENTITLEMENTS_OF, {"devices": padded(devices)})}
    for pair in pairs:
        known.setdefault(pair, found.get(pair))


def activate(session: Session, device_id: str, package: Package, now: datetime) -> datetime:
    """Start the package on the device, or extend the running entitlement by its period;
    return the entitlement's new end. Plain SQL: it runs once a payment."""
    sql = session.connection()
    known: dict[tuple[str, str], datetime | None] = session.info.setdefault(_KNOWN, {})
    if (device_id, package.id) in known:  # locked and read by ``prepare`` or a previous call
        running = known[device_id, package.id]
    else:
        # One activation per device at a time. FOR NO KEY UPDATE: it must not wait on the
        # key-share locks that inserting an order for the same device takes.
        sql.execute(_LOCK_DEVICE, {"device": device_id})
        running = sql.execute(_ACTIVE_UNTIL, {"device": device_id,
                                              "package": package.id}).scalar()
    until = max(running or now, now) + timedelta(days=package.period_days)
    new: dict[tuple[str, str], dict[str, Any]] = session.info.setdefault(_NEW, {})
    if running is None:  # a new entitlement: written at the commit, with the payment's rows
        new[device_id, package.id] = {"device_id": device_id, "package_id": package.id,
                                      "active_until": until, "updated_at": now}
        insert_at_commit(session, Entitlement, new[device_id, package.id])
    elif (device_id, package.id) in new:  # started in this transaction: not written yet
        new[device_id, package.id].update(active_until=until, updated_at=now)
    else:
        sql.execute(_EXTEND, {"device": device_id, "package": package.id, "until": until,
                              "at": now})
    known[device_id, package.id] = until
    return until


def revoke(session: Session, device_id: str, package_id: str, now: datetime) -> Entitlement:
    """End a live entitlement now, tell the TV and the operator's BOSS.

    :raise NotFound: ``entitlement_not_found`` (none, or no longer live).
    """
    session.get(Device, device_id, with_for_update={"key_share": True})
    entitlement = session.get(Entitlement, (device_id, package_id), with_for_update=True)
    if entitlement is None or entitlement.active_until <= now:
        raise NotFound(f"device {device_id} has no live entitlement to {package_id}",
                       code="entitlement_not_found")
    was_until = entitlement.active_until
    entitlement.active_until, entitlement.updated_at = now, now
    tv_events.record(session, device_id=device_id, now=now,
                     event_type=tv_events.TvEvent.ENTITLEMENT_REVOKED,
                     data={"package_id": package_id})
    boss.record(session, boss.EventType.ENTITLEMENT_REVOKED,
                {"device_id": device_id, "package_id": package_id, "active_until": now,
                 "was_active_until": was_until}, now)
    return entitlement


def active_entitlements(session: Session, device_id: str, now: datetime) -> list[Entitlement]:
    return list(session.scalars(
        select(Entitlement)
        .where(Entitlement.device_id == device_id, Entitlement.active_until > now)
        .order_by(Entitlement.package_id)
    ))


def entitlements(session: Session, device_id: str) -> list[tuple[Entitlement, Package]]:
    """Every entitlement the device has had, live or lapsed, with its package."""
    return [(e, p) for e, p in session.execute(
        select(Entitlement, Package)
        .join(Package, Package.id == Entitlement.package_id)
        .where(Entitlement.device_id == device_id)
        .order_by(Entitlement.active_until.desc(), Package.id)
    )]
