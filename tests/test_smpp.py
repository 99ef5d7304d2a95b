"""SMS over SMPP, through real sockets to the built-in SMSC."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from gateway.backend import seed
from gateway.store.models import JournalEntry, OutboxMessage, SmsPart
from smpp import codec
from smpp.simulator import Smsc, code_of
from tests.conftest import RICH, SEED, UNBOUND, order, stored_order
from tests.smpp_helpers import running, wait_until

pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp")

LONG_NAME = "超级影视会员尊享年卡（含体育、少儿、纪录片与4K频道）"


@pytest.fixture
def long_package(gw, tmp_path):
    data = {**SEED, "packages": SEED["packages"] + [
        {"id": "super_year", "name": LONG_NAME, "price": 30000, "currency": "CNY",
         "period_days": 365}]}
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with gw.db.transaction() as session:
        seed.load_seed(session, path, gw.settings.PHONE_COUNTRIES, gw.clock())
    return gw


def outbox(gw, **where) -> list[OutboxMessage]:
    with gw.db.read() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        for name, value in where.items():
            query = query.where(getattr(OutboxMessage, name) == value)
        return list(session.scalars(query))


def test_a_long_chinese_code_sms_arrives_whole_and_the_reply_pays(client, long_package, smsc):
    gw = long_package
    with running(gw, smsc.port):
        created = order(client, RICH, "super_year").get_json()
        received = smsc.wait_for_message(RICH)
        assert received.parts == 2 and received.data_coding == codec.DATA_CODING_UCS2
        assert len(received.text) > 70
        assert re.fullmatch(rf"【TV Pay】您通过钱包支付{re.escape(LONG_NAME)}，金额300\.00元，"
                            r"确认支付请回复 \d{6}（5分钟内有效）。", received.text)
        code = re.search(r"回复 (\d{6})", received.text).group(1)

        smsc.reply(RICH, code)
        wait_until(lambda: stored_order(gw, created["id"]).status == "activated",
                   what="the reply to activate the order")
        confirmation = smsc.wait_for_message(RICH, count=2)
        assert "支付成功" in confirmation.text

        [code_sms] = outbox(gw, kind="code")
        wait_until(lambda: outbox(gw, kind="code")[0].status == "delivered",
                   what="the delivery receipts")
        code_sms = outbox(gw, kind="code")[0]
        assert code_sms.parts == 2 and code not in code_sms.body  # no readable code kept
        with gw.db.read() as session:
            parts = session.scalars(select(SmsPart).where(SmsPart.outbox_id == code_sms.id)).all()
        assert sorted(p.message_id for p in parts) == sorted(received.message_ids)
        assert {p.status for p in parts} == {"delivered"}


def test_a_code_sms_is_valid_only_while_its_code_is(client, seeded, smsc):
    smsc.keep_submitted = True
    with running(seeded, smsc.port):
        created = order(client, RICH).get_json()
        smsc.wait_for_message(RICH)
    [submitted] = smsc.submitted
    expires = stored_order(seeded, created["id"]).expires_at
    assert submitted["validity_period"] == codec.smpp_absolute_time(expires)
    assert submitted["registered_delivery"] == 1


def test_an_undeliverable_code_sms_fails_the_order(client, seeded, smsc):
    smsc.undeliverable.add(RICH.lstrip("+"))
    with running(seeded, smsc.port):
        created = order(client, RICH).get_json()
        wait_until(lambda: stored_order(seeded, created["id"]).status == "failed",
                   what="the order to fail")
    read = client.get(f"/api/v1/orders/{created['id']}").get_json()
    assert read["reason"] == "sms_undeliverable"
    assert outbox(seeded, kind="code")[0].status == "undeliverable"
    with seeded.db.read() as session:
        assert session.scalar(select(func.count()).select_from(JournalEntry)
                              .where(JournalEntry.kind == "release")) == 1


@pytest.mark.parametrize("style, id_format, receipt_id_format", [
    ("text", "hex", "decimal"), ("tlv", "decimal", "decimal"), ("text", "decimal", "hex")])
def test_receipts_are_read_as_tlvs_or_text_with_ids_in_hex_or_decimal(
        client, seeded, style, id_format, receipt_id_format):
    smsc = Smsc(receipt_style=style, id_format=id_format,
                receipt_id_format=receipt_id_format).start()
    try:
        with running(seeded, smsc.port):
            order(client, UNBOUND)
            wait_until(lambda: outbox(seeded, kind="link")[0].status == "delivered",
                       what="the receipt to be matched")
    finally:
        smsc.stop()


def test_a_reply_delivered_twice_pays_once(client, seeded, smsc):
    with running(seeded, smsc.port):
        created = order(client, RICH).get_json()
        code = re.search(r"回复 (\d{6})", smsc.wait_for_message(RICH).text).group(1)
        smsc.reply(RICH, code)
        smsc.reply(RICH, code)
        # the confirmation, then "code already used" if the second came after the first was
        # acted on (a copy that comes while the first waits is answered with it)
        assert "支付成功" in smsc.wait_for_message(RICH, count=2).text
        wait_until(lambda: smsc.mo_acknowledged == 2, what="both replies acknowledged")
    assert all("已使用" in m.text for m in smsc.messages(RICH)[2:])
    assert stored_order(seeded, created["id"]).status == "activated"
    with seeded.db.read() as session:
        assert session.scalar(select(func.count()).select_from(JournalEntry)
                              .where(JournalEntry.kind == "capture")) == 1


def test_a_long_reply_in_ucs2_is_reassembled_and_answered(client, seeded, smsc):
    with running(seeded, smsc.port):
        text = "你好，我想问一下怎么开通电视会员，" * 5
        assert len(codec.encode_parts(text, 0)[2]) == 2
        smsc.reply(UNBOUND, text)
        help_sms = smsc.wait_for_message(UNBOUND)
        wait_until(lambda: smsc.mo_acknowledged == 2, what="both parts acknowledged")
    assert "6位验证码" in help_sms.text


def test_phones_of_the_built_in_smsc_can_reply_with_their_code_by_themselves(client, seeded,
                                                                             smsc):
    """``Smsc.auto_reply`` (benchmarks): a code SMS is answered with its code; others are not."""
    answers: list[str | None] = []

    def answer(phone: str, text: str) -> str | None:
        answers.append(code_of(phone, text))
        return answers[-1]

    smsc.auto_reply, smsc.auto_reply_delay = answer, 0.2
    with running(seeded, smsc.port):
        created = order(client, RICH).get_json()
        wait_until(lambda: stored_order(seeded, created["id"]).status == "activated",
                   what="the phone's own reply to pay the order")
        smsc.wait_for_message(RICH, count=2)  # asked of auto_reply as it was stored
    assert len(answers) == 2 and re.fullmatch(r"\d{6}", answers[0]) and answers[1] is None
