"""Twilio as the SMS provider: the real ``twilio`` client against a local server with Twilio's
Messages API, and webhooks signed with the package's own signature algorithm."""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from gateway.background import Worker
from gateway.config import ConfigError, load_settings
from gateway.store.models import SmsOptOut
from tests import twilio_fake
from tests.conftest import RICH, UNBOUND, balance, code_sent_to, order, sms_to, stored_order
from tests.twilio_fake import PUBLIC, sign, webhook

pytest_plugins = ["tests.twilio_fake"]


@pytest.fixture
def extra_settings(twilio):
    return twilio_fake.settings(twilio.base)


def send_queued(gw) -> int:
    return Worker(gw).run_once()[1]


def twiml_messages(response) -> list[str]:
    assert response.mimetype == "application/xml"
    return [m.text for m in ElementTree.fromstring(response.data).iter("Message")]


def test_a_code_sms_goes_out_by_twilio_with_its_sid(client, seeded, twilio):
    created = order(client, RICH).get_json()
    code = code_sent_to(seeded, RICH)
    assert send_queued(seeded) == 1
    [sent] = twilio.to(RICH)
    assert sent["From"] == twilio_fake.FROM
    assert sent["StatusCallback"] == f"{PUBLIC}/sms/twilio/status"
    assert code in sent["Body"]
    [row] = sms_to(seeded, RICH, "code")
    assert code not in row.body  # gone: the row keeps the text with the code masked
    assert (row.status, row.provider, row.provider_message_id) == (
        "submitted", "twilio", sent["sid"])
    assert stored_order(seeded, created["id"]).status == "awaiting_code"


