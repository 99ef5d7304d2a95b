"""Hostile SMS texts and malformed PDUs from the SMSC: the SMPP worker survives and answers.

Everything travels over real sockets: the built-in SMSC sends each text as a phone would
(``Smsc.reply``) or writes crafted bytes to the worker's connection (``Smsc.send_raw``), and
keeps what the worker answers (``keep_received``). After each fault the worker must still be
bound (or bound again), lose and duplicate no SMS, and carry a whole order by SMS code.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.messaging import commands
from gateway.store.models import Order
from smpp import codec
from smpp.pdu import COMMAND_IDS, HEADER, Pdu, Status, encode
from smpp.simulator import Smsc
from tests.conftest import CARD_ONLY, RICH, accounts, order, sms_to, stored_order
from tests.smpp_helpers import running, wait_until

pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000,
                                  SMPP_ENQUIRE_LINK_SECONDS=1, SMPP_RESPONSE_TIMEOUT=2)

HELP = "6位验证码"  # in the help text every unknown SMS gets
CODE_SMS = re.compile(r"回复 (\d{6})")
RAW_SEQUENCE = 0x7F000000  # far from the sequences the SMSC and the worker use


# --- helpers ------------------------------------------------------------------------------------


def raw_pdu(command_id: int, sequence: int, body: bytes = b"", *, status: int = 0,
            length: int | None = None) -> bytes:
    """A PDU as bytes, with its command_length right unless ``length`` says otherwise."""
    size = HEADER.size + len(body) if length is None else length
    return HEADER.pack(size, command_id, status, sequence) + body


def deliver_sm(sequence: int, short_message: bytes, *, data_coding: int = 0,
               esm_class: int = 0, sender: str = RICH) -> bytes:
    """A viewer's SMS as the SMSC sends it, with any body and data coding."""
    return encode(Pdu("deliver_sm", sequence, fields={
        "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": sender.lstrip("+"),
        "dest_addr_ton": 0, "dest_addr_npi": 1, "destination_addr": "10690000",
        "esm_class": esm_class, "data_coding": data_coding, "short_message": short_message}))


def answer_to(smsc: Smsc, sequence: int) -> Pdu:
    """The worker's answer to the PDU the SMSC wrote with ``sequence``."""
    def answered(s: Smsc) -> bool:
        return any(p.sequence == sequence and p.is_response for p in s.received)
    smsc.wait_until(answered, timeout=10)
    return next(p for p in smsc.received if p.sequence == sequence and p.is_response)


def answers_to(smsc: Smsc, sequence: int) -> list[Pdu]:
    """Every answer to ``sequence`` so far, once the worker has read all sent before now:
    it answers an enquire_link only after the PDUs that came before it."""
    before = smsc.enquiry_answers
    smsc.enquire()
    smsc.wait_until(lambda s: s.enquiry_answers > before, timeout=10)
    return [p for p in smsc.received if p.sequence == sequence and p.is_response]


def code_sms(smsc: Smsc, phone: str) -> list[str]:
    return [m.text for m in smsc.messages(phone) if CODE_SMS.search(m.text)]


def pay_by_sms(client, gw, smsc: Smsc, phone: str, *, reply=None) -> str:
    """Order, read the code SMS on the phone, text it back, see the order activated."""
    sent = len(code_sms(smsc, phone))
    created = order(client, phone, "vip_month").get_json()
    assert created["status"] == "awaiting_code", created
    wait_until(lambda: len(code_sms(smsc, phone)) == sent + 1, what="the code SMS")
    code = CODE_SMS.search(code_sms(smsc, phone)[-1]).group(1)
    smsc.reply(phone, reply(code) if reply else code)
    wait_until(lambda: stored_order(gw, created["id"]).status == "activated",
               what="the reply to activate the order")
    wait_until(lambda: any("支付成功" in m.text for m in smsc.messages(phone)),
               what="the confirmation SMS")
    return created["id"]


def orders(gw) -> dict[str, str]:
    with gw.db.read() as session:
        return {o.id: o.status for o in session.scalars(select(Order))}


def smpp_threads_alive() -> bool:
    names = {thread.name for thread in threading.enumerate()}
    return {"smpp-feeder", "smpp-recorder"} <= names


