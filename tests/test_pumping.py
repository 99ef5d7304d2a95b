"""SMS pumping (toll fraud): a TV app's key cannot make the service text numbers beyond its
budget, and a block of numbers whose orders are never paid is paused until the operator lifts
it; both answered 429, with nothing written."""

from __future__ import annotations

import pytest

from gateway.background import Worker
from tests.conftest import RICH, code_sent_to, new_tv_app, order, reply, sms_to
from tests.test_dashboard import KEY as ADMIN_KEY
from tests.test_dashboard import tables
from tests.test_idempotency import count_orders
from tests.test_pairing_and_retry import pairing_code, send_page_code

OPEN = {"LIMIT_PHONE_INTERVAL_SECONDS": 0, "LIMIT_DEVICE_ORDERS_PER_HOUR": 0}
BLOCK = "+861391234"  # ten thousand numbers nobody pays from


def block_number(n: int) -> str:
    return f"{BLOCK}{n:04d}"


@pytest.mark.settings(SMS_BUDGET_APP_HOUR=3, **OPEN)
def test_a_tv_app_sends_no_more_sms_than_its_budget(app, client, seeded):
    for n in range(3):
        assert order(client, block_number(n), device=f"tv-{n}").status_code == 201
    refused = order(client, block_number(3), device="tv-3")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["code"] == "sms_budget_exhausted"
    assert count_orders(seeded) == 3 and sms_to(seeded, block_number(3)) == []
    other = new_tv_app(app, "other-tv")  # another operator's app has a budget of its own
    placed = client.post("/api/v1/orders", headers={"Authorization": f"Bearer {other}"}, json={
        "device_id": "tv-other", "package_id": "vip_month", "phone": block_number(4)})
    assert placed.status_code == 201


@pytest.mark.settings(SMS_GUARD_MIN_SENT=5, SMS_GUARD_MIN_CONVERSION=20,
                      ADMIN_API_KEY=ADMIN_KEY, **OPEN)
def test_a_block_of_numbers_that_never_pays_is_paused_until_lifted(app, client, seeded, clock):
    for n in range(5):  # links to five numbers of one block, none of them paid
        assert order(client, block_number(n), device=f"tv-{n}").status_code == 201
    Worker(seeded).run_once()
    assert order(client, block_number(5), device="tv-5").status_code == 201  # too young to judge
    clock.advance(minutes=11)
    Worker(seeded).run_once()
    refused = order(client, block_number(6), device="tv-6")
    assert refused.status_code == 429 and refused.get_json()["code"] == "sms_paused"
    assert sms_to(seeded, block_number(6)) == []
    assert order(client, RICH, device="tv-7").status_code == 201  # other numbers go on

    page = client.get("/admin", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert [f"{BLOCK}…"] == [row[0] for row in tables(page.get_data(as_text=True))
                              ["paused-table"][1:]]
    runner = app.test_cli_runner()
    assert f"{BLOCK}… paused until" in runner.invoke(args=["sms", "paused"]).output
    lifted = runner.invoke(args=["sms", "unpause", f"{BLOCK}…"])
    assert lifted.exit_code == 0, lifted.output
    assert order(client, block_number(6), device="tv-6").status_code == 201
    again = runner.invoke(args=["sms", "unpause", BLOCK])
    assert again.exit_code != 0 and "not paused" in again.output


@pytest.mark.settings(SMS_GUARD_MIN_SENT=5, SMS_GUARD_MIN_CONVERSION=20, **OPEN)
def test_numbers_that_pay_are_never_paused(client, seeded, clock):
    for n in range(5):
        order(client, RICH, "vip_month", device=f"tv-{n}")
        reply(client, RICH, code_sent_to(seeded, RICH))
    clock.advance(minutes=11)
    Worker(seeded).run_once()
    assert order(client, RICH, "vip_month", device="tv-9").status_code == 201


@pytest.mark.settings(SMS_GUARD_MIN_SENT=5, SMS_GUARD_MIN_CONVERSION=20, **OPEN)
def test_the_pairing_page_sends_nothing_to_a_paused_block(client, seeded, clock):
    for n in range(5):
        order(client, block_number(n), device=f"tv-{n}")
    clock.advance(minutes=11)
    Worker(seeded).run_once()
    code = pairing_code(client, "tv-9")["code"]
    refused = send_page_code(client, code, block_number(7))
    assert refused.status_code == 429 and "暂时无法向此号码发送短信" in refused.text
    assert sms_to(seeded, block_number(7)) == []
