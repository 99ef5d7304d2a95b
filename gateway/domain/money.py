"""Money as integer minor units with a currency; never floats."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MINOR_DIGITS", "Money"]

# ISO 4217 minor-unit digits of the currencies the gateway accepts.
MINOR_DIGITS = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KRW": 0}


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:
            raise TypeError("Money.amount must be an int of minor units")
        if self.currency not in MINOR_DIGITS:
            raise ValueError(f"unsupported currency {self.currency!r}")

    def decimal_text(self) -> str:
        """Render as a plain decimal, e.g. ``Money(20000, "CNY")`` → ``"200.00"``."""
        digits = MINOR_DIGITS[self.currency]
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**digits)
        return f"{sign}{units}.{minor:0{digits}d}" if digits else f"{sign}{units}"
