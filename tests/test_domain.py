"""The domain's rules on their own (``gateway.domain``): no database, no Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from string import Formatter

from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.funding import Source, choose
from gateway.domain.orders import Status
from gateway.domain.replies import CodeOrder, CodeOutcome, CodeResult, decide
from gateway.domain.texts import CATALOGUE

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
EARLIER = NOW - timedelta(seconds=1)
LIMIT = 5


def waiting(order_id: str, *, matches: bool = False, attempts: int = 0,
            expires_at: datetime = LATER) -> CodeOrder:
    return CodeOrder(order_id, Status.AWAITING_CODE, expires_at, attempts, matches)


def test_a_right_code_confirms_its_order_and_touches_no_other():
    decision = decide([waiting("a"), waiting("b", matches=True)], NOW, LIMIT)
    assert decision.result == CodeResult(CodeOutcome.CONFIRMED, "b")
    assert decision.confirm == "b" and decision.wrong == () and decision.expire == ()


def test_a_wrong_code_counts_against_every_waiting_order():
    decision = decide([waiting("a", attempts=1), waiting("b", attempts=3)], NOW, LIMIT)
    assert [(w.order_id, w.attempts, w.tries_left) for w in decision.wrong] == [
        ("a", 2, 3), ("b", 4, 1)]
    assert decision.result == CodeResult(CodeOutcome.WRONG, "b", 1)  # the nearest to failing
    assert decision.confirm is None


def test_the_last_try_fails_the_order():
    decision = decide([waiting("a", attempts=LIMIT - 1)], NOW, LIMIT)
    [wrong] = decision.wrong
    assert wrong.fails and wrong.attempts == LIMIT
    assert decision.result == CodeResult(CodeOutcome.TOO_MANY_ATTEMPTS, "a")


def test_a_lapsed_code_expires_its_order_and_says_so():
    decision = decide([waiting("a", matches=True, expires_at=EARLIER)], NOW, LIMIT)
    assert decision.expire == ("a",) and decision.confirm is None
    assert decision.result == CodeResult(CodeOutcome.EXPIRED, "a")


def test_the_code_of_a_paid_order_is_used_and_of_a_cancelled_one_closed():
    paid = CodeOrder("a", Status.ACTIVATED, LATER, 0, True)
    cancelled = CodeOrder("b", Status.CANCELLED, LATER, 0, True)
    assert decide([paid], NOW, LIMIT).result == CodeResult(CodeOutcome.ALREADY_USED, "a")
    assert decide([cancelled], NOW, LIMIT).result == CodeResult(CodeOutcome.CLOSED, "b")


def test_no_waiting_order_is_no_order_and_changes_nothing():
    decision = decide([CodeOrder("a", Status.FAILED, LATER, LIMIT, False)], NOW, LIMIT)
    assert decision.result == CodeResult(CodeOutcome.NO_ORDER)
    assert (decision.expire, decision.confirm, decision.wrong) == ((), None, ())


orders = st.lists(st.builds(
    CodeOrder, id=st.text("abcdef", min_size=1, max_size=3),
    status=st.sampled_from(list(Status)), expires_at=st.sampled_from([None, EARLIER, LATER]),
    code_attempts=st.integers(0, LIMIT - 1), matches=st.booleans()),
    max_size=6, unique_by=lambda o: o.id)


@given(orders)
def test_a_reply_pays_at_most_one_waiting_order_or_counts_a_try_against_each(found):
    decision = decide(found, NOW, LIMIT)
    live = {o.id for o in found if o.status == Status.AWAITING_CODE and o.id not in decision.expire}
    assert set(decision.expire) == {o.id for o in found if Status(o.status).pending
                                    and o.expires_at is not None and o.expires_at <= NOW}
    if decision.confirm is not None:
        assert decision.confirm in live and not decision.wrong
        assert any(o.id == decision.confirm and o.matches for o in found)
    else:
        assert {w.order_id for w in decision.wrong} in (live, set())
        assert all(w.attempts == o.code_attempts + 1
                   for w in decision.wrong for o in found if o.id == w.order_id)


# --- which account pays ---------------------------------------------------------------------

WALLET = Source("wallet:w", "wallet", 5000, "CNY")
CARD = Source("card:w", "card", 90000, "CNY", "招商银行", "1234")


def test_the_wallet_pays_when_it_can_else_the_linked_card():
    assert choose([CARD, WALLET], 5000, "CNY") == WALLET
    assert choose([CARD, WALLET], 5001, "CNY") == CARD
    assert choose([WALLET], 5001, "CNY") is None


def test_a_source_in_another_currency_never_pays():
    assert choose([WALLET, CARD], 100, "USD") is None


# --- the text catalogue -------------------------------------------------------------------------


def test_every_language_has_every_text_with_the_same_fields():
    zh, en = CATALOGUE["zh-CN"], CATALOGUE["en"]
    for part in ("sms", "pages", "tv"):
        assert getattr(zh, part).keys() == getattr(en, part).keys(), part
        for key, text in getattr(zh, part).items():
            if key != "date":
                assert _fields(text) == _fields(getattr(en, part)[key]), (part, key)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}
