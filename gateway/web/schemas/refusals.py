"""A refused input as the same problem+json as any other bad input, with its stable
``code``."""

from __future__ import annotations

from pydantic import ValidationError

from gateway.domain.errors import InvalidInput, NotFound
from gateway.web.json_bodies import loads

# Which code a refused field gives, by the field's name (else ``invalid_field``).
_FIELD_CODES = {
    "device_id": "invalid_device_id", "phone": "invalid_phone", "kind": "invalid_kind",
    "package_id": "unknown_package",
    "currency": "invalid_currency", "Idempotency-Key": "invalid_idempotency_key",
    "Last-Event-ID": "invalid_last_event_id", "last_event_id": "invalid_last_event_id",
}
_UNION_TAGS = {"renewal", "recharge", "bill", "BillIn", "BillBatch"}


def refusal(error: ValidationError, raw_body: bytes | None) -> Exception:
    """The problem a refused request gives: ``invalid_json`` for a body that is no JSON object,
    ``missing_field`` for an absent (or null) required field, else the field's own code."""
    if raw_body is not None and error.title in _BODIES:
        try:
            parsed = loads(raw_body)
        except InvalidInput as not_json:
            return not_json
        if not isinstance(parsed, dict):
            return InvalidInput("the body must be a JSON object", code="invalid_json")
        if error.title == "BillUpload":
            return _bill_refusal(error, batch="bills" in parsed)
    first = error.errors()[0]
    loc = [part for part in first["loc"] if part not in _UNION_TAGS]
    name = str(loc[0]) if loc else ""
    kind = first["type"]
    if error.title == "PaymentCodeRequest":
        if kind == "union_tag_not_found":
            return InvalidInput("kind is required", code="missing_field", field="kind")
        if kind == "union_tag_invalid":
            return InvalidInput("kind must be renewal, recharge or bill", code="invalid_kind")
        if name == "package_id" and kind == "missing":  # as for a package not for sale
            return InvalidInput("package_id must be a package for sale", code="unknown_package")
        if name == "amount" and first["loc"][0] == "recharge":
            return InvalidInput("amount must be a whole number of minor units",
                                code="invalid_amount")
    if error.title == "DeviceQuery":
        return InvalidInput("device_id must be 1-64 letters, digits or . _ : -",
                            code="invalid_device_id")
    if name == "image_format":
        return NotFound("QR codes come as qr.png or qr.svg", code="not_found")
    if kind == "missing" or (first.get("input", "") is None and name):
        return InvalidInput(f"{name} is required", code="missing_field", field=name)
    code = _FIELD_CODES.get(name, "invalid_field")
    return InvalidInput(f"{name or 'the request'}: {first['msg']}", code=code)


_BODIES = {"OrderRequest", "PaymentCodeRequest", "BillUpload"}


def _bill_refusal(error: ValidationError, *, batch: bool) -> InvalidInput:
    """``invalid_bill``, naming the field at fault as ``bills[3].amount``."""
    errors = error.errors()
    form = "BillBatch" if batch else "BillIn"
    chosen = next((e for e in errors if e["loc"][:1] == (form,)), errors[0])
    place = ""
    for part in (str(p) for p in chosen["loc"][1:]):
        place += f"[{part}]" if part.isdigit() else (f".{part}" if place else part)
    return InvalidInput(f"{place or 'bill'}: {chosen['msg']}", code="invalid_bill")