def no_full_phone_logged(caplog: pytest.LogCaptureFixture, *numbers: str) -> None:
    said = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    for number in numbers:
        for spelling in (number, number.lstrip("+"), number[3:]):  # +86…, 86…, national
            assert spelling not in said, spelling


# --- hostile texts ------------------------------------------------------------------------------

# (what, text, answers): answers is the number of SMS the service sends back.
HOSTILE_TEXTS = [
    ("10 KB, 66 parts", "A" * 10_000, 0),  # longer than any reply: acknowledged, ignored
    ("3000 Chinese characters, 45 parts", "测" * 3000, 0),
    ("format strings", "%s%n%x%p{0}{__class__}{!r}%(secret)s${jndi:ldap://x}", 1),
    ("SQL", "'; DROP TABLE orders;--", 1),
    ("SQL in a command", "BIND '); DELETE FROM wallets;--", 1),
    ("astral planes and emoji", "𝕳𝖊𝖑𝖑𝖔 😀👨‍👩‍👧🇨🇳 \U0001F9EA \U0010FFFD \U000E0001", 1),
    ("combining marks", "Z̴̡̪͚̈́a̷̢̛l̸͎̈g̵̱͝o̸̧͂" * 10, 1),
    ("right to left", "\u202eمرحبا שלום\u202c\u200f123456", 1),
    ("NUL and control characters", "\x00\x01\x1b\x7f\x00123456\x00", 1),
    ("zero-width and BOM", "\ufeff\u200b\u200d\u2060", 1),
    ("a command with NUL", "BIND \x00ABCDEF", 1),
    ("PAY with an odd number", "PAY ²", 1),
    ("only spaces", "   \t\n ", 1),
]


def test_hostile_texts_are_acknowledged_answered_and_change_nothing(client, seeded, smsc,
                                                                     caplog):
    gw = seeded
    caplog.set_level(logging.DEBUG)
    with running(gw, smsc.port) as [worker]:
        pending = order(client, RICH).get_json()
        wait_until(lambda: len(code_sms(smsc, RICH)) == 1, what="the code SMS")
        money, before = accounts(gw), orders(gw)
        for what, text, answers in HOSTILE_TEXTS:
            acknowledged, sent = smsc.mo_acknowledged, len(sms_to(gw, RICH))
            inbox = len(smsc.messages(RICH))
            parts = len(codec.encode_parts(text, 0)[2])
            smsc.reply(RICH, text)
            wait_until(lambda: smsc.mo_acknowledged == acknowledged + parts,  # noqa: B023
                       what=f"every part of {what} acknowledged with ESME_ROK")
            assert len(sms_to(gw, RICH)) == sent + answers, what
            if answers:
                answer = smsc.wait_for_message(RICH, count=inbox + 1)
                if commands.parse(text) is None:
                    assert HELP in answer.text, what
        assert accounts(gw) == money and orders(gw) == before
        assert stored_order(gw, pending["id"]).status == "awaiting_code"
        assert worker.bound.is_set() and smsc.binds == 1
        # The viewer's code in full-width digits with spaces still pays the order, once.
        code = CODE_SMS.search(code_sms(smsc, RICH)[0]).group(1)
        smsc.reply(RICH, " ".join(chr(ord("０") + int(d)) for d in code))
        wait_until(lambda: stored_order(gw, pending["id"]).status == "activated",
                   what="the full-width code to pay")
        pay_by_sms(client, gw, smsc, CARD_ONLY)
    assert len(code_sms(smsc, RICH)) == 1
    no_full_phone_logged(caplog, RICH, CARD_ONLY)


# (what, short_message, data_coding, esm_class): bodies no phone would send, each in a
# coding the worker must decode; every one gets the help text.
BINARY_BODIES = [
    ("8-bit binary, every octet", bytes(range(254)), 0x04, 0),
    ("8-bit binary by message class", bytes(range(255, 1, -1)), 0xF4, 0),
    ("UCS-2 with an odd octet count", "验证码".encode("utf-16-be") + b"\x00", 0x08, 0),
    ("UCS-2 lone surrogates", b"\xd8\x00\x00A\xdc\x00\xdb\xff", 0x08, 0),
    ("GSM with octets above 0x7F", bytes(range(0x80, 0x100)), 0x00, 0),
    ("GSM ending on an escape", b"12345\x1b", 0x00, 0),
    ("a reserved data coding", b"\xff\xfe\x00\x00garbage", 0xC7, 0),
    ("an empty message", b"", 0x00, 0),
    ("a concatenation header for one part", bytes([5, 0, 3, 9, 1, 1]) + b"hi?", 0, 0x40),
]


