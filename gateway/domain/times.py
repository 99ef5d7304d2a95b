"""Moments as the service keeps them (aware UTC) and as the API shows them."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """A moment as the API shows it: ISO 8601 UTC to the second, ``2026-11-23T08:00:00Z``."""
    return None if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")
