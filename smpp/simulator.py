"""The built-in SMSC: a small SMPP 3.4 server with simulated phones, for local runs and tests.

It accepts binds with credentials, answers ``submit_sm`` with message ids, reassembles
concatenated parts into each phone's inbox, sends delivery receipts (as TLVs and as text),
answers ``query_sm``, and lets a phone reply (``deliver_sm``). Receipts and replies go to the
bound receivers in turn, and come again until acknowledged. Faults on demand: throttling, slow
responses, dropped or refused connections, undeliverable phones, receipts that never come, raw
bytes.

Python API: ``Smsc(...).start()``, ``messages(phone)``, ``wait_for_message(phone)``,
``reply(phone, text)``. HTTP hook: ``SmscHttp(smsc).start()`` (see ``python -m smpp.simulator``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import itertools
import json
import logging
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

from smpp import codec
from smpp.pdu import (
    HEADER,
    MAX_PDU_LENGTH,
    TLV_MESSAGE_STATE,
    TLV_RECEIPTED_MESSAGE_ID,
    Pdu,
    PduError,
    Status,
    decode,
    encode,
)

__all__ = ["PhoneMessage", "Smsc", "SmscHttp", "code_of", "smsc_address"]

log = logging.getLogger(__name__)

_BIND_COMMANDS = {"bind_transceiver", "bind_transmitter", "bind_receiver"}
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


@dataclass
class _Submitted:
    message_id: str
    destination: str
    submitted_at: datetime
    state: int = 1  # ENROUTE until delivered, expired or found undeliverable
    done_at: datetime | None = None


@dataclass(frozen=True)
class _Delivery:
    """A deliver_sm the SMSC owes an ESME: a phone's reply or a delivery receipt."""

    fields: dict
    tlvs: dict[int, bytes]
    reply: bool


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    bound_as: str | None = None
    sequence: itertools.count = field(default_factory=lambda: itertools.count(1))
    # deliveries sent and not acknowledged yet: sequence -> (delivery, sent at)
    unacknowledged: dict[int, tuple[_Delivery, float]] = field(default_factory=dict)

    @property
    def receives(self) -> bool:
        return self.bound_as in ("bind_transceiver", "bind_receiver")


