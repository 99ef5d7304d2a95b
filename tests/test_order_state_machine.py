"""The order life cycle and the ledger as a hypothesis state machine over the real app.

Random sequences of what TVs, viewers and the worker do (order, reply with the right or a wrong
code, cancel, let the clock pass the expiry and run the worker's round, retry an ended order,
pay on the payment page) run through the test client and the real stores. After every step the
database must hold a consistent ledger and orders that were paid exactly once, and the API
must show each order as the database holds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from gateway.backend import checkout, seed
from gateway.background import Worker
from gateway.context import Gateway, services
from gateway.domain.orders import FINAL, Channel, Status
from gateway.payment import ledger
from gateway.store.models import Account, Hold, JournalEntry, Order, OutboxMessage
from tests.conftest import (
    CARD_ONLY,
    POOR,
    RICH,
    SEED,
    UNBOUND,
    FakeClock,
    close_app,
    fresh_app,
    order,
    reply,
)

PHONES = [RICH, CARD_ONLY, POOR, UNBOUND]
PACKAGES = [package["id"] for package in SEED["packages"]]
WALLETS = {"w-rich": "135790", "w-card": "246802", "w-poor": "112233"}
RETRYABLE = {Status.FAILED, Status.EXPIRED, Status.CANCELLED}
PAYMENTS = ("capture", "charge")  # the journal entries that take an order's money
LAPSE_SECONDS = 3600  # past both the code's and the payment link's lifetime


class OrderLifeCycle(RuleBasedStateMachine):
    """One fresh app, empty tables and the standard seed per run (as the ``app`` fixture)."""

    orders = Bundle("orders")

    def __init__(self, database_url: str, var_dir: Path, seed_file: Path) -> None:
        super().__init__()
        self.clock = FakeClock()
        # Rate limits would refuse most orders of a run; they have tests of their own.
        self.app = fresh_app(database_url, var_dir, self.clock, LIMIT_PHONE_INTERVAL_SECONDS=0,
                             LIMIT_PHONE_CODES_PER_DAY=0, LIMIT_DEVICE_ORDERS_PER_HOUR=0,
                             SMS_BUDGET_APP_HOUR=0, SMS_BUDGET_APP_DAY=0, SMS_GUARD_MIN_SENT=0)
        self.gw: Gateway = services(self.app)
        with self.gw.db.transaction() as session:
            seed.load_seed(session, seed_file, self.gw.settings.PHONE_COUNTRIES, self.clock())
        self.client: FlaskClient = self.app.test_client()
        self.final: dict[str, str] = {}  # order id -> the final status it reached
        self.retried: set[str] = set()

    def teardown(self) -> None:
        assert close_app(self.app) == []

    # --- reading -------------------------------------------------------------------------------

    def stored(self, order_id: str) -> Order:
        with self.gw.db.transaction() as session:
            found = session.get(Order, order_id)
            assert found is not None
            return found

    def shown(self, order_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/orders/{order_id}")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def live_code(self, order_id: str) -> str | None:
        """The code of the order's SMS, as the viewer reads it (masked once the order ended)."""
        with self.gw.db.transaction() as session:
            bodies = session.scalars(select(OutboxMessage.body).where(
                OutboxMessage.order_id == order_id, OutboxMessage.kind == "code")).all()
        found = [word for body in bodies for word in body.replace("，", " ").split()
                 if word.isdigit() and len(word) == 6]
        return found[-1] if found else None

    # --- rules ---------------------------------------------------------------------------------

    @rule(target=orders, phone=st.sampled_from(PHONES), package=st.sampled_from(PACKAGES),
          device=st.sampled_from(["tv-1", "tv-2"]))
    def place_order(self, phone: str, package: str, device: str) -> str:
        response = order(self.client, phone, package, device)
        assert response.status_code == 201, response.get_json()
        placed = response.get_json()
        expected_channel = Channel.WAP if phone == UNBOUND else Channel.SMS_CODE
        assert placed["channel"] == expected_channel
        assert placed["status"] in {Status.AWAITING_CODE, Status.AWAITING_WAP, Status.FAILED}
        if phone == POOR:  # neither its wallet nor its card covers a package
            assert placed["status"] == Status.FAILED
            assert placed["reason"] == "insufficient_funds"
        return placed["id"]

    @rule(order_id=orders)
    def reply_with_right_code(self, order_id: str) -> None:
        status = self.shown(order_id)["status"]  # a lapsed order reads (and is now) expired
        before = self.stored(order_id)
        code = self.live_code(order_id)
        if before.phone is None or code is None:
            return
        reply(self.client, before.phone, code)
        after = self.stored(order_id)
        if status == Status.AWAITING_CODE:
            assert after.status == Status.ACTIVATED, (after.status, after.reason)
        else:
            assert after.status == status

    @rule(order_id=orders, wrong=st.integers(0, 999_999))
    def reply_with_wrong_code(self, order_id: str, wrong: int) -> None:
        before = self.stored(order_id)
        code = f"{wrong:06d}"
        if before.phone is None or code == self.live_code(order_id):
            return
        reply(self.client, before.phone, code)
        after = self.stored(order_id)
        if before.status != Status.AWAITING_CODE:
            assert after.status == before.status or after.status == Status.EXPIRED
        else:
            assert after.status in {Status.AWAITING_CODE, Status.FAILED, Status.EXPIRED}

    @rule(order_id=orders)
    def cancel(self, order_id: str) -> None:
        before = self.shown(order_id)["status"]
        response = self.client.post(f"/api/v1/orders/{order_id}/cancel")
        if before in {Status.AWAITING_CODE, Status.AWAITING_WAP}:
            assert response.status_code == 200, response.get_json()
            assert self.stored(order_id).status == Status.CANCELLED
        else:
            assert response.status_code == 409
            assert response.get_json()["code"] == "order_not_pending"

    @rule(seconds=st.sampled_from([30, 299, LAPSE_SECONDS]))
    def time_passes_and_the_worker_runs(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)
        Worker(self.gw).run_once()

    @rule(target=orders, order_id=orders)
    def retry(self, order_id: str) -> str:
        status = self.shown(order_id)["status"]
        response = self.client.post(f"/api/v1/orders/{order_id}/retry")
        body = response.get_json()
        if status not in RETRYABLE:
            assert response.status_code == 409 and body["code"] == "order_not_retryable"
            return order_id
        if order_id in self.retried:
            assert response.status_code == 409 and body["code"] == "order_already_retried"
            return order_id
        assert response.status_code == 201, body
        assert body["retry_of"] == order_id
        self.retried.add(order_id)
        return body["id"]

    @rule(order_id=orders, wallet=st.sampled_from(sorted(WALLETS)),
          source=st.sampled_from(["wallet", "card"]))
    def pay_on_page(self, order_id: str, wallet: str, source: str) -> None:
        """The payment page's use case, as its pay button calls it once the viewer signed in."""
        before = self.shown(order_id)["status"]
        try:
            paid = checkout.pay_on_page(self.gw, order_id, wallet, source)
        except Exception as refused:  # too little in that source: nothing may have changed
            assert getattr(refused, "code", None) == "insufficient_funds", refused
            assert self.stored(order_id).status == before
            return
        if before in {Status.AWAITING_CODE, Status.AWAITING_WAP}:
            assert paid.status == Status.ACTIVATED
        else:
            assert paid.status == before

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        with self.gw.db.transaction() as session:
            assert ledger.audit(session) == []
            negative = session.scalars(select(Account.id).where(Account.balance < 0)).all()
            assert negative == []
            customers = session.scalars(select(Account.id).where(
                Account.kind.in_(ledger.CUSTOMER_KINDS))).all()
            assert customers  # the seed's wallets and cards
            for account in customers:  # (``external`` is where funding came from: negative)
                assert ledger.balance(session, account) >= 0, account

    @invariant()
    def every_order_is_paid_at_most_once_and_activated_only_when_paid(self) -> None:
        with self.gw.db.transaction() as session:
            orders = {o.id: o for o in session.scalars(select(Order))}
            payments_of = dict(session.execute(
                select(JournalEntry.order_id, func.count())
                .where(JournalEntry.kind.in_(PAYMENTS)).group_by(JournalEntry.order_id)).all())
            captured = session.scalars(select(Hold.order_id).where(Hold.status == "captured"))
            for order_id in captured:
                assert orders[order_id].status == Status.ACTIVATED, order_id
                assert orders[order_id].channel == Channel.SMS_CODE, order_id
        for order_id, found in orders.items():
            assert found.status in set(Status), found.status
            taken = payments_of.get(order_id, 0)
            assert taken == (1 if found.status == Status.ACTIVATED else 0), (found.status, taken)

    @invariant()
    def final_states_never_change_and_the_api_agrees(self) -> None:
        with self.gw.db.transaction() as session:
            ids = session.scalars(select(Order.id)).all()
        for order_id in ids:
            shown = self.shown(order_id)
            stored = self.stored(order_id)
            assert shown["status"] == stored.status and shown["reason"] == stored.reason
            assert shown["amount"] == stored.amount and shown["channel"] == stored.channel
            if order_id in self.final:
                assert stored.status == self.final[order_id], order_id
            elif stored.status in FINAL:
                self.final[order_id] = stored.status


def test_order_life_cycle(database_url: str, var_dir: Path, tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(SEED, ensure_ascii=False), encoding="utf-8")
    run_state_machine_as_test(
        lambda: OrderLifeCycle(database_url, var_dir, seed_file),
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )

