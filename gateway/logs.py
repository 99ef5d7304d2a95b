"""Logging for every process of the service (web, worker, SMPP worker, CLI).

Records go to stderr, one JSON object a line (``LOG_FORMAT=text``: one readable line):
``time`` (ISO 8601 UTC), ``level``, ``logger``, ``message``, then the record's extras, such as
the ``request_id`` of the web request being handled (``gateway.web.request_log``) and the
``exception``. What is written never shows a full phone number nor a payment-link token, in
the message, the extras or the exception text alike.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from gateway.phones import install_log_masking, mask_digits_in

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "redact", "stderr_handler"]

# Libraries whose chatter at lower levels carries secrets or raw paths, or is only noise:
# smpplib dumps every PDU in hex (SMS texts with their codes, the bind password), Twilio's
# client logs each API request, urllib3 logs request lines with their query, werkzeug
# (`python app.py`) logs raw paths with their link tokens, SQLAlchemy logs every statement
# (gateway.db hides their parameters), and Alembic lists its plugins at each start.
_QUIET = {
    "alembic.runtime.plugins": logging.WARNING,
    "sqlalchemy.engine": logging.WARNING,
    "smpp.Client": logging.INFO,  # smpplib's loggers are smpp.Client.<id>
    "twilio.http_client": logging.WARNING,
    "urllib3": logging.INFO,
    "werkzeug": logging.WARNING,
}

# A payment link's token (32 characters, gateway.domain.tokens) or a pairing code in a page path.
_PAGE_SECRET = re.compile(r"/w/(?:(pair/)[A-Za-z0-9]{6}|[A-Za-z0-9_-]{32})(?![A-Za-z0-9_-])")


def redact(text: str) -> str:
    """Mask phone numbers and the secrets of page paths (``/w/<token>``) in ``text``."""
    if "/w/" in text:
        text = _PAGE_SECRET.sub(
            lambda found: "/w/pair/<code>" if found.group(1) else "/w/<token>", text)
    return mask_digits_in(text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))  # what the JSON encoder would write, masked first


def _utc_time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Written by logging itself, never from data: a logger's name may hold digits (smpplib's are
# smpp.Client.<id>) that masking would garble.
_OWN_FIELDS = frozenset({"time", "level", "logger"})


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, then the record's extras."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger",
                                        "exc_info": "exception"})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["time"] = _utc_time(record)
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: value if key in _OWN_FIELDS else _redacted(value)
                for key, value in log_data.items()}


_TEXT_HEAD = "%(asctime)s %(levelname)s %(name)s "


class TextFormatter(logging.Formatter):
    """``2026-11-23T08:00:00.123Z INFO gateway.backend.checkout.start [request id] message``."""

    def __init__(self) -> None:
        super().__init__(_TEXT_HEAD + "[%(request_id)s] %(message)s",
                         defaults={"request_id": "-"})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        head = _TEXT_HEAD % record.__dict__  # asctime is set by the format above
        return head + redact(line.removeprefix(head))  # the logger's name stays (_OWN_FIELDS)


class _StderrHandler(logging.StreamHandler):
    """The handler of ``configure_logging``, found again by its class."""


def _formatter(log_format: str | None) -> logging.Formatter:
    chosen = log_format or os.environ.get("LOG_FORMAT") or "json"
    return TextFormatter() if chosen == "text" else JsonFormatter()


def stderr_handler(log_format: str | None = None) -> logging.Handler:
    """A handler writing to stderr in ``log_format`` (default: ``LOG_FORMAT``, else json).

    Also the root handler of gunicorn's own logs (``logconfig_dict`` in gunicorn.conf.py).
    """
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format))
    return handler


def configure_logging(log_format: str | None = None) -> None:
    """Log this process to stderr at INFO, in ``log_format`` (default: ``LOG_FORMAT``).

    Safe to call again (each ``create_app`` does): it re-formats its own handler, and adds none
    when the root logger already has another's (pytest's capture).
    """
    install_log_masking()
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, _StderrHandler):
            handler.setFormatter(_formatter(log_format))
    if not root.handlers:
        root.addHandler(stderr_handler(log_format))
        root.setLevel(logging.INFO)