class Smsc:
    """An SMSC on 127.0.0.1, run by its own event loop in a background thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, system_id: str = "tvpay",
                 password: str = "secret", id_format: str = "hex",
                 receipt_id_format: str | None = None, receipt_style: str = "both",
                 receipt_delay: float = 0.0, redeliver_after: float = 2.0) -> None:
        self.host, self.port = host, port
        self.system_id, self.password = system_id, password
        self.id_format = id_format
        self.receipt_id_format = receipt_id_format or id_format
        self.receipt_style = receipt_style  # "tlv", "text" or "both"
        self.receipt_delay = receipt_delay
        self.redeliver_after = redeliver_after
        # faults
        self.throttle_next = 0
        self.throttle_status = Status.RTHROTTLED
        self.response_delay = 0.0
        self.receipts_withheld = False
        self.undeliverable: set[str] = set()
        self.rejected: set[str] = set()  # destinations refused at submit (ESME_RINVDSTADR)
        self.keep_submitted = False  # keep the fields of every accepted submit_sm in .submitted
        self.submitted: list[dict] = []
        # phones that answer by themselves: auto_reply(phone, text) of each whole SMS a phone
        # gets is the text it replies with, auto_reply_delay seconds later (None: no reply)
        self.auto_reply: Callable[[str, str], str | None] | None = None
        self.auto_reply_delay = 0.0
        self.keep_received = False  # keep every readable PDU the ESMEs send in .received
        self.received: list[Pdu] = []
        # state
        self.binds = 0
        self.unbinds = 0
        self.enquiries = 0  # enquire_link received from ESMEs
        self.enquiry_answers = 0  # enquire_link_resp received for our own enquire_link
        self.submits = 0
        self.outstanding = 0  # submit_sm received and not yet answered, now
        self.max_outstanding = 0  # ... and at the most: how far the ESME pipelines
        self.mo_acknowledged = 0
        self._ids = itertools.count(0x1000)
        self._sessions: set[_Session] = set()
        self._inbox: dict[str, list[PhoneMessage]] = defaultdict(list)
        self._fragments: dict[tuple[str, str, int, int], dict[int, tuple[bytes, str]]] = {}
        self._submitted: dict[str, _Submitted] = {}
        self._deliveries: deque[_Delivery] = deque()
        self._waiting: asyncio.Event | None = None  # set when there is something to deliver
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reply_task: asyncio.Task[None]
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # --- running ---------------------------------------------------------------------------

    def start(self) -> Smsc:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._reply_task = self._loop.create_task(self._deliver_pending())
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="smsc", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the SMSC simulator did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    async def _shutdown(self) -> None:
        """Close every connection, let their handlers end, then stop the loop."""
        await self._close_all()
        self._reply_task.cancel()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(others, timeout=5)
        asyncio.get_running_loop().stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, function, *args) -> None:  # type: ignore[no-untyped-def]
        """Run ``function`` on the SMSC's loop and wait for it."""
        assert self._loop is not None

        async def run() -> None:
            result = function(*args)
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    # --- faults ------------------------------------------------------------------------------

    def drop_connections(self) -> None:
        """Cut every ESME's connection at once, as a network failure would."""
        self._call(self._drop)

    def go_down(self) -> None:
        """Stop listening and cut every connection: binds are refused until ``come_back``."""
        self._call(self._close_all)

    def come_back(self) -> None:
        self._call(self._listen)

    def enquire(self) -> None:
        """Send enquire_link to every bound ESME (they must answer)."""

        def send() -> None:
            for session in self._sessions:
                self._send(session, Pdu("enquire_link", next(session.sequence)))

        self._call(send)

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes to every bound ESME (malformed PDUs for fault tests)."""

        def write() -> None:
            for session in self._sessions:
                session.writer.write(data)

        self._call(write)

    def _drop(self) -> None:
        for session in list(self._sessions):
            session.writer.transport.abort()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._drop()

    # --- phones ------------------------------------------------------------------------------

    def messages(self, phone: str) -> list[PhoneMessage]:
        with self._changed:
            return list(self._inbox.get(phone_key(phone), []))

    def phones(self) -> list[str]:
        with self._changed:
            return sorted(self._inbox)

    def wait_for_message(self, phone: str, *, count: int = 1,
                         timeout: float = 10) -> PhoneMessage:
        """Wait until ``phone`` holds ``count`` messages; return the newest."""
        key = phone_key(phone)
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._inbox.get(key, [])) >= count,
                                          timeout):
                raise TimeoutError(f"{key} has {len(self._inbox.get(key, []))} messages, "
                                   f"not {count}, after {timeout} s")
            return self._inbox[key][count - 1]

    def wait_until(self, predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
        """Wait until ``predicate(self)`` holds (checked whenever the SMSC's state changes)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    def inbox_json(self, phone: str) -> dict[str, Any]:
        """A phone's inbox as the HTTP faces show it, oldest message first."""
        return {"phone": phone_key(phone), "messages": [
            {"from": m.sender, "text": m.text, "parts": m.parts,
             "received_at": m.received_at.isoformat()} for m in self.messages(phone)]}

    def reply(self, phone: str, text: str, *, to: str = "10690000") -> None:
        """Send ``text`` from ``phone`` to the service number, split as a phone would."""
        coding, esm_class, parts = codec.encode_parts(text, next(self._ids) & 0xFF)
        assert self._loop is not None
        for part in parts:
            item = _Delivery({"source_addr_ton": 1, "source_addr_npi": 1,
                              "source_addr": phone_key(phone), "dest_addr_ton": 0,
                              "dest_addr_npi": 1, "destination_addr": to, "esm_class": esm_class,
                              "data_coding": coding, "short_message": part}, {}, reply=True)
            self._loop.call_soon_threadsafe(self._queue_delivery, item)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- the protocol ------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.add(session)
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                length = int.from_bytes(header[:4], "big")
                if not HEADER.size <= length <= MAX_PDU_LENGTH:
                    break  # the stream cannot be re-synchronised
                raw = header + await reader.readexactly(length - HEADER.size)
                try:
                    pdu = decode(raw)
                except PduError as exc:
                    sequence = int.from_bytes(raw[12:16], "big")
                    self._send(session, Pdu("generic_nack", sequence, exc.status))
                    continue
                if self.keep_received:
                    self.received.append(pdu)
                    self._notify()
                if not await self._handle(session, pdu):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._sessions.discard(session)
            # what the ESME did not acknowledge is delivered again, first
            self._deliveries.extendleft(reversed([d for d, _ in session.unacknowledged.values()]))
            self._wake()
            writer.close()
            self._notify()

    def _send(self, session: _Session, pdu: Pdu) -> None:
        if not session.writer.is_closing():
            session.writer.write(encode(pdu))

    def _respond(self, session: _Session, pdu: Pdu) -> None:
        """Answer a submit_sm, after ``response_delay`` when the SMSC is told to be slow."""
        if not self.response_delay:
            self.max_outstanding = max(self.max_outstanding, 1)
            self._send(session, pdu)
            return
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)

        def answer() -> None:
            self.outstanding -= 1
            self._send(session, pdu)

        assert self._loop is not None
        self._loop.call_later(self.response_delay, answer)

    async def _handle(self, session: _Session, pdu: Pdu) -> bool:
        """Act on one PDU; return False to close the connection."""
        command = pdu.command
        if command in _BIND_COMMANDS:
            status = self._bind_status(session, pdu)
            if status == Status.ROK:
                session.bound_as = command
                self.binds += 1
            self._send(session, Pdu(f"{command}_resp", pdu.sequence, status,
                                    {"system_id": "tvpay-smsc"}))
            self._notify()
            return status == Status.ROK
        if command == "enquire_link":
            self.enquiries += 1
            self._send(session, Pdu("enquire_link_resp", pdu.sequence))
        elif command == "enquire_link_resp":
            self.enquiry_answers += 1
        elif command == "unbind":
            self.unbinds += 1
            self._send(session, Pdu("unbind_resp", pdu.sequence))
            await session.writer.drain()
            self._notify()
            return False
        elif command == "deliver_sm_resp":
            sent = session.unacknowledged.pop(pdu.sequence, None)
            if sent is not None and pdu.status == Status.ROK:
                if sent[0].reply:
                    self.mo_acknowledged += 1
                    self._notify()
            elif sent is not None:
                self._queue_delivery(sent[0])
        elif command == "generic_nack" or pdu.is_response:
            pass
        elif session.bound_as is None:
            self._send(session, Pdu(f"{command}_resp", pdu.sequence, Status.RINVBNDSTS))
        elif command == "submit_sm":
            self._submit(session, pdu)
        elif command == "query_sm":
            self._query(session, pdu)
        else:
            self._send(session, Pdu("generic_nack", pdu.sequence, Status.RINVCMDID))
        return True

    def _bind_status(self, session: _Session, pdu: Pdu) -> int:
        if session.bound_as is not None:
            return Status.RALYBND
        if pdu["system_id"] != self.system_id:
            return Status.RINVSYSID
        if pdu["password"] != self.password:
            return Status.RINVPASWD
        return Status.ROK

    def _submit(self, session: _Session, pdu: Pdu) -> None:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            self._respond(session, Pdu("submit_sm_resp", pdu.sequence, self.throttle_status))
            return
        destination = phone_key(pdu["destination_addr"])
        if not destination.isdigit() or destination in self.rejected:
            self._respond(session, Pdu("submit_sm_resp", pdu.sequence, Status.RINVDSTADR))
            return
        self.submits += 1
        if self.keep_submitted:
            self.submitted.append({**pdu.fields, "at": time.monotonic()})
        number = next(self._ids)
        message_id = f"{number:x}" if self.id_format == "hex" else str(number)
        now = datetime.now(UTC)
        record = _Submitted(message_id, destination, now)
        self._submitted[message_id] = record
        self._respond(session, Pdu("submit_sm_resp", pdu.sequence,
                                   fields={"message_id": message_id}))
        state = self._deliver(pdu, destination, message_id, now)
        if state is not None:
            record.state, record.done_at = state, now
            if pdu["registered_delivery"] & 0x01 and not self.receipts_withheld:
                assert self._loop is not None
                receipt = self._receipt(pdu, record, number)
                if self.receipt_delay:
                    self._loop.call_later(self.receipt_delay, self._queue_delivery, receipt)
                else:
                    self._queue_delivery(receipt)

    def _deliver(self, pdu: Pdu, destination: str, message_id: str,
                 now: datetime) -> int | None:
        """Put a part on the phone; return its final state (None: no outcome reported)."""
        if destination in self.undeliverable:
            return 5  # UNDELIVERABLE
        validity = pdu["validity_period"]
        try:
            if validity and not validity.endswith("R") and _parse_absolute(validity) < now:
                return 3  # EXPIRED: a code SMS never arrives after its code has lapsed
        except (ValueError, IndexError):
            return 8  # REJECTED: an unreadable validity period
        body = pdu["short_message"]
        concat = None
        if pdu["esm_class"] & codec.ESM_UDHI:
            try:
                concat, body = codec.split_udh(body)
            except ValueError:
                return 8  # REJECTED
        if concat is None:
            self._store(destination, pdu["source_addr"], [(body, message_id)],
                        pdu["data_coding"], now)
            return 2
        reference, total, number = concat
        key = (destination, pdu["source_addr"], reference, total)
        fragments = self._fragments.setdefault(key, {})
        fragments[number] = (body, message_id)
        if len(fragments) == total:
            del self._fragments[key]
            self._store(destination, pdu["source_addr"],
                        [fragments[n] for n in range(1, total + 1)], pdu["data_coding"], now)
        return 2

    def _store(self, destination: str, sender: str, parts: list[tuple[bytes, str]],
               data_coding: int, now: datetime) -> None:
        text = "".join(codec.decode_text(body, data_coding) for body, _ in parts)
        message = PhoneMessage(sender, text, len(parts), data_coding,
                               tuple(mid for _, mid in parts), now)
        # Decided before the message shows, so whoever waits for it sees the decision made.
        answer = self.auto_reply(destination, text) if self.auto_reply is not None else None
        with self._changed:
            self._inbox[destination].append(message)
            self._changed.notify_all()
        if answer:
            assert self._loop is not None
            self._loop.call_later(self.auto_reply_delay,
                                  lambda: self.reply(destination, answer, to=sender))

    def _receipt(self, submit: Pdu, record: _Submitted, number: int) -> _Delivery:
        shown_id = f"{number:x}" if self.receipt_id_format == "hex" else str(number)
        text = codec.receipt_text(shown_id, record.state, record.submitted_at,
                                  record.done_at or record.submitted_at)
        tlvs = {}
        if self.receipt_style in ("tlv", "both"):
            tlvs = {TLV_RECEIPTED_MESSAGE_ID: record.message_id.encode() + b"\x00",
                    TLV_MESSAGE_STATE: bytes([record.state])}
        short_message = text.encode() if self.receipt_style in ("text", "both") else b""
        return _Delivery({
            "source_addr_ton": submit["dest_addr_ton"], "source_addr_npi": 1,
            "source_addr": submit["destination_addr"], "dest_addr_ton": 0, "dest_addr_npi": 1,
            "destination_addr": submit["source_addr"], "esm_class": codec.ESM_DELIVERY_RECEIPT,
            "short_message": short_message, "data_coding": 0,
        }, tlvs, reply=False)

    def _query(self, session: _Session, pdu: Pdu) -> None:
        record = self._submitted.get(pdu["message_id"])
        if record is None:
            self._send(session, Pdu("query_sm_resp", pdu.sequence, Status.RQUERYFAIL))
            return
        final = record.done_at.strftime("%y%m%d%H%M%S") + "000+" if record.done_at else ""
        self._send(session, Pdu("query_sm_resp", pdu.sequence, fields={
            "message_id": record.message_id, "final_date": final,
            "message_state": record.state, "error_code": 0}))

    def _queue_delivery(self, item: _Delivery) -> None:
        self._deliveries.append(item)
        self._wake()

    def _wake(self) -> None:
        if self._waiting is not None:
            self._waiting.set()

    async def _deliver_pending(self) -> None:
        """Hand queued replies and receipts to a bound receiver, each until acknowledged.

        What is not acknowledged within ``redeliver_after`` seconds is offered again.
        """
        self._waiting = asyncio.Event()
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        while True:
            try:
                await asyncio.wait_for(self._waiting.wait(), timeout=0.25)
            except TimeoutError:
                pass
            self._waiting.clear()
            now = loop.time()
            if now >= next_sweep:
                next_sweep = now + min(0.25, self.redeliver_after / 4)
                for session in self._sessions:
                    late = [seq for seq, (_, sent) in session.unacknowledged.items()
                            if now - sent > self.redeliver_after]
                    for sequence in late:
                        self._deliveries.append(session.unacknowledged.pop(sequence)[0])
            # like SMSCs that spread deliveries over every bind of the same account
            receivers = itertools.cycle([s for s in self._sessions if s.receives
                                         and not s.writer.is_closing()] or [None])
            while self._deliveries and (session := next(receivers)) is not None:
                item = self._deliveries.popleft()
                sequence = next(session.sequence)
                session.unacknowledged[sequence] = (item, now)
                self._send(session, Pdu("deliver_sm", sequence, fields=item.fields,
                                        tlvs=item.tlvs))


