"""The SMSC: its settings and faults, the SMPP protocol it speaks, and where workers bind."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from smpp import codec
from smpp.pdu import HEADER, MAX_PDU_LENGTH, Pdu, PduError, Status, decode, encode
from smpp.simulator import receipts
from smpp.simulator.phones import PhoneMessage, Phones, phone_key
from smpp.simulator.receipts import Submitted
from smpp.simulator.sessions import BIND_COMMANDS, Deliveries, Delivery, EsmeSession

__all__ = ["Smsc", "smsc_address"]


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
        # faults
        self.throttle_next = 0
        self.throttle_status = Status.RTHROTTLED
        self.response_delay = 0.0
        self.receipts_withheld = False
        self.undeliverable: set[str] = set()
        self.rejected: set[str] = set()  # destinations refused at submit (ESME_RINVDSTADR)
        self.keep_submitted = False  # keep each accepted submit_sm's fields, time, bind
        self.submitted: list[dict[str, Any]] = []
        # phones that answer by themselves: auto_reply(phone, text) of each whole SMS a phone
        # gets is the text it replies with, auto_reply_delay seconds later (None: no reply)
        self.auto_reply: Callable[[str, str], str | None] | None = None
        self.auto_reply_delay = 0.0
        self.keep_received = False  # keep every readable PDU the ESMEs send in .received
        self.received: list[Pdu] = []
        # state
        self.binds = 0
        self.most_bound = 0  # sessions bound at once, at the most
        self.unbinds = 0
        self.enquiries = 0  # enquire_link received from ESMEs
        self.enquiry_answers = 0  # enquire_link_resp received for our own enquire_link
        self.submits = 0
        self.outstanding = 0  # submit_sm received and not yet answered, now
        self.max_outstanding = 0  # ... and at the most: how far the ESME pipelines
        self.mo_acknowledged = 0
        self._ids = itertools.count(0x1000)
        self._sessions: set[EsmeSession] = set()
        self._changed = threading.Condition()
        self._phones = Phones(self._changed)
        self._submitted: dict[str, Submitted] = {}
        self._deliveries = Deliveries(self._sessions, self._send, redeliver_after)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reply_task: asyncio.Task[None]
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def redeliver_after(self) -> float:
        """Seconds after which a reply or receipt not acknowledged is offered again."""
        return self._deliveries.redeliver_after

    @redeliver_after.setter
    def redeliver_after(self, seconds: float) -> None:
        self._deliveries.redeliver_after = seconds

    # --- running ---------------------------------------------------------------------------

    def start(self) -> Smsc:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._reply_task = self._loop.create_task(self._deliveries.run())
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

    def _call(self, function: Callable[[], Coroutine[Any, Any, None] | None]) -> None:
        """Run ``function`` on the SMSC's loop and wait for it."""
        assert self._loop is not None

        async def run() -> None:
            result = function()
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
        return self._phones.messages(phone)

    def phones(self) -> list[str]:
        return self._phones.numbers()

    def wait_for_message(self, phone: str, *, count: int = 1,
                         timeout: float = 10) -> PhoneMessage:
        """Wait until ``phone`` holds ``count`` messages; return the newest."""
        return self._phones.wait_for_message(phone, count=count, timeout=timeout)

    def wait_until(self, predicate: Callable[[Smsc], object], timeout: float = 10) -> None:
        """Wait until ``predicate(self)`` holds (checked whenever the SMSC's state changes)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    def inbox_json(self, phone: str) -> dict[str, Any]:
        """A phone's inbox as the HTTP faces show it, oldest message first."""
        return self._phones.inbox_json(phone)

    def reply(self, phone: str, text: str, *, to: str = "10690000") -> None:
        """Send ``text`` from ``phone`` to the service number, split as a phone would."""
        coding, esm_class, parts = codec.encode_parts(text, next(self._ids) & 0xFF)
        assert self._loop is not None
        for part in parts:
            item = Delivery({"source_addr_ton": 1, "source_addr_npi": 1,
                             "source_addr": phone_key(phone), "dest_addr_ton": 0,
                             "dest_addr_npi": 1, "destination_addr": to, "esm_class": esm_class,
                             "data_coding": coding, "short_message": part}, {}, reply=True)
            self._loop.call_soon_threadsafe(self._deliveries.add, item)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- the protocol ------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = EsmeSession(writer)
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
            self._deliveries.put_back(session)
            writer.close()
            self._notify()

    def _send(self, session: EsmeSession, pdu: Pdu) -> None:
        if not session.writer.is_closing():
            session.writer.write(encode(pdu))

    def _respond(self, session: EsmeSession, pdu: Pdu) -> None:
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

    async def _handle(self, session: EsmeSession, pdu: Pdu) -> bool:
        """Act on one PDU; return False to close the connection."""
        command = pdu.command
        if command in BIND_COMMANDS:
            status = self._bind_status(session, pdu)
            if status == Status.ROK:
                session.bound_as = command
                self.binds += 1
                self.most_bound = max(self.most_bound,
                                      sum(s.bound_as is not None for s in self._sessions))
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
                self._deliveries.add(sent[0])
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

    def _bind_status(self, session: EsmeSession, pdu: Pdu) -> int:
        if session.bound_as is not None:
            return Status.RALYBND
        if pdu["system_id"] != self.system_id:
            return Status.RINVSYSID
        if pdu["password"] != self.password:
            return Status.RINVPASWD
        return Status.ROK

    def _submit(self, session: EsmeSession, pdu: Pdu) -> None:
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
            self.submitted.append({**pdu.fields, "at": time.monotonic(), "bind": id(session)})
        number = next(self._ids)
        message_id = f"{number:x}" if self.id_format == "hex" else str(number)
        now = datetime.now(UTC)
        record = Submitted(message_id, destination, now)
        self._submitted[message_id] = record
        self._respond(session, Pdu("submit_sm_resp", pdu.sequence,
                                   fields={"message_id": message_id}))
        state = self._deliver(pdu, destination, message_id, now)
        if state is not None:
            record.state, record.done_at = state, now
            if pdu["registered_delivery"] & 0x01 and not self.receipts_withheld:
                assert self._loop is not None
                shown_id = f"{number:x}" if self.receipt_id_format == "hex" else str(number)
                receipt = receipts.receipt(pdu, record, shown_id, self.receipt_style)
                if self.receipt_delay:
                    self._loop.call_later(self.receipt_delay, self._deliveries.add, receipt)
                else:
                    self._deliveries.add(receipt)

    def _deliver(self, pdu: Pdu, destination: str, message_id: str,
                 now: datetime) -> int | None:
        """Put a part on the phone; return its final state (None: no outcome reported)."""
        if destination in self.undeliverable:
            return 5  # UNDELIVERABLE
        validity = pdu["validity_period"]
        try:
            if validity and not validity.endswith("R") and receipts.parse_absolute(validity) < now:
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
        message = self._phones.assemble(destination, pdu["source_addr"], body, message_id,
                                        pdu["data_coding"], concat, now)
        if message is not None:
            self._store(destination, message)
        return 2

    def _store(self, destination: str, message: PhoneMessage) -> None:
        # Decided before the message shows, so whoever waits for it sees the decision made.
        answer = (self.auto_reply(destination, message.text) if self.auto_reply is not None
                  else None)
        self._phones.put(destination, message)
        if answer:
            assert self._loop is not None
            self._loop.call_later(self.auto_reply_delay,
                                  lambda: self.reply(destination, answer, to=message.sender))

    def _query(self, session: EsmeSession, pdu: Pdu) -> None:
        record = self._submitted.get(pdu["message_id"])
        if record is None:
            self._send(session, Pdu("query_sm_resp", pdu.sequence, Status.RQUERYFAIL))
            return
        self._send(session, Pdu("query_sm_resp", pdu.sequence,
                                fields=receipts.query_answer(record)))


def smsc_address(settings: Any) -> tuple[str, int, Smsc | None]:
    """Where the SMPP worker binds: SMPP_HOST, or a built-in SMSC started in this process.

    Returns host, port, and the built-in SMSC (None with SMPP_HOST), whose phones the caller
    shows: the demo page of ``python app.py``, or the phones page of ``python -m smpp``.
    """
    if settings.SMPP_HOST is not None:
        return settings.SMPP_HOST, settings.SMPP_PORT, None
    smsc = Smsc(system_id=settings.SMPP_SYSTEM_ID, password=settings.SMPP_PASSWORD).start()
    return "127.0.0.1", smsc.port, smsc
