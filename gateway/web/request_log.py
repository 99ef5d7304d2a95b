"""Placeholder: filled in by the issue-8 work."""

from __future__ import annotations

from flask import Flask

__all__ = ["register"]


def register(app: Flask) -> None:
    """Add this module's routes and hooks to ``app``."""