@pytest.mark.settings(TWILIO_FROM=None, TWILIO_MESSAGING_SERVICE_SID="MG" + "1" * 32)
def test_a_messaging_service_can_send_instead_of_a_number(client, seeded, twilio):
    order(client, UNBOUND)
    send_queued(seeded)
    [sent] = twilio.to(UNBOUND)
    assert sent["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in sent


def test_throttling_and_server_errors_are_retried_with_growing_pauses(client, seeded, twilio,
                                                                      clock):
    twilio.failures += [(429, 20429), (503, 20500)]
    order(client, UNBOUND)
    send_queued(seeded)
    [row] = sms_to(seeded, UNBOUND)
    assert (row.status, row.attempts) == ("queued", 1) and "429" in row.error
    assert row.retry_at == clock.now + timedelta(seconds=5)
    send_queued(seeded)  # not before its retry time
    assert twilio.to(UNBOUND) == [] and sms_to(seeded, UNBOUND)[0].attempts == 1
    clock.advance(seconds=5)
    send_queued(seeded)
    [row] = sms_to(seeded, UNBOUND)
    assert (row.status, row.attempts) == ("queued", 2) and "503" in row.error
    assert row.retry_at == clock.now + timedelta(seconds=15)
    clock.advance(seconds=15)
    send_queued(seeded)
    assert len(twilio.to(UNBOUND)) == 1
    assert sms_to(seeded, UNBOUND)[0].status == "submitted"


def test_twilio_unreachable_is_retried(client, seeded, twilio, clock):
    order(client, UNBOUND)
    worker = Worker(seeded)
    worker.twilio.client.api.base_url = "http://127.0.0.1:9"  # nothing listens there
    worker.run_once()
    [row] = sms_to(seeded, UNBOUND)
    assert row.status == "queued" and "unreachable" in row.error


def test_an_invalid_number_fails_the_message_and_its_code_order(client, seeded, twilio):
    twilio.invalid.add(RICH)
    created = order(client, RICH).get_json()
    assert balance(seeded, "wallet:w-rich") == 30000  # held
    send_queued(seeded)
    [row] = sms_to(seeded, RICH, "code")
    assert row.status == "failed" and row.error.startswith("twilio 21211")
    failed = stored_order(seeded, created["id"])
    assert (failed.status, failed.reason) == ("failed", "sms_undeliverable")
    assert balance(seeded, "wallet:w-rich") == 50000  # released


@pytest.mark.settings(LIMIT_PHONE_INTERVAL_SECONDS=0)
def test_an_unsubscribed_recipient_is_opted_out_for_the_whole_service(client, seeded, twilio):
    twilio.unsubscribed.add(RICH)
    order(client, RICH)
    send_queued(seeded)
    with seeded.db.read() as session:
        assert session.get(SmsOptOut, RICH).source == "twilio 21610"
    # The next order cannot send its code: it fails at once, nothing held, nothing sent.
    again = order(client, RICH, device="tv-2").get_json()
    assert (again["status"], again["reason"]) == ("failed", "sms_undeliverable")
    assert balance(seeded, "wallet:w-rich") == 50000
    assert send_queued(seeded) == 0 and twilio.to(RICH) == []


def test_a_signed_reply_pays_and_is_answered_with_twiml(client, seeded, twilio):
    created = order(client, RICH).get_json()
    code = code_sent_to(seeded, RICH)
    wrong = webhook(client, "/sms/twilio/inbound",
                    {"From": RICH, "To": twilio_fake.FROM, "Body": "000000", "MessageSid": "SM1"})
    assert wrong.status_code == 200
    [answer] = twiml_messages(wrong)
    assert "验证码错误" in answer
    assert sms_to(seeded, RICH, "reply")[-1].status == "sent"  # carried by the TwiML answer
    right = webhook(client, "/sms/twilio/inbound",
                    {"From": RICH, "To": twilio_fake.FROM, "Body": code, "MessageSid": "SM2"})
    assert twiml_messages(right) == []  # the payment sends its own confirmation
    assert stored_order(seeded, created["id"]).status == "activated"


def test_a_signed_sms_sent_again_is_answered_again_and_acted_on_once(client, seeded, twilio):
    """Twilio retries a webhook it got no answer to, and anyone who saw a signed request can
    post it again: the same MessageSid burns one try, not two."""
    created = order(client, RICH).get_json()
    wrong = {"From": RICH, "To": twilio_fake.FROM, "Body": "000000", "MessageSid": "SMwrong"}
    first = webhook(client, "/sms/twilio/inbound", wrong)
    again = webhook(client, "/sms/twilio/inbound", wrong)
    assert again.status_code == 200 and twiml_messages(again) == twiml_messages(first)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored_order(seeded, created["id"]).code_attempts == 1
    assert len(sms_to(seeded, RICH, "reply")) == 1  # one answer recorded, not two
    other = webhook(client, "/sms/twilio/inbound", {**wrong, "MessageSid": "SMwrong2"})
    assert "Idempotent-Replayed" not in other.headers
    assert stored_order(seeded, created["id"]).code_attempts == 2


def test_a_replayed_stop_does_not_opt_the_phone_out_again(client, seeded, twilio):
    stop = {"From": RICH, "Body": "STOP", "OptOutType": "STOP", "MessageSid": "SMstop"}
    start = {"From": RICH, "Body": "START", "OptOutType": "START", "MessageSid": "SMstart"}
    webhook(client, "/sms/twilio/inbound", stop)
    webhook(client, "/sms/twilio/inbound", start)
    assert webhook(client, "/sms/twilio/inbound", stop).status_code == 200  # replayed
    with seeded.db.read() as session:
        assert session.scalars(select(SmsOptOut.phone)).all() == []
    assert order(client, RICH).get_json()["status"] == "awaiting_code"


def test_unsigned_or_wrongly_signed_webhooks_change_nothing(client, seeded, twilio):
    created = order(client, RICH).get_json()
    params = {"From": RICH, "Body": code_sent_to(seeded, RICH), "MessageSid": "SM3"}
    path = "/sms/twilio/inbound"
    assert webhook(client, path, params, signature=None).status_code == 403
    assert webhook(client, path, params, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    other_url = sign("https://elsewhere.example" + path, params)
    assert webhook(client, path, params, signature=other_url).status_code == 403
    forged = sign(PUBLIC + path, params, token="not-our-token")
    assert webhook(client, path, params, signature=forged).status_code == 403
    tampered = sign(PUBLIC + path, {**params, "Body": "123456"})
    assert webhook(client, path, params, signature=tampered).status_code == 403
    assert stored_order(seeded, created["id"]).status == "awaiting_code"
    status = {"MessageSid": "SMx", "MessageStatus": "failed"}
    assert webhook(client, "/sms/twilio/status", status, signature=None).status_code == 403


def test_status_callbacks_settle_the_message_once(client, seeded, twilio):
    created = order(client, RICH).get_json()
    send_queued(seeded)
    [sent] = twilio.to(RICH)
    sid = sent["sid"]
    sent_status = {"MessageSid": sid, "MessageStatus": "sent"}
    assert webhook(client, "/sms/twilio/status", sent_status).status_code == 204
    assert sms_to(seeded, RICH, "code")[0].status == "submitted"
    undelivered = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert webhook(client, "/sms/twilio/status", undelivered).status_code == 204
    [row] = sms_to(seeded, RICH, "code")
    assert row.status == "undeliverable" and "30003" in row.error
    failed = stored_order(seeded, created["id"])
    assert (failed.status, failed.reason) == ("failed", "sms_undeliverable")
    # Replayed, or a late "delivered": nothing changes.
    assert webhook(client, "/sms/twilio/status", undelivered).status_code == 204
    delivered = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert webhook(client, "/sms/twilio/status", delivered).status_code == 204
    assert sms_to(seeded, RICH, "code")[0].status == "undeliverable"
    assert balance(seeded, "wallet:w-rich") == 50000


def test_a_delivered_callback_marks_the_message_delivered(client, seeded, twilio):
    order(client, UNBOUND)
    send_queued(seeded)
    [sent] = twilio.to(UNBOUND)
    webhook(client, "/sms/twilio/status", {"MessageSid": sent["sid"],
                                           "MessageStatus": "delivered"})
    assert sms_to(seeded, UNBOUND)[0].status == "delivered"


def test_stop_and_start_through_twilio_opt_the_phone_out_and_in(client, seeded, twilio):
    stop = {"From": RICH, "Body": "STOP", "OptOutType": "STOP", "MessageSid": "SM4"}
    assert twiml_messages(webhook(client, "/sms/twilio/inbound", stop)) == []
    with seeded.db.read() as session:
        assert session.scalars(select(SmsOptOut.phone)).all() == [RICH]
    start = {"From": RICH, "Body": "START", "OptOutType": "START", "MessageSid": "SM5"}
    webhook(client, "/sms/twilio/inbound", start)
    with seeded.db.read() as session:
        assert session.scalars(select(SmsOptOut.phone)).all() == []
    assert order(client, RICH).get_json()["status"] == "awaiting_code"


def test_bad_webhook_fields_are_refused(client, seeded, twilio):
    missing = webhook(client, "/sms/twilio/inbound", {"From": RICH, "MessageSid": "SM6"})
    assert missing.status_code == 400 and missing.get_json()["code"] == "missing_field"
    no_sid = webhook(client, "/sms/twilio/inbound", {"From": RICH, "Body": "BAL"})
    assert no_sid.status_code == 400 and no_sid.get_json()["detail"] == "MessageSid is required"
    bad_phone = webhook(client, "/sms/twilio/inbound", {"From": "nobody", "Body": "123456",
                                                        "MessageSid": "SM7"})
    assert bad_phone.status_code == 400 and bad_phone.get_json()["code"] == "invalid_phone"


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"])
def test_twilio_needs_its_credentials_and_a_sender(tmp_path, missing):
    environ = {**{k: str(v) for k, v in twilio_fake.settings("http://x").items()},
               "VAR_DIR": str(tmp_path), missing: ""}
    with pytest.raises(ConfigError, match=missing):
        load_settings(environ=environ)


@pytest.mark.parametrize("value", ["sms", "smpp,smpp", "log,twilio", "smpp,"])
def test_bad_provider_lists_are_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="SMS_PROVIDER"):
        load_settings(environ={"VAR_DIR": str(tmp_path), "SMS_PROVIDER": value})
