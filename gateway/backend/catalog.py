"""Packages a TV can sell: price, currency and how many days of service they add."""

from __future__ import annotations

import re

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway.domain.errors import InvalidInput
from gateway.store.models import Package

__all__ = ["get_package", "list_packages", "package_json"]


def list_packages(session: Session) -> list[Package]:
    return list(session.scalars(select(Package).order_by(Package.price, Package.id)))


_PACKAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


_PACKAGE = select(Package).where(Package.id == bindparam("package"))


def get_package(session: Session, package_id: object) -> Package:
    """:raise InvalidInput: ``unknown_package``."""
    valid = isinstance(package_id, str) and _PACKAGE_ID.fullmatch(package_id)
    package = session.scalar(_PACKAGE, {"package": package_id}) if valid else None
    if package is None:
        raise InvalidInput("no such package", code="unknown_package")
    return package


def package_json(package: Package) -> dict[str, object]:
    return {"id": package.id, "name": package.name, "price": package.price,
            "currency": package.currency, "period_days": package.period_days}