def _parse_absolute(value: str) -> datetime:
    """An SMPP absolute time ``YYMMDDhhmmsstnnp`` as an aware datetime."""
    base = datetime.strptime(value[:12], "%y%m%d%H%M%S").replace(tzinfo=UTC)
    offset = int(value[13:15]) * 15 * 60 * (-1 if value[15] == "+" else 1)
    return datetime.fromtimestamp(base.timestamp() + offset, UTC)


# --- the HTTP hook ---------------------------------------------------------------------------


class SmscHttp:
    """A small local HTTP face of the simulated phones.

    ``GET /phones/<phone>/messages`` (JSON), ``POST /phones/<phone>/reply`` with JSON or form
    field ``text``, and ``GET /`` a plain page listing inboxes with a reply form each.
    """

    def __init__(self, smsc: Smsc, host: str = "127.0.0.1", port: int = 0) -> None:
        self.smsc = smsc
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self.port = self._server.server_address[1]

    def start(self) -> SmscHttp:
        threading.Thread(target=self._server.serve_forever, name="smsc-http",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        smsc = self.smsc

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("smsc http: " + format, *args)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: object) -> None:
                self._answer(status, json.dumps(data, ensure_ascii=False).encode(),
                             "application/json; charset=utf-8")

            def do_GET(self) -> None:  # noqa: N802
                parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
                if parts == []:
                    self._answer(200, _page(smsc).encode(), "text/html; charset=utf-8")
                elif len(parts) == 3 and parts[0] == "phones" and parts[2] == "messages":
                    self._json(200, smsc.inbox_json(parts[1]))
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                parts = [unquote(p) for p in self.path.split("/") if p]
                length = min(int(self.headers.get("Content-Length") or 0), 10_000)
                raw = self.rfile.read(length).decode("utf-8", errors="replace")
                if not (len(parts) == 3 and parts[0] == "phones" and parts[2] == "reply"):
                    self._json(404, {"error": "not found"})
                    return
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    try:
                        text = json.loads(raw).get("text")
                    except (ValueError, AttributeError):
                        text = None
                else:
                    text = (parse_qs(raw).get("text") or [None])[0]
                if not isinstance(text, str) or not text or not phone_key(parts[1]).isdigit():
                    self._json(400, {"error": "a phone number and a text are required"})
                    return
                smsc.reply(parts[1], text)
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    self._json(202, {"queued": True})
                else:
                    self.send_response(303)
                    self.send_header("Location", "/")
                    self.end_headers()

        return Handler


