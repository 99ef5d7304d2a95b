"""The SMSC connections the SMPP worker keeps: from the ``SMPP_CONFIG`` file, or one from SMPP_*.

``SMPP_CONFIG`` names a YAML file (``examples/smpp-connections.yaml``)::

    connections:
      - id: cmcc                      # unique, short: [a-z0-9][a-z0-9_-]{0,31}
        host: smsc.cmcc.example
        port: 2775
        system_id: tvpay
        password: "s3cret"
        routes: ["carrier:China Mobile", "+86139"]   # quoted: YAML reads +86139 as a number
        binds: 2                      # transceiver binds kept open (default 1)
        window: 50                    # submit_sm unanswered per bind (default SMPP_WINDOW)
        max_tps: 300                  # for the whole connection (default SMPP_MAX_TPS)
        priority: 1                   # lower goes first (default 1)
        weight: 1                     # share among equal priorities (default 1)

The file is checked whole when the SMPP worker starts; the first fault stops it with a
``ConfigError`` naming the file, the connection and the field. Without ``SMPP_CONFIG`` the
SMPP_* variables describe one connection, ``default``, routing ``*`` (``host`` None: the
built-in SMSC, as without SMPP_HOST). Routing itself is ``gateway.messaging.routing``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from phonenumbers.carrierdata import CARRIER_DATA
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from gateway.config import ConfigError, Settings

__all__ = ["DEFAULT_ID", "Connection", "connection_settings", "load_connections",
           "parse_connections", "route_kind"]

DEFAULT_ID = "default"  # the connection SMPP_* describe without SMPP_CONFIG
STAR = "*"
CARRIER = "carrier:"
_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")


@dataclass(frozen=True)
class Connection:
    """One SMSC account: where to bind, how hard to push it, and which destinations it takes."""

    id: str
    host: str | None  # None: the built-in SMSC (the ``default`` connection without SMPP_HOST)
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    source_addr: str
    binds: int  # transceiver binds kept open
    window: int  # submit_sm unanswered at once, per bind
    max_tps: int  # submit_sm a second, for the connection across its binds
    routes: tuple[str, ...]  # "+86139", "carrier:China Mobile", "*"
    priority: int = 1  # lower goes first
    weight: int = 1  # its share among the usable connections of its priority


def route_kind(route: str) -> str:
    """``prefix``, ``carrier`` or ``star``; ValueError for anything else, saying what is taken."""
    if route == STAR:
        return "star"
    if route.startswith(CARRIER) and route[len(CARRIER):].strip():
        return "carrier"
    if _PREFIX.match(route):
        return "prefix"
    raise ValueError(f"{route!r} is not a route: use '*', a number prefix such as '+86139' "
                     "('+' and 1-15 digits), or 'carrier:' and a name such as "
                     "'carrier:China Mobile'")


@functools.cache
def known_carriers() -> frozenset[str]:
    """The carriers phonenumbers names in English: a misspelt name would never match."""
    return frozenset(names["en"] for names in CARRIER_DATA.values() if names.get("en"))


def _check_route(raw: object) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raise ValueError(f"{raw} must be quoted, as '+{raw}' (YAML reads +{raw} as a number)")
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not a route: use a quoted string")
    kind = route_kind(raw)
    if kind == "carrier":
        name = raw[len(CARRIER):]
        if name not in known_carriers():
            close = difflib.get_close_matches(name, known_carriers(), n=1)
            hint = f"; did you mean 'carrier:{close[0]}'?" if close else ""
            raise ValueError(f"phonenumbers knows no carrier {name!r} (names are its English "
                             f"ones, such as 'China Mobile'){hint}")
    return raw


_Text = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class ConnectionIn(BaseModel):
    """One entry of the file, strictly: unknown keys and numbers for text are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    host: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9.:_\[\]-]{1,253}$")]
    port: Annotated[StrictInt, Field(ge=1, le=65535)]
    system_id: _Text
    password: _Text
    system_type: Annotated[StrictStr, Field(max_length=64)] = ""
    source_addr: _Text | None = None
    binds: Annotated[StrictInt, Field(ge=1, le=32)] = 1
    window: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    max_tps: Annotated[StrictInt, Field(ge=1, le=100000)] | None = None
    routes: Annotated[list[Any], Field(min_length=1)]
    priority: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    weight: Annotated[StrictInt, Field(ge=1, le=1000)] = 1

    @field_validator("routes")
    @classmethod
    def _routes(cls, routes: list[Any]) -> list[Any]:
        checked = [_check_route(route) for route in routes]
        twice = [route for route, n in Counter(checked).items() if n > 1]
        if twice:
            raise ValueError(f"{twice[0]!r} appears more than once")
        return checked


class ConnectionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connections: Annotated[list[ConnectionIn], Field(min_length=1)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, refusing a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _fault(place: str, error: ErrorDetails, entries: list[Any]) -> str:
    """``connection 'cmcc' (connections[0]), field port: ...`` from pydantic's first error."""
    loc = error["loc"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("model_type", "dict_type"):
        msg = "must be a mapping of a connection's fields (id, host, port, ...)"
    if error["type"] == "string_type" and isinstance(error.get("input"), int | float | bool):
        msg += " (quote it: YAML read a number or true/false)"
    if len(loc) >= 2 and loc[0] == "connections" and isinstance(loc[1], int):
        entry = entries[loc[1]] if loc[1] < len(entries) else None
        name = entry.get("id") if isinstance(entry, dict) else None
        who = f"connection {name!r} (connections[{loc[1]}])" if isinstance(name, str) \
            else f"connections[{loc[1]}]"
        what = ".".join(str(part) for part in loc[2:3])
        return f"{place}: {who}" + (f", field {what}" if what else "") + f": {msg}"
    return f"{place}: {'.'.join(map(str, loc)) or 'the file'}: {msg}"


def parse_connections(text: str, settings: Settings, place: str = "SMPP_CONFIG"
                      ) -> tuple[Connection, ...]:
    """Check a connections document whole; defaults for what it leaves out come from SMPP_*.

    :raise ConfigError: the first fault, e.g. ``SMPP_CONFIG x.yaml: connection 'cmcc'
        (connections[0]), field port: Input should be less than or equal to 65535``.
    """
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # safe_load's loader, stricter
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ", ".join(filter(None, [exc.context, exc.problem]))
        hint = " (quote '*': unquoted, YAML reads it as an alias)" if "alias" in what else ""
        raise ConfigError(f"{place}: not YAML: {where}{what}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{place}: not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{place}: must be a mapping with a list of 'connections'")
    entries = document.get("connections")
    entries = entries if isinstance(entries, list) else []
    try:
        parsed = ConnectionsFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_fault(place, exc.errors()[0], entries)) from None
    seen: set[str] = set()
    for index, entry in enumerate(parsed.connections):
        if entry.id in seen:
            raise ConfigError(f"{place}: connection {entry.id!r} (connections[{index}]), field "
                              "id: another connection has this id")
        seen.add(entry.id)
    return tuple(
        Connection(id=c.id, host=c.host, port=c.port, system_id=c.system_id,
                   password=c.password, system_type=c.system_type,
                   source_addr=c.source_addr or settings.SMPP_SOURCE_ADDR, binds=c.binds,
                   window=c.window or settings.SMPP_WINDOW,
                   max_tps=c.max_tps or settings.SMPP_MAX_TPS, routes=tuple(c.routes),
                   priority=c.priority, weight=c.weight)
        for c in parsed.connections)


def load_connections(settings: Settings) -> tuple[Connection, ...]:
    """The connections to keep: the ``SMPP_CONFIG`` file's, else ``default`` from SMPP_*.

    :raise ConfigError: naming the file, and the connection and field at fault.
    """
    path: Path | None = settings.SMPP_CONFIG
    if path is None:
        return (Connection(
            id=DEFAULT_ID, host=settings.SMPP_HOST, port=settings.SMPP_PORT,
            system_id=settings.SMPP_SYSTEM_ID, password=settings.SMPP_PASSWORD,
            system_type=settings.SMPP_SYSTEM_TYPE, source_addr=settings.SMPP_SOURCE_ADDR,
            binds=1, window=settings.SMPP_WINDOW, max_tps=settings.SMPP_MAX_TPS,
            routes=(STAR,)),)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"SMPP_CONFIG {path}: cannot be read: {reason}") from None
    return parse_connections(text, settings, f"SMPP_CONFIG {path}")


def connection_settings(settings: Settings, connection: Connection | None) -> Settings:
    """The settings one connection's binds go by: its account, source, window and rate."""
    if connection is None:
        return settings
    return dataclasses.replace(
        settings, SMPP_HOST=connection.host, SMPP_PORT=connection.port,
        SMPP_SYSTEM_ID=connection.system_id, SMPP_PASSWORD=connection.password,
        SMPP_SYSTEM_TYPE=connection.system_type, SMPP_SOURCE_ADDR=connection.source_addr,
        SMPP_WINDOW=connection.window, SMPP_MAX_TPS=connection.max_tps)
