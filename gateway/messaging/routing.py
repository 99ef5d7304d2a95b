"""Which connection an SMS goes by: pure (no I/O), so every rule is tested without an SMSC.

The rules, in order:

1. **Specificity picks the candidates.** A destination's candidates are the connections whose
   routes match it at the most specific level found: the longest matching number prefix; else
   its carrier (``carrier:China Mobile``, phonenumbers' English name of the carrier the number's
   block was allocated to, so a ported number still counts as its first carrier's); else
   ``*``. Connections matching only less specifically are *not* a fallback: ``+86139 → cmcc``
   means those numbers never leave by the cheap ``*`` aggregator. To back a route up, give the
   backup the same route at a higher priority (``examples/smpp-connections.yaml``).
2. **Priority is the fallback.** Lowest priority first; a connection the caller finds unusable
   (unbound, refusing binds, throttled past its backoff) is skipped for the next one.
3. **Weight shares a priority.** Among the usable connections of one priority, each is picked
   in proportion to its weight.

Two misses, kept apart: ``Miss.NO_ROUTE`` (no connection matches at all: the SMS fails with
reason ``no_route``) and ``Miss.NONE_USABLE`` (some match, none usable now: wait, or fail over
to the next provider).
"""

from __future__ import annotations

import enum
import functools
import random
import re
from collections.abc import Callable, Iterable
from itertools import groupby

import phonenumbers
from phonenumbers.carrierdata import CARRIER_DATA

from gateway.messaging.connections import CARRIER, Connection, route_kind

__all__ = ["Miss", "Router", "carrier_of"]

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


class Miss(enum.Enum):
    """Why no connection was chosen; the value of ``NO_ROUTE`` is the SMS's failure reason."""

    NO_ROUTE = "no_route"  # no connection's routes match the destination: it fails
    NONE_USABLE = "none_usable"  # some match, none is usable now: retry later or fail over


def carrier_of(e164: str) -> str:
    """phonenumbers' English carrier name for a mobile number in E.164, ``""`` if none.

    What ``carrier.name_for_number(parse(e164), "en")`` says of a valid mobile number, at the
    cost of a dictionary look-up: the name depends on the number's first digits only (at most
    the longest carrier prefix of its country code), so it is cached per such prefix. Parsing
    and checking the number (a fifth of the cost of the call) is left to ``gateway.phones``,
    which every destination has been through; a number that is not a mobile is matched by its
    digits all the same.
    """
    digits = e164[1:]
    for length in (1, 2, 3):
        if int(digits[:length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return _carrier_of_prefix(digits[:_longest_prefix(digits[:length])])
    return ""


@functools.cache
def _longest_prefix(country_code: str) -> int:
    return max((len(key) for key in CARRIER_DATA if key.startswith(country_code)), default=0)


@functools.lru_cache(maxsize=1 << 16)
def _carrier_of_prefix(digits: str) -> str:
    for length in range(len(digits), 0, -1):
        names = CARRIER_DATA.get(digits[:length])
        if names is not None and names.get("en") is not None:
            return str(names["en"])
    return ""


class Router:
    """The connections' routes, indexed: ``choose`` (one id) and ``candidates`` (the order)."""

    def __init__(self, connections: Iterable[Connection]) -> None:
        self._prefixes: dict[str, list[Connection]] = {}
        self._carriers: dict[str, list[Connection]] = {}
        self._star: list[Connection] = []
        ids: list[str] = []
        for connection in connections:
            if connection.id in ids:
                raise ValueError(f"two connections have the id {connection.id!r}")
            ids.append(connection.id)
            for route in connection.routes:
                kind = route_kind(route)
                if kind == "star":
                    self._star.append(connection)
                elif kind == "carrier":
                    self._carriers.setdefault(route[len(CARRIER):], []).append(connection)
                else:
                    self._prefixes.setdefault(route, []).append(connection)
        self._lengths = sorted({len(prefix) for prefix in self._prefixes}, reverse=True)
        self.connections = tuple(ids)  # their ids, in the file's order
        self._rng = random.Random()

    def matching(self, e164: str) -> list[list[Connection]]:
        """The candidates (rule 1), grouped by priority, lowest first; ``[]``: no route.

        :raise ValueError: ``e164`` is not a number in E.164 (``+8613912345678``).
        """
        if not _E164.match(e164):
            raise ValueError(f"not a number in E.164: {e164!r}")
        found: list[Connection] = []
        for length in self._lengths:
            if length <= len(e164) and (found := self._prefixes.get(e164[:length], [])):
                break
        if not found and self._carriers:
            found = self._carriers.get(carrier_of(e164), [])
        found = found or self._star
        ordered = sorted(found, key=lambda c: c.priority)  # stable: the file's order within one
        return [list(group) for _, group in groupby(ordered, key=lambda c: c.priority)]

    def choose(self, e164: str, usable: Callable[[str], bool],
               rng: random.Random | None = None) -> str | Miss:
        """The id of the connection to send by now, or why there is none.

        ``usable(id)`` says whether a connection can take a submit now; it is asked only of
        connections that match, priority by priority, until one priority has a usable one.
        """
        groups = self.matching(e164)
        if not groups:
            return Miss.NO_ROUTE
        rng = rng or self._rng
        for group in groups:
            ready = [c for c in group if usable(c.id)]
            if ready:
                return _weighted_pick(ready, rng).id
        return Miss.NONE_USABLE

    def route(self, e164: str, usable: Callable[[str], bool],
              rng: random.Random | None = None, *, fallback: bool = False) -> str | Miss:
        """The connection an SMS goes by now: ``choose``'s. When none is usable now:
        ``Miss.NONE_USABLE`` with a ``fallback`` (the next SMS provider takes it), else the
        first candidate's (it waits there for a bind, or is routed again when another comes).
        ``Miss.NO_ROUTE`` when no route matches, or ``e164`` is no number at all."""
        try:
            chosen = self.choose(e164, usable, rng)
        except ValueError:
            return Miss.NO_ROUTE
        if chosen is Miss.NONE_USABLE and not fallback:
            return self.candidates(e164, rng)[0]
        return chosen

    def candidates(self, e164: str, rng: random.Random | None = None) -> list[str]:
        """Every candidate's id in the order to try them: priorities ascending, and within
        one a weighted random order; ``[]``: no route. For a caller that walks the list."""
        rng = rng or self._rng
        order: list[str] = []
        for group in self.matching(e164):
            rest = list(group)
            while rest:
                pick = _weighted_pick(rest, rng)
                rest.remove(pick)
                order.append(pick.id)
        return order


def _weighted_pick(connections: list[Connection], rng: random.Random) -> Connection:
    ticket = rng.randrange(sum(c.weight for c in connections))
    for connection in connections:
        ticket -= connection.weight
        if ticket < 0:
            return connection
    raise AssertionError("unreachable: the tickets add up to the weights")
