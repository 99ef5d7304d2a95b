"""The simulated phones: each number's inbox of whole messages, and whoever waits for one."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smpp import codec

__all__ = ["PhoneMessage", "Phones", "code_of", "phone_key"]

_CODE_REQUEST = re.compile(r"(?:回复|reply) (\d{6})", re.IGNORECASE)


def code_of(phone: str, text: str) -> str | None:
    """The code a code SMS asks to reply with (``…回复 384921…``), else None: as an
    ``Smsc.auto_reply``, phones that confirm every payment (benchmarks, load tests)."""
    found = _CODE_REQUEST.search(text)
    return found.group(1) if found else None


def phone_key(phone: str) -> str:
    """The inbox key of a number: its digits, with country code, without ``+``."""
    return phone.strip().lstrip("+")


@dataclass(frozen=True)
class PhoneMessage:
    """An SMS as the phone shows it: whole, however many parts it came in."""

    sender: str
    text: str
    parts: int
    data_coding: int
    message_ids: tuple[str, ...]
    received_at: datetime


class Phones:
    """The inboxes of the simulated phones, by number; a message in parts shows once whole.

    ``changed`` is the SMSC's condition, notified whenever an inbox grows.
    """

    def __init__(self, changed: threading.Condition) -> None:
        self.changed = changed
        self._inbox: dict[str, list[PhoneMessage]] = defaultdict(list)
        # parts of a concatenated SMS: (destination, sender, reference, total) ->
        # part number -> (body, message id)
        self._fragments: dict[tuple[str, str, int, int], dict[int, tuple[bytes, str]]] = {}

    def messages(self, phone: str) -> list[PhoneMessage]:
        with self.changed:
            return list(self._inbox.get(phone_key(phone), []))

    def numbers(self) -> list[str]:
        with self.changed:
            return sorted(self._inbox)

    def wait_for_message(self, phone: str, *, count: int = 1,
                         timeout: float = 10) -> PhoneMessage:
        """Wait until ``phone`` holds ``count`` messages; return the newest."""
        key = phone_key(phone)
        with self.changed:
            if not self.changed.wait_for(lambda: len(self._inbox.get(key, [])) >= count,
                                         timeout):
                raise TimeoutError(f"{key} has {len(self._inbox.get(key, []))} messages, "
                                   f"not {count}, after {timeout} s")
            return self._inbox[key][count - 1]

    def inbox_json(self, phone: str) -> dict[str, Any]:
        """A phone's inbox as the HTTP faces show it, oldest message first; each message with
        the code it asks to reply with (or None), and the newest such code."""
        messages = [{"from": m.sender, "text": m.text, "parts": m.parts,
                     "received_at": m.received_at.isoformat(), "code": code_of(phone, m.text)}
                    for m in self.messages(phone)]
        codes = [m["code"] for m in messages if m["code"]]
        # last_code: what a script replies (the README's walk-through), without parsing texts
        return {"phone": phone_key(phone), "messages": messages,
                "last_code": codes[-1] if codes else None}

    def assemble(self, destination: str, sender: str, body: bytes, message_id: str,
                 data_coding: int, concat: tuple[int, int, int] | None,
                 now: datetime) -> PhoneMessage | None:
        """Take a part for ``destination``; return the message once its every part came.

        ``concat`` is the part's (reference, total, number), None for an SMS in one part.
        """
        if concat is None:
            return _whole(sender, [(body, message_id)], data_coding, now)
        reference, total, number = concat
        key = (destination, sender, reference, total)
        fragments = self._fragments.setdefault(key, {})
        fragments[number] = (body, message_id)
        if len(fragments) != total:
            return None
        del self._fragments[key]
        return _whole(sender, [fragments[n] for n in range(1, total + 1)], data_coding, now)

    def put(self, destination: str, message: PhoneMessage) -> None:
        """Show ``message`` on the phone, waking whoever waits for it."""
        with self.changed:
            self._inbox[destination].append(message)
            self.changed.notify_all()


def _whole(sender: str, parts: list[tuple[bytes, str]], data_coding: int,
           now: datetime) -> PhoneMessage:
    text = "".join(codec.decode_text(body, data_coding) for body, _ in parts)
    return PhoneMessage(sender, text, len(parts), data_coding,
                        tuple(mid for _, mid in parts), now)
