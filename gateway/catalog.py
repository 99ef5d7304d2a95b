"""Packages a TV can sell: price, currency and how many days of service they add."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.db import Package
from gateway.errors import InvalidInput

__all__ = ["get_package", "list_packages", "package_json"]


def list_packages(session: Session) -> list[Package]:
    return list(session.scalars(select(Package).order_by(Package.price, Package.id)))


def get_package(session: Session, package_id: object) -> Package:
    """:raise InvalidInput: ``unknown_package``."""
    package = session.get(Package, package_id) if isinstance(package_id, str) else None
    if package is None:
        raise InvalidInput(f"no package {package_id!r}", code="unknown_package")
    return package


def package_json(package: Package) -> dict[str, object]:
    return {"id": package.id, "name": package.name, "price": package.price,
            "currency": package.currency, "period_days": package.period_days}