def test_binary_bodies_in_any_data_coding_get_the_help_text(client, seeded, smsc):
    gw = seeded
    smsc.keep_received = True
    with running(gw, smsc.port) as [worker]:
        money, before = accounts(gw), orders(gw)
        for n, (what, body, coding, esm_class) in enumerate(BINARY_BODIES):
            inbox = len(smsc.messages(RICH))
            smsc.send_raw(deliver_sm(RAW_SEQUENCE + n, body, data_coding=coding,
                                     esm_class=esm_class))
            answer = answer_to(smsc, RAW_SEQUENCE + n)
            assert (answer.command, answer.status) == ("deliver_sm_resp", Status.ROK), what
            assert HELP in smsc.wait_for_message(RICH, count=inbox + 1).text, what
        assert accounts(gw) == money and orders(gw) == before
        assert worker.bound.is_set() and smsc.binds == 1
        pay_by_sms(client, gw, smsc, RICH)


def test_a_reply_with_a_broken_concatenation_header_is_refused_for_good(client, seeded, smsc):
    """A UDH longer than its message cannot be read again later: ESME_RX_P_APPN."""
    smsc.keep_received = True
    with running(seeded, smsc.port):
        smsc.send_raw(deliver_sm(RAW_SEQUENCE, bytes([40, 0, 3]) + b"x", esm_class=0x40))
        answer = answer_to(smsc, RAW_SEQUENCE)
        assert (answer.command, answer.status) == ("deliver_sm_resp", 0x65)
        pay_by_sms(client, seeded, smsc, RICH)
    assert sms_to(seeded, RICH, "reply") == []


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000, LIMIT_PHONE_INTERVAL_SECONDS=0)
def test_any_unicode_text_is_acknowledged_and_answered_once(client, seeded, smsc):
    gw = seeded
    every_plane = st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                blacklist_categories=("Cs",))  # UCS-2 cannot carry these
    with running(gw, smsc.port) as [worker]:
        money = accounts(gw)

        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(st.text(every_plane, max_size=400).filter(lambda t: commands.parse(t) is None))
        def one_text(text: str) -> None:
            acknowledged, inbox = smsc.mo_acknowledged, len(smsc.messages(CARD_ONLY))
            smsc.reply(CARD_ONLY, text)
            parts = len(codec.encode_parts(text, 0)[2])
            wait_until(lambda: smsc.mo_acknowledged == acknowledged + parts,
                       what="every part acknowledged with ESME_ROK")
            assert HELP in smsc.wait_for_message(CARD_ONLY, count=inbox + 1).text

        one_text()
        assert accounts(gw) == money and orders(gw) == {}
        assert worker.bound.is_set() and smsc.binds == 1
        pay_by_sms(client, gw, smsc, RICH)


# --- malformed PDUs -----------------------------------------------------------------------------

SEQ = RAW_SEQUENCE + 1
_DELIVER = COMMAND_IDS["deliver_sm"]
_GOOD_DELIVER = deliver_sm(SEQ, b"HELP")

