"""Logging for every process of the service: to stderr, phone numbers masked."""

from __future__ import annotations

import logging

from gateway.phones import install_log_masking

__all__ = ["configure_logging"]


def configure_logging() -> None:
    install_log_masking()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
