"""Operators' outstanding fees per device (CN101079132A), paid in full by an order of kind bill.

Bills come from a CSV file (``flask --app app bills import FILE.csv``) or the admin API. A bill
is paid by exactly one order: the order that completes first settles it, and any other order
for the same bill fails with ``bill_already_paid`` before it takes any money.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictInt, StrictStr, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.backend import activation
from gateway.backend.seed import Priced
from gateway.domain.errors import Conflict, InvalidInput, NotFound
from gateway.domain.times import iso
from gateway.store.models import Bill

__all__ = ["DESCRIPTION_PATTERN", "BillIn", "ImportReport", "add_bills", "bill_json",
           "for_device", "get_bill", "outstanding", "parse_csv", "settle", "validate"]

CSV_COLUMNS = ("bill_id", "device_id", "amount", "currency", "description")
_Id = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


# What a description may not hold: control characters (PostgreSQL refuses NUL in text), the
# invisible and direction-changing ones (shown on pages and in SMS, they would disguise a
# description). One rule for the check below and for the OpenAPI document. Lone surrogates
# (which a JSON text can spell, but no encoding can store) are no Unicode text at all.
DESCRIPTION_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e"
    "\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb]+$")
_DESCRIPTION = re.compile(DESCRIPTION_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")


class BillIn(Priced):
    bill_id: _Id  # the operator's own reference
    device_id: _Id
    # minor units: 4500 is 45.00
    amount: Annotated[StrictInt, Field(gt=0, le=10**11)]  # 4500.0 is refused
    description: Annotated[StrictStr, Field(min_length=1, max_length=120, json_schema_extra={
        "pattern": DESCRIPTION_PATTERN})]

    @field_validator("description")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not _DESCRIPTION.match(value) or _SURROGATE.search(value):
            raise ValueError("must not hold control characters")
        return value


def validate(data: dict[str, Any], place: str = "") -> BillIn:
    """:raise InvalidInput: ``invalid_bill`` naming the field at fault."""
    try:
        return BillIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "bill"
        raise InvalidInput(f"{place}{field}: {first['msg']}", code="invalid_bill") from None


def parse_csv(text: str) -> list[BillIn]:
    """Check a whole CSV file (header ``bill_id,device_id,amount,currency,description``).

    :raise InvalidInput: ``invalid_bill`` naming the line at fault.
    """
    rows = csv.DictReader(io.StringIO(text))
    if rows.fieldnames is None or set(CSV_COLUMNS) - set(rows.fieldnames):
        raise InvalidInput(f"line 1: the header must name {','.join(CSV_COLUMNS)}",
                           code="invalid_bill")
    bills: list[BillIn] = []
    seen: set[str] = set()
    for row in rows:
        place = f"line {rows.line_num}: "
        if None in row or any(value is None for value in row.values()):
            raise InvalidInput(f"{place}expected {len(rows.fieldnames)} columns",
                               code="invalid_bill")
        amount = row["amount"].strip()
        bill = validate({"bill_id": row["bill_id"].strip(), "device_id": row["device_id"].strip(),
                         "amount": int(amount) if amount.isdigit() else amount,
                         "currency": row["currency"].strip(),
                         "description": row["description"].strip()}, place)
        if bill.bill_id in seen:
            raise InvalidInput(f"{place}bill_id {bill.bill_id!r} appears more than once",
                               code="invalid_bill")
        seen.add(bill.bill_id)
        bills.append(bill)
    return bills


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.added} bills added, {self.unchanged} already loaded"


def add_bills(session: Session, bills: Iterable[BillIn], now: datetime) -> ImportReport:
    """Load bills; one already loaded with the same values is left as it is.

    :raise Conflict: ``bill_exists`` when a bill id is loaded with other values; the caller's
        transaction then rolls back, so nothing of the file is loaded.
    """
    report = ImportReport()
    for bill in bills:
        existing = session.get(Bill, bill.bill_id)
        if existing is not None:
            same = (existing.device_id, existing.amount, existing.currency,
                    existing.description) == (bill.device_id, bill.amount, bill.currency,
                                              bill.description)
            if not same:
                raise Conflict(f"bill {bill.bill_id} is already loaded with other values",
                               code="bill_exists", bill_id=bill.bill_id)
            report.unchanged += 1
            continue
        activation.ensure_device(session, bill.device_id, now)
        session.add(Bill(id=bill.bill_id, device_id=bill.device_id, amount=bill.amount,
                         currency=bill.currency, description=bill.description,
                         status="outstanding", created_at=now))
        session.flush()
        report.added += 1
    return report


def get_bill(session: Session, bill_id: object, device_id: str) -> Bill:
    """An outstanding bill of the device.

    :raise NotFound: ``bill_not_found`` (also another device's bill).
    :raise Conflict: ``bill_already_paid``.
    """
    bill = session.get(Bill, bill_id) if isinstance(bill_id, str) and len(bill_id) <= 64 else None
    if bill is None or bill.device_id != device_id:
        raise NotFound(f"no bill {bill_id} for device {device_id}", code="bill_not_found")
    if bill.status != "outstanding":
        raise Conflict(f"bill {bill.id} is already paid", code="bill_already_paid")
    return bill


def outstanding(session: Session, device_ids: Iterable[str]) -> list[Bill]:
    """The devices' unpaid bills, oldest first."""
    return list(session.scalars(
        select(Bill)
        .where(Bill.device_id.in_(list(device_ids)), Bill.status == "outstanding")
        .order_by(Bill.created_at, Bill.id)
    ))


def for_device(session: Session, device_id: str) -> list[Bill]:
    """Every bill of the device, paid or not, newest first."""
    return list(session.scalars(
        select(Bill).where(Bill.device_id == device_id).order_by(Bill.created_at.desc(),
                                                                 Bill.id)))


def settle(session: Session, bill_id: str, order_id: str, now: datetime) -> bool:
    """Mark the bill paid by the order, under its row lock; False if it was paid already."""
    bill = session.get(Bill, bill_id, with_for_update=True, populate_existing=True)
    if bill is None or bill.status != "outstanding":
        return False
    bill.status, bill.order_id, bill.paid_at = "paid", order_id, now
    return True


def bill_json(bill: Bill) -> dict[str, Any]:
    return {"bill_id": bill.id, "device_id": bill.device_id, "description": bill.description,
            "amount": bill.amount, "currency": bill.currency, "status": bill.status,
            "order_id": bill.order_id, "created_at": iso(bill.created_at),
            "paid_at": iso(bill.paid_at)}
