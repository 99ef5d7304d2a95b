"""Patterns and field helpers the request and answer models share."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
CURRENCIES = ("CNY", "HKD", "USD", "EUR", "GBP", "JPY", "KRW")


# A whole number written as one: 5000, never 5000.0, a string or a boolean.
Whole = StrictInt
DeviceId = Annotated[StrictStr, Field(
    pattern=DEVICE_ID_PATTERN,
    description="1-64 letters, digits or `. _ : -`, starting with a letter or digit.")]
Timestamp = Annotated[str, Field(
    pattern=TIMESTAMP_PATTERN, json_schema_extra={"format": "date-time"},
    description="UTC, ISO 8601 to the second.", examples=["2026-11-23T08:00:00Z"])]
Amount = Annotated[int, Field(ge=0, examples=[20000],
                              description="Minor units of the currency (`20000` CNY is 200.00 "
                                          "yuan).")]
Currency = Annotated[Literal[CURRENCIES], Field(description="ISO 4217.")]  # type: ignore[valid-type]
MaskedPhone = Annotated[str, Field(pattern=r"^[0-9]*\*{4,}[0-9]*$", examples=["138****8000"],
                                   description="A phone number with its middle hidden.")]
OrderStatus = Literal["awaiting_code", "awaiting_wap", "paid", "activated", "failed", "expired",
                      "cancelled"]
OrderReason = Literal["insufficient_funds", "too_many_attempts", "sms_undeliverable", "expired",
                      "cancelled", "bill_already_paid"]


def _optional(**kwargs: Any) -> Any:
    """An optional field (``null`` is the same as leaving it out)."""
    return Field(default=None, **kwargs)  # the document leaves out its "default": null


def _given(name: str) -> dict[str, Any]:
    """``name`` is given, and not as null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")
