"""Packages a TV can sell: price, currency and how many days of service they add."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.domain.errors import InvalidInput
from gateway.store.models import Package

__all__ = ["get_package", "list_packages", "package_json"]


def list_packages(session: Session) -> list[Package]:
    return list(session.scalars(select(Package).order_by(Package.price, Package.id)))


_PACKAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PACKAGES_READ = "catalog.packages_read"  # session.info key


def get_package(session: Session, package_id: object) -> Package:
    """:raise InvalidInput: ``unknown_package``."""
    valid = isinstance(package_id, str) and _PACKAGE_ID.fullmatch(package_id)
    # kept for the transaction (the session's identity map keeps only objects still in use): a
    # transaction that activates a batch of orders of one package reads it once
    known: dict[object, Package | None] = session.info.setdefault(_PACKAGES_READ, {})
    if package_id not in known and valid:
        known[package_id] = session.get(Package, package_id)
    package = known.get(package_id)
    if package is None:
        raise InvalidInput("no such package", code="unknown_package")
    return package


def package_json(package: Package) -> dict[str, object]:
    return {"id": package.id, "name": package.name, "price": package.price,
            "currency": package.currency, "period_days": package.period_days}