def _page(smsc: Smsc) -> str:
    rows = []
    for phone in smsc.phones():
        items = "".join(f"<li>{html.escape(m.text)}</li>" for m in smsc.messages(phone))
        rows.append(
            f"<section><h2>+{html.escape(phone)}</h2><ul>{items}</ul>"
            f'<form method="post" action="/phones/{html.escape(phone)}/reply">'
            f'<input name="text" required><button>Reply</button></form></section>')
    return ("<!doctype html><meta charset=utf-8><title>SMSC phones</title>"
            "<h1>Simulated phones</h1>" + ("".join(rows) or "<p>No messages yet.</p>"))


def smsc_address(settings: Any) -> tuple[str, int, Smsc | None]:
    """Where the SMPP worker binds: SMPP_HOST, or a built-in SMSC started in this process.

    Returns host, port, and the built-in SMSC (None with SMPP_HOST), whose phones the caller
    shows: the demo page of ``python app.py``, or the phones page of ``python -m smpp``.
    """
    if settings.SMPP_HOST is not None:
        return settings.SMPP_HOST, settings.SMPP_PORT, None
    smsc = Smsc(system_id=settings.SMPP_SYSTEM_ID, password=settings.SMPP_PASSWORD).start()
    return "127.0.0.1", smsc.port, smsc


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the built-in SMSC simulator.")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--http-port", type=int, default=2776)
    parser.add_argument("--system-id", default="tvpay")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--no-receipts", action="store_true",
                        help="never send delivery receipts")
    parser.add_argument("--auto-reply-codes", type=float, metavar="SECONDS",
                        help="phones reply to each code SMS with its code, SECONDS later")
    parser.add_argument("--redeliver-after", type=float, default=2.0, metavar="SECONDS",
                        help="offer a reply or receipt again when not acknowledged by then")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    smsc = Smsc(port=args.port, system_id=args.system_id, password=args.password,
                redeliver_after=args.redeliver_after).start()
    smsc.receipts_withheld = args.no_receipts
    if args.auto_reply_codes is not None:
        smsc.auto_reply, smsc.auto_reply_delay = code_of, args.auto_reply_codes
    http = SmscHttp(smsc, port=args.http_port).start()
    print(f"SMSC on 127.0.0.1:{smsc.port}, phones on http://127.0.0.1:{http.port}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    http.stop()
    smsc.stop()


if __name__ == "__main__":
    main()
