"""The SMPP codec: alphabets, splitting, headers, receipts, times, and the SMSC's PDU codec."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import smpplib.client
import smpplib.smpp
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import load_settings
from smpp import codec
from smpp.deliver_sm import DeliverSm
from smpp.feeder import Message, Part
from smpp.pdu import Pdu, PduError, Status, decode, encode
from smpp.session import SmppSession
from smpp.worker import SmppWorker


def reassemble(text: str) -> str:
    coding, esm_class, parts = codec.encode_parts(text, 7)
    if not esm_class & codec.ESM_UDHI:
        return codec.decode_text(parts[0], coding)
    chunks = {}
    for part in parts:
        (reference, total, number), payload = codec.split_udh(part)
        assert (reference, total) == (7, len(parts))
        chunks[number] = payload
    return "".join(codec.decode_text(chunks[n], coding) for n in sorted(chunks))


def test_gsm_text_fits_160_characters_in_one_sms():
    coding, esm_class, parts = codec.encode_parts("A" * 160, 1)
    assert (coding, esm_class, len(parts), len(parts[0])) == (codec.DATA_CODING_GSM, 0, 1, 160)
    assert len(codec.encode_parts("A" * 161, 1)[2]) == 2


def test_chinese_text_is_ucs2_seventy_characters_to_an_sms():
    coding, _, parts = codec.encode_parts("码" * 70, 1)
    assert coding == codec.DATA_CODING_UCS2 and len(parts) == 1
    coding, esm_class, parts = codec.encode_parts("码" * 71, 1)
    assert esm_class == codec.ESM_UDHI and [len(p) for p in parts] == [6 + 134, 6 + 8]


def test_a_split_never_breaks_a_gsm_escape_or_a_surrogate_pair():
    text = "A" * 152 + "€" + "B" * 10  # the euro sign takes two septets: 153 and 154
    _, _, parts = codec.encode_parts(text, 1)
    assert parts[0][6:].endswith(b"A") and parts[1][6:].startswith(b"\x1b\x65")
    emoji = "码" * 66 + "😀" + "码"  # the emoji is a surrogate pair at code units 67-68
    _, _, parts = codec.encode_parts(emoji, 1)
    assert len(parts[0]) == 6 + 132 and reassemble(emoji) == emoji


@given(st.text(min_size=1, max_size=600))
def test_every_text_survives_the_wire(text):
    assert reassemble(text) == text


@pytest.mark.parametrize("udh, expected", [
    (bytes([5, 0, 3, 9, 2, 1]), (9, 2, 1)),
    (bytes([6, 8, 4, 1, 2, 3, 3]), (0x0102, 3, 3)),
    (bytes([3, 0x0A, 1, 0]), None),  # another element only
])
def test_concatenation_headers_are_read(udh, expected):
    assert codec.split_udh(udh + b"hi") == (expected, b"hi")


@pytest.mark.parametrize("bad", [b"", bytes([9, 0, 3]), bytes([5, 0, 3, 9, 2, 3])])
def test_malformed_headers_are_refused(bad):
    with pytest.raises(ValueError):
        codec.split_udh(bad)


def test_receipts_are_read_from_tlvs_or_text():
    text = ("id:1A2B sub:001 dlvrd:001 submit date:2611231055 done date:2611231055 "
            "stat:DELIVRD err:000 text:")
    assert codec.parse_receipt(text) == codec.Receipt("1A2B", 2, "000")
    assert codec.parse_receipt("", "77", 5) == codec.Receipt("77", 5, "")
    assert codec.parse_receipt("id:9 stat:UNDELIV err:001").state == 5
    assert codec.parse_receipt("hello") is None


def test_message_ids_match_across_hex_and_decimal():
    assert "6699" in codec.message_id_variants("1a2b")
    assert "1a2b" in codec.message_id_variants("6699")
    assert "1A2B" in codec.message_id_variants("0006699")


def test_smpp_absolute_time():
    moment = datetime(2026, 11, 23, 10, 55, 0, 300000, tzinfo=UTC)
    assert codec.smpp_absolute_time(moment) == "261123105500300+"


def test_the_smscs_pdu_codec_round_trips_and_refuses_garbage():
    pdu = Pdu("submit_sm", 5, fields={"destination_addr": "8613800138000",
                                      "short_message": b"\x00\x01", "data_coding": 8},
              tlvs={0x001E: b"ab\x00"})
    decoded = decode(encode(pdu))
    assert decoded.fields["short_message"] == b"\x00\x01" and decoded.tlvs == pdu.tlvs
    assert decode(encode(Pdu("submit_sm_resp", 9, Status.RTHROTTLED))).status == 0x58
    raw = encode(pdu)
    for bad in (raw[:10], raw[:-1], raw[:4] + b"\x00\x00\x42\x42" + raw[8:]):
        with pytest.raises(PduError):
            decode(bad)


def test_the_token_bucket_allows_its_rate_and_a_small_burst():
    from smpp.worker import TokenBucket

    now = [0.0]
    bucket = TokenBucket(100, clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [0.0] * 5  # a burst of rate / 20
    assert bucket.take() == pytest.approx(0.01)
    now[0] += 0.01
    assert bucket.take() == 0.0 and bucket.take() > 0


def smpplib_deliver_sm(**fields) -> bytes:
    """A deliver_sm as smpplib, a second implementation of SMPP, encodes it."""
    pdu = smpplib.smpp.make_pdu("deliver_sm", sequence=0, **fields)  # 0: smpplib numbers none
    pdu.sequence = 42
    return pdu.generate()


def test_the_worker_reads_a_receipt_as_smpplib_encodes_it():
    text = b"id:1A2B sub:001 dlvrd:001 submit date:2612071055 done date:2612071055 stat:DELIVRD"
    raw = smpplib_deliver_sm(source_addr="8613800138000", source_addr_ton=1, esm_class=4,
                             short_message=text, receipted_message_id="1A2B", message_state=2)
    assert DeliverSm.read(decode(raw)) == DeliverSm(
        sequence=42, sender="+8613800138000", esm_class=4, data_coding=0, body=text,
        receipted_message_id="1A2B", message_state=2)


def test_the_worker_reads_a_reply_in_sar_parts_and_a_message_payload_as_smpplib_encodes_them():
    raw = smpplib_deliver_sm(source_addr="13800138000", source_addr_ton=0, data_coding=8,
                             short_message=b"", message_payload="你好".encode("utf-16-be"),
                             sar_msg_ref_num=300, sar_total_segments=2, sar_segment_seqnum=1)
    assert DeliverSm.read(decode(raw)) == DeliverSm(
        sequence=42, sender="13800138000", esm_class=0, data_coding=8,
        body="你好".encode("utf-16-be"), sar=(300, 2, 1))


def test_each_part_is_encoded_as_a_new_smpplib_pdu_would_be(gw):
    """The worker fills one submit_sm again for every part: nothing of a part may stay in the
    next one."""
    worker = SmppWorker(gw, host="127.0.0.1", port=1, consumer="unit")
    worker.session.client = smpplib.client.Client(  # numbers the PDUs; never connects
        "127.0.0.1", 1, allow_unknown_opt_params=True)
    expiry = datetime(2026, 12, 7, 10, 55, tzinfo=UTC)
    texts = ["你好，" * 40, "short", "x" * 200, "384921"]
    for n, (text, expires_at) in enumerate(zip(texts, [expiry, None, expiry, None],
                                               strict=True)):
        coding, esm_class, payloads = codec.encode_parts(text, n)
        message = Message(outbox_id=n, entry_id="0-1", kind="code", order_id=None,
                          destination=f"861380013800{n}", expires_at=expires_at,
                          data_coding=coding, esm_class=esm_class)
        for number, payload in enumerate(payloads, 1):
            sequence, encoded = worker.window._encode_submit(Part(message, number, payload))
            s = gw.settings
            fresh = smpplib.smpp.make_pdu(
                "submit_sm", client=worker.session.client, source_addr_ton=s.SMPP_SOURCE_TON,
                source_addr_npi=s.SMPP_SOURCE_NPI, source_addr=s.SMPP_SOURCE_ADDR,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr=message.destination,
                esm_class=esm_class, data_coding=coding, short_message=payload,
                registered_delivery=1,
                validity_period=codec.smpp_absolute_time(expires_at) if expires_at else "")
            fresh.sequence = sequence
            assert encoded == fresh.generate()
            assert decode(encoded).fields["short_message"] == payload


def test_answers_carry_the_sequence_they_answer():
    session = SmppSession(load_settings(environ={}), "127.0.0.1", 1)
    for command, status in [("deliver_sm_resp", 0), ("deliver_sm_resp", 0x65),
                            ("generic_nack", 3), ("enquire_link_resp", 0)]:
        for sequence in (1, 70_000, 0x7FFFFFFF):
            answer = decode(session.respond(command, sequence, status))
            assert (answer.command, answer.sequence, answer.status) == (command, sequence,
                                                                         status)