# (what, bytes, expected): "nack <status>" (a generic_nack with that status for the PDU's
# sequence), "silence" (nothing answered, still bound), "rebind" (the connection cannot be
# read any further: dropped at once and bound again) or "stall" (a PDU whose rest never comes:
# the worker reads what follows as its rest, so its enquire_link goes unanswered, and it binds
# again after SMPP_RESPONSE_TIMEOUT; a submit_sm answered in that time would be sent again, so
# the second code SMS is queued only once the worker has bound again).
MALFORMED = [
    ("command_length below the header", raw_pdu(_DELIVER, SEQ, length=8), "rebind"),
    ("command_length 0x7FFFFFFF", raw_pdu(_DELIVER, SEQ, length=0x7FFFFFFF), "rebind"),
    ("command_length past the data", raw_pdu(0x15, SEQ, b"0123456789", length=500), "stall"),
    ("unknown command_id", raw_pdu(0x00004242, SEQ), f"nack {Status.RINVCMDID}"),
    ("unknown response command_id", raw_pdu(0x80004242, SEQ), f"nack {Status.RINVCMDID}"),
    ("deliver_sm with its body cut short",
     raw_pdu(_DELIVER, SEQ, _GOOD_DELIVER[16:40]), f"nack {Status.RINVCMDLEN}"),
    ("deliver_sm without NUL terminators",
     raw_pdu(_DELIVER, SEQ, b"A" * 60), f"nack {Status.RINVCMDLEN}"),
    ("deliver_sm without a body", raw_pdu(_DELIVER, SEQ), f"nack {Status.RINVCMDLEN}"),
    ("deliver_sm whose sm_length runs past the body",
     raw_pdu(_DELIVER, SEQ, _GOOD_DELIVER[16:-5] + b"\xc8HELP"), f"nack {Status.RINVMSGLEN}"),
    ("deliver_sm with a truncated optional parameter",
     raw_pdu(_DELIVER, SEQ, _GOOD_DELIVER[16:] + b"\x00\x1e\x00"), f"nack {Status.RINVCMDLEN}"),
    ("generic_nack for an unknown sequence",
     raw_pdu(COMMAND_IDS["generic_nack"], SEQ, status=Status.RINVCMDID), "silence"),
    ("submit_sm_resp for a submit never sent",
     raw_pdu(COMMAND_IDS["submit_sm_resp"], SEQ, b"abc\x00"), "silence"),
    ("submit_sm_resp with an error for nothing pending",
     raw_pdu(COMMAND_IDS["submit_sm_resp"], SEQ, status=Status.RSYSERR), "silence"),
    ("query_sm_resp with an error for nothing pending",
     raw_pdu(COMMAND_IDS["query_sm_resp"], SEQ, status=Status.RQUERYFAIL), "silence"),
    ("deliver_sm_resp for nothing", raw_pdu(COMMAND_IDS["deliver_sm_resp"], SEQ, b"\x00"),
     "silence"),
    ("enquire_link_resp with an error for nothing pending",
     raw_pdu(COMMAND_IDS["enquire_link_resp"], SEQ, status=Status.RSYSERR), "silence"),
    ("unbind_resp for an unbind never sent", raw_pdu(COMMAND_IDS["unbind_resp"], SEQ),
     "silence"),
    ("bind_transceiver_resp out of turn",
     raw_pdu(COMMAND_IDS["bind_transceiver_resp"], SEQ, b"x\x00"), "silence"),
]


@pytest.mark.parametrize("what, data, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_pdu_is_answered_properly_and_loses_no_sms(client, seeded, smsc, caplog,
                                                               what, data, expected):
    gw = seeded
    smsc.keep_received = True
    caplog.set_level(logging.DEBUG)
    with running(gw, smsc.port) as [worker]:
        # A code SMS already at the SMSC before the fault, and one queued right after it.
        first = order(client, RICH, "vip_month").get_json()
        wait_until(lambda: sms_to(gw, RICH, "code")[0].status == "delivered",
                   what="the first code SMS and its receipt")
        smsc.send_raw(data)
        if expected == "stall":
            smsc.wait_until(lambda s: s.binds == 2, timeout=15)
        second = order(client, CARD_ONLY, "vip_month").get_json()
        if expected == "rebind":
            smsc.wait_until(lambda s: s.binds == 2, timeout=15)
        elif expected == "silence":
            assert answers_to(smsc, SEQ) == []
        elif expected != "stall":
            answer = answer_to(smsc, SEQ)
            assert (answer.command, answer.status) == ("generic_nack", int(expected[5:]))
        wait_until(worker.bound.is_set, what="the worker bound")
        assert smpp_threads_alive()
        for phone, created in ((RICH, first), (CARD_ONLY, second)):
            wait_until(lambda: len(code_sms(smsc, phone)) == 1,  # noqa: B023
                       what="the code SMS")
            code = CODE_SMS.search(code_sms(smsc, phone)[0]).group(1)
            smsc.reply(phone, code)
            wait_until(lambda: stored_order(gw, created["id"]).status == "activated",  # noqa: B023
                       what="the reply to activate the order")
        if expected not in ("rebind", "stall"):
            assert smsc.binds == 1
    assert [len(code_sms(smsc, phone)) for phone in (RICH, CARD_ONLY)] == [1, 1]
    no_full_phone_logged(caplog, RICH, CARD_ONLY)
