"""The pure core and the ledger's guarantees, tested directly."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gateway import phones
from gateway.backend import seed, tv_events
from gateway.domain import otp
from gateway.domain.errors import InvalidInput
from gateway.domain.money import Money
from gateway.domain.orders import IllegalTransition, Status, is_lapsed, next_status
from gateway.payment import ledger
from gateway.store.models import Account, OrderEvent


@pytest.mark.parametrize("amount, currency, text", [
    (20000, "CNY", "200.00"), (5, "CNY", "0.05"), (-150, "USD", "-1.50"), (1200, "JPY", "1200"),
])
def test_money_renders_minor_units_exactly(amount, currency, text):
    assert Money(amount, currency).decimal_text() == text


def test_money_refuses_floats_and_unknown_currencies():
    with pytest.raises(TypeError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Money(1, "XYZ")


@pytest.mark.parametrize("raw", ["13800138000", "+8613800138000", "+86 138 0013 8000",
                                 "008613800138000"])
def test_chinese_mobiles_parse_to_e164(raw):
    assert phones.parse(raw, ("CN",)) == "+8613800138000"


@pytest.mark.parametrize("raw", ["", "12345", "010 6552 9988", "abc", None, 13800138000,
                                 "1" * 40])
def test_anything_else_is_an_invalid_phone(raw):
    with pytest.raises(InvalidInput) as raised:
        phones.parse(raw, ("CN",))
    assert raised.value.code == "invalid_phone"


def test_masking_hides_at_least_four_digits():
    assert phones.mask("+8613800138000") == "138****8000"
    assert phones.mask("+85291234567") == "91****67"
    assert phones.mask_digits_in("to +8613800138000 and 13900139000, order 42") == \
        "to 138****8000 and 139****9000, order 42"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_no_masked_number_gives_its_middle_away(number):
    assert phones.mask_digits_in(f"sms to {number}") == f"sms to {number[:3]}****{number[7:]}"


def test_codes_are_six_digits_and_bound_to_their_order():
    code = otp.new_code()
    assert len(code) == 6 and code.isdigit()
    binding = otp.CodeBinding("ord_a", 20000, "CNY", "vip")
    digest = otp.code_digest(b"k" * 16, code, binding)
    assert code not in digest
    assert otp.code_matches(b"k" * 16, code, digest, binding)
    for changed in ({"amount": 20001}, {"package_id": "other"}, {"id": "ord_b"}):
        assert not otp.code_matches(b"k" * 16, code, digest, replace(binding, **changed))
    assert not otp.code_matches(b"x" * 16, code, digest, binding)


@pytest.mark.parametrize("text, code", [
    ("384921", "384921"), (" 384 921\n", "384921"), ("３８４９２１", "384921"),
    ("38492", None), ("3849210", None), ("回复384921", None), ("٣٨٤٩٢١", None), ("", None),
])
def test_a_code_reply_is_recognised(text, code):
    assert otp.code_in_reply(text) == code


def test_the_life_cycle_allows_only_its_own_moves():
    assert next_status("awaiting_code", Status.PAID) is Status.PAID
    for current, target in [("activated", Status.CANCELLED), ("failed", Status.PAID),
                            ("awaiting_wap", Status.ACTIVATED), ("expired", Status.EXPIRED)]:
        with pytest.raises(IllegalTransition):
            next_status(current, target)


def test_only_pending_orders_lapse():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert is_lapsed("awaiting_code", now, now)
    assert not is_lapsed("awaiting_code", now + timedelta(seconds=1), now)
    assert not is_lapsed("activated", now - timedelta(days=1), now)


# --- ledger over the real database -------------------------------------------------------------


def test_a_debit_beyond_the_balance_is_refused_and_writes_nothing(gw, seeded, clock):
    with gw.db.transaction() as session:
        for source in ("wallet:w-poor", "card:w-poor"):
            assert not ledger.place_hold(session, None, source, 5000, "CNY", clock())
        assert ledger.balance(session, "wallet:w-poor") == 500
        assert ledger.audit(session) == []


def test_the_database_itself_refuses_a_negative_balance(gw, seeded):
    with pytest.raises(IntegrityError), gw.db.transaction() as session:
        session.get(Account, "wallet:w-poor").balance = -1


def test_unbalanced_entries_are_refused(gw, seeded, clock):
    with pytest.raises(ValueError), gw.db.transaction() as session:
        ledger._post(session, "fund", [("external:CNY", -5), ("wallet:w-poor", 4)], "CNY",
                     clock())


def test_an_entry_never_mixes_currencies(gw, seeded, clock):
    with pytest.raises(ValueError), gw.db.transaction() as session:
        ledger.fund(session, "wallet:w-poor", 100, "USD", clock())
    with pytest.raises(ValueError), gw.db.transaction() as session:
        ledger._post(session, "fund", [("external:USD", -5), ("external:CNY", 5)], "CNY",
                     clock())


def test_events_are_written_at_commit_in_order_and_not_at_all_on_rollback(gw, seeded, clock):
    """Order events are queued and written at commit as multi-row INSERTs (chunks of 8)."""
    def record(session, count, name):
        for n in range(count):
            tv_events.record(session, device_id="tv-1", event_type=name, now=clock(),
                             data={"n": n})

    with gw.db.transaction() as session:
        record(session, 19, "test.kept")
        assert session.scalar(select(func.count()).select_from(OrderEvent)) == 0  # not yet
    with pytest.raises(RuntimeError), gw.db.transaction() as session:
        record(session, 3, "test.rolled_back")
        raise RuntimeError("the change failed")
    with gw.db.read() as session:
        rows = session.execute(select(OrderEvent.type, OrderEvent.data)
                               .order_by(OrderEvent.id)).all()
    assert [(kind, json.loads(data)["n"]) for kind, data in rows] == [
        ("test.kept", n) for n in range(19)]


def test_a_wallet_never_pays_a_price_in_another_currency(client, gw, tmp_path):
    from tests.conftest import RICH, SEED, balance, order

    data = {**SEED, "packages": [{"id": "hbo_usd", "name": "HBO", "price": 1000,
                                  "currency": "USD", "period_days": 30}]}
    path = tmp_path / "usd.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    with gw.db.transaction() as session:
        seed.load_seed(session, path, ("CN",), gw.clock())
    body = order(client, RICH, "hbo_usd").get_json()
    assert (body["status"], body["reason"]) == ("failed", "insufficient_funds")
    assert balance(gw, "wallet:w-rich") == 50000 and balance(gw, "card:w-rich") == 100000
