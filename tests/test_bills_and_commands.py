"""Operators' bills (CSV import, admin API, paying through every channel) and the commands
viewers text to the service number."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gateway.store.models import BossEvent, Hold
from tests.conftest import (
    CARD_ONLY,
    POOR,
    RICH,
    UNBOUND,
    balance,
    code_sent_to,
    order,
    reply,
    sms_to,
    stored_order,
)
from tests.smpp_helpers import running, wait_until

ADMIN_KEY = "admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TV = "tv-42"
CSV = """bill_id,device_id,amount,currency,description
B-2026-10-42,tv-42,4500,CNY,2026年10月收视费
B-2026-11-42,tv-42,4500,CNY,2026年11月收视费
B-2026-10-7,tv-7,9900,CNY,2026年10月宽带费
"""

pytestmark = pytest.mark.settings(ADMIN_API_KEY=ADMIN_KEY)


def import_bills(app, tmp_path, text: str = CSV):
    path = tmp_path / "bills.csv"
    path.write_text(text, encoding="utf-8")
    return app.test_cli_runner().invoke(args=["bills", "import", str(path)])


def outstanding(client, device: str = TV) -> list[str]:
    return [b["bill_id"] for b in client.get(f"/api/v1/devices/{device}/bill").get_json()["bills"]]


def pair(client, phone: str, device: str = TV) -> None:
    code = client.post(f"/api/v1/devices/{device}/pairing").get_json()["code"]
    reply(client, phone, f"BIND {code}")


def last_reply(gw, phone: str) -> str:
    return sms_to(gw, phone, "reply")[-1].body


def boss_events(gw, event_type: str) -> list[str]:
    with gw.db.read() as session:
        return list(session.scalars(select(BossEvent.body).where(BossEvent.type == event_type)))


# --- loading bills -------------------------------------------------------------------------------


def test_bills_import_from_csv_all_or_nothing_and_safe_to_repeat(app, client, seeded, tmp_path):
    bad = CSV + "B-bad,tv-9,45.00,CNY,decimal amount\n"
    result = import_bills(app, tmp_path, bad)
    assert result.exit_code != 0 and "line 5: amount" in result.output
    assert "nothing was loaded" in result.output and outstanding(client) == []

    result = import_bills(app, tmp_path)
    assert result.exit_code == 0 and "3 bills added, 0 already loaded" in result.output
    assert outstanding(client) == ["B-2026-10-42", "B-2026-11-42"]
    bill = client.get(f"/api/v1/devices/{TV}/bill").get_json()["bills"][0]
    assert (bill["amount"], bill["currency"], bill["description"], bill["status"]) == (
        4500, "CNY", "2026年10月收视费", "outstanding")

    again = import_bills(app, tmp_path)
    assert again.exit_code == 0 and "0 bills added, 3 already loaded" in again.output
    changed = import_bills(app, tmp_path, CSV.replace("9900", "9000"))
    assert changed.exit_code != 0 and "B-2026-10-7 is already loaded" in changed.output


@pytest.mark.parametrize("text, message", [
    ("device_id,amount\ntv-1,100\n", "header"),
    ("bill_id,device_id,amount,currency,description\nB1,tv-1,0,CNY,zero\n", "amount"),
    ("bill_id,device_id,amount,currency,description\nB1,tv 1,100,CNY,x\n", "device_id"),
    ("bill_id,device_id,amount,currency,description\nB1,tv-1,100,XYZ,x\n", "currency"),
    ("bill_id,device_id,amount,currency,description\nB1,tv-1,100,CNY\n", "columns"),
    ("bill_id,device_id,amount,currency,description\nB1,tv-1,1,CNY,a\nB1,tv-1,1,CNY,a\n",
     "more than once"),
])
def test_a_bad_bills_file_is_refused_with_its_line(app, seeded, tmp_path, text, message):
    result = import_bills(app, tmp_path, text)
    assert result.exit_code != 0 and message in result.output


def test_the_admin_api_loads_bills_and_needs_the_admin_key(client, seeded):
    bill = {"bill_id": "B-1", "device_id": TV, "amount": 4500, "currency": "CNY",
            "description": "October"}
    assert client.post("/api/v1/admin/bills", json=bill).status_code == 401
    wrong = client.post("/api/v1/admin/bills", json=bill, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "unauthorized"
    bad = client.post("/api/v1/admin/bills", headers=ADMIN,
                      json={"bills": [bill, {**bill, "bill_id": "B-2", "amount": -1}]})
    assert bad.status_code == 400 and bad.get_json()["detail"].startswith("bills[1].amount")
    nul = client.post("/api/v1/admin/bills", headers=ADMIN,
                      json={**bill, "description": "Oct\u0000ober"})  # PostgreSQL refuses NUL
    assert nul.status_code == 400 and nul.get_json()["code"] == "invalid_bill"
    assert nul.get_json()["detail"].endswith("description: Value error, must not hold control "
                                             "characters")
    assert outstanding(client) == []
    added = client.post("/api/v1/admin/bills", json=bill, headers=ADMIN)
    assert added.status_code == 201 and added.get_json() == {"added": 1, "unchanged": 0}
    listed = client.get(f"/api/v1/admin/bills?device_id={TV}", headers=ADMIN).get_json()
    assert [b["bill_id"] for b in listed["bills"]] == ["B-1"]


def test_a_bill_list_with_anything_beside_it_is_refused_whole(client, seeded):
    bill = {"bill_id": "B-1", "device_id": TV, "amount": 4500, "description": "October"}
    for body in ({"bills": [bill], **{**bill, "bill_id": "B-2"}}, {"bills": [bill], "x": 1}):
        refused = client.post("/api/v1/admin/bills", headers=ADMIN, json=body)
        assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_bill"
    assert outstanding(client) == []


def test_a_bill_description_may_not_hide_or_turn_text(client, seeded):
    bill = {"bill_id": "B-1", "device_id": TV, "amount": 4500}
    for hidden in ("Oct\u202eober", "Oct\u200bober", "Oct\u0085ober"):
        refused = client.post("/api/v1/admin/bills", headers=ADMIN,
                              json={**bill, "description": hidden})
        assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_bill"
    added = client.post("/api/v1/admin/bills", headers=ADMIN,
                        json={**bill, "description": "2026年10月 收视费 (HD)"})
    assert added.status_code == 201


@pytest.mark.settings(ADMIN_API_KEY=None)
def test_with_no_admin_key_configured_the_admin_api_is_off(client, seeded):
    refused = client.get(f"/api/v1/admin/bills?device_id={TV}",
                         headers={"Authorization": "Bearer "})
    assert refused.status_code == 401 and refused.get_json()["code"] == "admin_api_off"


# --- paying bills from the TV -----------------------------------------------------------------


def test_a_tv_order_pays_a_bill_in_full_and_clears_it(app, client, seeded, tmp_path):
    import_bills(app, tmp_path)
    partial = client.post("/api/v1/orders", json={"device_id": TV, "bill_id": "B-2026-10-42",
                                                  "phone": RICH, "amount": 1000})
    assert partial.status_code == 409 and partial.get_json()["code"] == "partial_payment_refused"
    other_tv = client.post("/api/v1/orders", json={"device_id": "tv-7", "phone": RICH,
                                                   "bill_id": "B-2026-10-42"})
    assert other_tv.status_code == 404 and other_tv.get_json()["code"] == "bill_not_found"

    created = client.post("/api/v1/orders", json={"device_id": TV, "phone": RICH,
                                                  "bill_id": "B-2026-10-42"}).get_json()
    assert (created["kind"], created["bill_id"], created["amount"]) == (
        "bill", "B-2026-10-42", 4500)
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert stored_order(seeded, created["id"]).status == "activated"
    assert outstanding(client) == ["B-2026-11-42"]
    assert balance(seeded, "wallet:w-rich") == 50000 - 4500
    assert "缴费成功，已支付45.00元" in sms_to(seeded, RICH, "confirmed")[-1].body
    [event] = boss_events(seeded, "bill.paid")
    assert '"bill_id":"B-2026-10-42"' in event and f'"order_id":"{created["id"]}"' in event

    again = client.post("/api/v1/orders", json={"device_id": TV, "phone": CARD_ONLY,
                                                "bill_id": "B-2026-10-42"})
    assert again.status_code == 409 and again.get_json()["code"] == "bill_already_paid"


@pytest.mark.settings(LIMIT_PHONE_INTERVAL_SECONDS=0)
def test_a_bill_is_paid_once_when_two_orders_race_for_it(app, client, seeded, tmp_path):
    import_bills(app, tmp_path)
    by_code = client.post("/api/v1/orders", json={"device_id": TV, "phone": RICH,
                                                  "bill_id": "B-2026-10-42"}).get_json()
    by_qr = client.post(f"/api/v1/devices/{TV}/payment-codes",
                        json={"kind": "bill", "bill_id": "B-2026-10-42"}).get_json()
    assert (by_qr["kind"], by_qr["amount"]) == ("bill", 4500)
    # The QR page is paid first, from another wallet ...
    token = by_qr["payment_url"].rsplit("/", 1)[1]
    page = client.get(f"/w/{token}")
    assert "账单：2026年10月收视费" in page.text
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    client.post(f"/w/{token}/sign-in", data={"csrf_token": csrf, "account": "w-card",
                                              "password": "246802"})
    client.post(f"/w/{token}/pay", data={"csrf_token": csrf, "source": "card"})
    assert stored_order(seeded, by_qr["id"]).status == "activated"
    assert "账单已缴清" in client.get(f"/w/{token}").text
    # ... so the code reply for the other order takes nothing and says so.
    reply(client, RICH, code_sent_to(seeded, RICH))
    lost = client.get(f"/api/v1/orders/{by_code['id']}").get_json()
    assert (lost["status"], lost["reason"]) == ("failed", "bill_already_paid")
    assert balance(seeded, "wallet:w-rich") == 50000
    with seeded.db.read() as session:
        assert session.get(Hold, by_code["id"]).status == "released"
    assert outstanding(client) == ["B-2026-11-42"]
    assert len(boss_events(seeded, "bill.paid")) == 1


# --- SMS commands ------------------------------------------------------------------------------


def test_balance_by_sms_in_either_language(client, seeded):
    reply(client, RICH, "余额")
    assert last_reply(seeded, RICH) == "【TV Pay】钱包余额500.00元。"
    reply(client, RICH, " bal ")
    assert last_reply(seeded, RICH) == "[TV Pay] Your wallet balance is 500.00 CNY."
    reply(client, UNBOUND, "BALANCE")
    assert last_reply(seeded, UNBOUND) == "[TV Pay] This phone has no wallet."


def test_bill_by_sms_lists_the_paired_tvs_bills_in_one_sms(app, client, seeded, tmp_path):
    reply(client, RICH, "账单")
    assert "本手机未绑定电视" in last_reply(seeded, RICH)
    pair(client, RICH, "tv-none")
    reply(client, RICH, "BILL")
    assert last_reply(seeded, RICH) == "[TV Pay] Your TVs have no bills to pay."
    import_bills(app, tmp_path)
    pair(client, RICH)
    reply(client, RICH, "账单")
    answer = last_reply(seeded, RICH)
    assert answer == ("【TV Pay】待缴账单：1.2026年10月收视费45.00元；2.2026年11月收视费45.00元。"
                      "回复“缴费 序号”支付。")
    assert len(answer) <= 70


def test_help_stop_and_start(client, seeded):
    reply(client, RICH, "帮助")
    assert "指令" in last_reply(seeded, RICH)
    reply(client, RICH, "what?")  # no command: the help in SMS_LANGUAGE
    assert last_reply(seeded, RICH).startswith("【TV Pay】确认电视订单请回复6位验证码。指令")
    reply(client, RICH, "HELP")
    assert "Commands: BAL, BILL, PAY" in last_reply(seeded, RICH)

    reply(client, RICH, "退订")
    stop_answer = sms_to(seeded, RICH, "reply")[-1]
    assert "您已退订" in stop_answer.body and stop_answer.status == "queued"  # still sent
    created = order(client, RICH, "vip_month").get_json()
    assert (created["status"], created["reason"]) == ("failed", "sms_undeliverable")
    reply(client, RICH, "余额")
    assert sms_to(seeded, RICH, "reply")[-1].status == "failed"  # nothing more is sent

    reply(client, RICH, "start")
    started = sms_to(seeded, RICH, "reply")[-1]
    assert "You will get our SMS again" in started.body and started.status == "queued"


def test_pay_by_sms_needs_a_choice_when_there_are_several_bills(app, client, seeded, tmp_path):
    import_bills(app, tmp_path)
    pair(client, CARD_ONLY)
    reply(client, CARD_ONLY, "缴费")
    assert "回复“缴费 序号”支付" in last_reply(seeded, CARD_ONLY)
    reply(client, CARD_ONLY, "pay 3")
    assert "There is no bill 3" in last_reply(seeded, CARD_ONLY)
    reply(client, CARD_ONLY, "pay \x00\x07")  # no NUL reaches an SMS (PostgreSQL refuses it)
    assert "There is no bill" in last_reply(seeded, CARD_ONLY)
    assert "\x00" not in last_reply(seeded, CARD_ONLY)
    reply(client, CARD_ONLY, "缴费2")
    code = code_sent_to(seeded, CARD_ONLY)
    assert "2026年11月收视费" in sms_to(seeded, CARD_ONLY, "code")[-1].body
    reply(client, CARD_ONLY, code)
    assert outstanding(client) == ["B-2026-10-42"]


def test_pay_by_sms_without_the_money_says_so(app, client, seeded, tmp_path):
    import_bills(app, tmp_path, CSV.replace("4500", "450000"))
    pair(client, POOR)
    reply(client, POOR, "缴费 1")
    assert last_reply(seeded, POOR) == "【TV Pay】钱包和银行卡余额不足，未扣款。"
    assert len(outstanding(client)) == 2


# --- revoking an entitlement --------------------------------------------------------------------


def test_the_operator_revokes_an_entitlement_and_the_boss_is_told(client, seeded):
    created = order(client, RICH, "vip_month").get_json()
    reply(client, RICH, code_sent_to(seeded, RICH))
    assert stored_order(seeded, created["id"]).status == "activated"
    path = f"/api/v1/admin/devices/{TV}/entitlements/vip_month"
    assert client.delete(path).status_code == 401
    assert client.delete(path, headers=ADMIN).status_code == 204
    assert client.get(f"/api/v1/devices/{TV}/entitlements").get_json()["entitlements"] == []
    assert client.delete(path, headers=ADMIN).status_code == 404
    [event] = boss_events(seeded, "entitlement.revoked")
    assert f'"device_id":"{TV}"' in event and '"package_id":"vip_month"' in event


# --- over SMPP, through the built-in SMSC ------------------------------------------------------


@pytest.mark.settings(SMS_PROVIDER="smpp")
def test_bill_and_pay_by_sms_clear_a_bill_over_smpp(app, client, seeded, smsc, tmp_path):
    import_bills(app, tmp_path, CSV.replace("B-2026-11-42,tv-42", "B-2026-11-42,tv-7"))
    with running(seeded, smsc.port):
        code = client.post(f"/api/v1/devices/{TV}/pairing").get_json()["code"]
        smsc.reply(RICH, f"绑定 {code}")
        assert "已绑定电视" in smsc.wait_for_message(RICH).text
        smsc.reply(RICH, "账单")
        assert "待缴账单：1.2026年10月收视费45.00元。回复“缴费”支付。" in smsc.wait_for_message(
            RICH, count=2).text
        smsc.reply(RICH, "缴费")
        code_sms = smsc.wait_for_message(RICH, count=3).text
        assert "2026年10月收视费" in code_sms and "45.00元" in code_sms
        smsc.reply(RICH, re.search(r"回复 (\d{6})", code_sms).group(1))
        assert "缴费成功" in smsc.wait_for_message(RICH, count=4).text
        wait_until(lambda: outstanding(client) == [], what="the bill to be cleared")
