"""Logs: JSON lines, request ids, the access log, and no secret in any of them."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import phonenumbers
import pytest
import sqlalchemy.exc

from gateway.backend import checkout
from gateway.background import Worker
from gateway.logs import JsonFormatter, TextFormatter
from smpp.simulator import Smsc
from tests.conftest import INBOUND_SECRET, RICH, UNBOUND, code_sent_to, order, reply, stored_order
from tests.smpp_helpers import running, wait_until
from tests.test_wap import PayPage, link_in_sms

ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
SMPP_PASSWORD = "pw9f3k2q"  # SMPP allows 8 characters


class Written:
    """Everything the root logger sees, formatted as the service writes it: JSON lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self, logger: str | None = None) -> list[dict]:
        parsed = [json.loads(line) for line in self.text.splitlines()]
        return [line for line in parsed if logger in (None, line["logger"])]


@pytest.fixture
def written(caplog: pytest.LogCaptureFixture) -> Iterator[Written]:
    """The JSON output of everything logged at DEBUG and above during the test."""
    caplog.set_level(logging.DEBUG)
    captured = Written()
    root = logging.getLogger()
    root.addHandler(captured.handler)
    yield captured
    root.removeHandler(captured.handler)


def error_record(text: str) -> logging.LogRecord:
    log = logging.getLogger("gateway.test")
    try:
        raise RuntimeError(text)
    except RuntimeError:
        return log.makeRecord(log.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())


# --- the format ---------------------------------------------------------------------------------


def test_a_json_line_has_time_level_logger_message_and_the_extras():
    record = logging.getLogger("gateway.test").makeRecord(
        "gateway.test", logging.WARNING, __file__, 1, "order %s failed", ("ord_1",), None,
        extra={"order_id": "ord_1", "attempts": 3})
    text = JsonFormatter().format(record)
    line = json.loads(text)
    assert "\n" not in text
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert re.fullmatch(ISO_UTC, line["time"])
    assert line == {"time": line["time"], "level": "WARNING", "logger": "gateway.test",
                    "message": "order ord_1 failed", "order_id": "ord_1", "attempts": 3}


def test_phones_and_link_tokens_are_masked_in_messages_extras_and_exceptions(written):
    token = secrets.token_urlsafe(24)
    try:
        raise ValueError(f"refused +8613800138000 on /w/{token} and /w/pair/K7M2Q9")
    except ValueError:
        logging.getLogger("gateway.test").exception(
            "sms to %s failed", "+8613900139000",
            extra={"to": "8613700137000", "numbers": ["13600136000"], "url": f"/w/{token}"})
    [line] = written.lines()
    assert line["message"] == "sms to 139****9000 failed"
    assert line["to"] == "861******7000" and line["numbers"] == ["136****6000"]
    assert line["url"] == "/w/<token>"
    assert "refused 138****8000 on /w/<token> and /w/pair/<code>" in line["exception"]
    for secret in ("13800138000", "13900139000", "13700137000", "13600136000", token, "K7M2Q9"):
        assert secret not in written.text
    text = TextFormatter().format(error_record(f"+8613800138000 /w/{token}"))
    assert token not in text and "13800138000" not in text
    assert "138****8000 /w/<token>" in text


def test_ids_with_long_digit_runs_are_not_taken_for_phone_numbers(written):
    logging.getLogger("gateway.test").info(
        "request b5d62d73a72c43578859a0972b6d4827: sms SM0123456789abcdef to 手机13800138000")
    [line] = written.lines()
    assert line["message"] == ("request b5d62d73a72c43578859a0972b6d4827: sms SM0123456789abcdef "
                               "to 手机138****8000")


def test_a_logger_name_with_a_long_digit_run_is_left_as_it_is():
    name = "smpp.Client.140234567890123"  # smpplib names its loggers by the client's id
    record = logging.getLogger(name).makeRecord(
        name, logging.INFO, __file__, 1, "bound for %s", ("+8613800138000",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == name and line["message"] == "bound for 138****8000"
    assert f" INFO {name} [-] bound for 138****8000" in TextFormatter().format(record)


def test_the_text_format_is_one_readable_line_with_the_request_id(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/api/v1/packages", headers={"X-Request-ID": "text-1"})
    [record] = [r for r in caplog.records if r.name == "gateway.access"]
    assert re.fullmatch(rf"{ISO_UTC} INFO gateway\.access \[text-1\] "
                        r"GET /api/v1/packages 200 \d+\.\d ms", TextFormatter().format(record))
    outside = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "hi", (), None)
    assert TextFormatter().format(outside).endswith(" INFO x [-] hi")


# --- request ids ----------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed_and_on_every_record_of_the_request(client, seeded,
                                                                          caplog, written):
    response = order(client, RICH, **{"X-Request-ID": "tv-42.order_1"})
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "tv-42.order_1"
    assert {r.name for r in caplog.records} >= {"gateway.backend.checkout.start", "gateway.access"}
    assert {getattr(r, "request_id", None) for r in caplog.records} == {"tv-42.order_1"}
    assert {line["request_id"] for line in written.lines()} == {"tv-42.order_1"}
    logging.getLogger("gateway.test").info("after the request")
    assert "request_id" not in written.lines()[-1]


@pytest.mark.parametrize("given", [
    "", "two words", "x" * 129, "ünïcode", "semi;colon", 'quote"d', "<script>",
])
def test_an_insane_request_id_is_replaced_by_a_new_one(client, written, given):
    response = client.get("/api/v1/packages", headers={"X-Request-ID": given})
    chosen = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", chosen)
    [line] = written.lines("gateway.access")
    assert line["request_id"] == chosen


def test_each_request_without_an_id_gets_its_own(client, written):
    first = client.get("/api/v1/packages").headers["X-Request-ID"]
    second = client.get("/api/v1/packages").headers["X-Request-ID"]
    assert first != second
    assert [line["request_id"] for line in written.lines("gateway.access")] == [first, second]
    longest = "A1-!#$%&'*+.^_`|~" + "z" * 111
    assert len(longest) == 128
    assert client.get("/", headers={"X-Request-ID": longest}).headers["X-Request-ID"] == longest


def test_the_error_handlers_logs_carry_the_request_id_and_no_token(client, seeded, written,
                                                                   monkeypatch):
    def database_gone(*args: object) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed"))

    monkeypatch.setattr(checkout, "order_by_token", database_gone)
    token = secrets.token_urlsafe(24)
    response = client.get(f"/w/{token}", headers={"X-Request-ID": "page-503"})
    assert response.status_code == 503 and response.headers["X-Request-ID"] == "page-503"
    [error] = written.lines("gateway.web.problems")
    assert error["level"] == "ERROR" and error["request_id"] == "page-503"
    assert "/w/<token>" in error["message"]
    assert token not in written.text


# --- the access log -------------------------------------------------------------------------


def test_the_access_line_names_the_route_never_the_path_nor_the_query(client, seeded, written):
    created = order(client, UNBOUND).get_json()
    token = urlsplit(created["payment_url"]).path.rsplit("/", 1)[1]
    client.get(f"/w/{token}?lang=en&secret=s3cr3t")
    client.get(f"/api/v1/orders/{created['id']}")
    client.get("/no/such/page?phone=13800138000")
    _, page, order_line, missing = written.lines("gateway.access")
    assert page["route"] == "/w/<token>" and page["message"].startswith("GET /w/<token> 200 ")
    assert (page["method"], page["status"]) == ("GET", 200)
    assert isinstance(page["duration_ms"], float) and page["duration_ms"] >= 0
    assert order_line["route"] == "/api/v1/orders/<order_id>"
    assert created["id"] not in json.dumps(order_line)
    assert missing["route"] is None and missing["status"] == 404
    assert missing["message"].startswith("GET - 404 ")
    for secret in (token, "s3cr3t", "lang=en", "/no/such/page", "13800138000"):
        assert secret not in written.text


def test_probes_and_scrapes_are_logged_at_debug_only(client, written):
    assert client.get("/healthz").status_code == 200
    client.get("/api/v1/packages")
    levels = {line["route"]: line["level"] for line in written.lines("gateway.access")}
    assert levels == {"/healthz": "DEBUG", "/api/v1/packages": "INFO"}


# --- no secret anywhere, in a whole flow at DEBUG ---------------------------------------------


@pytest.fixture
def locked_smsc() -> Iterator[Smsc]:
    """The built-in SMSC, bound with a password of its own (to look for it in the logs)."""
    server = Smsc(password=SMPP_PASSWORD).start()
    yield server
    server.stop()


def spellings(e164: str) -> list[str]:
    """Every way a log could write the number, also inside a hex dump of an SMPP PDU."""
    number = phonenumbers.parse(e164)
    formats = [phonenumbers.format_number(number, getattr(phonenumbers.PhoneNumberFormat, kind))
               for kind in ("E164", "INTERNATIONAL", "NATIONAL", "RFC3966")]
    return [*formats, str(number.national_number), e164.lstrip("+"),
            e164.lstrip("+").encode().hex()]


@pytest.mark.parametrize("provider", [
    pytest.param("smpp", marks=pytest.mark.settings(SMS_PROVIDER="smpp",
                                                    SMPP_PASSWORD=SMPP_PASSWORD)),
    pytest.param("log", marks=pytest.mark.settings(SMS_PROVIDER="log")),
])
def test_a_whole_flow_at_debug_logs_no_phone_code_password_token_or_key(
        client, seeded, caplog, written, request, provider):
    gw = seeded
    # By SMS code: order, code SMS, reply, activated.
    if provider == "smpp":
        smsc = request.getfixturevalue("locked_smsc")
        with running(gw, smsc.port):
            by_code = order(client, RICH).get_json()
            code = re.search(r"回复 (\d{6})", smsc.wait_for_message(RICH).text).group(1)
            smsc.reply(RICH, code)
            wait_until(lambda: stored_order(gw, by_code["id"]).status == "activated",
                       what="the SMPP reply to activate the order")
    else:
        by_code = order(client, RICH).get_json()
        code = code_sent_to(gw, RICH)
        Worker(gw).run_once()  # the log provider writes the code SMS to the log
        reply(client, RICH, code)
        assert stored_order(gw, by_code["id"]).status == "activated"
    # By the payment page: sign in with the wallet's password, pay.
    by_page = order(client, UNBOUND, "vip_month").get_json()
    path = link_in_sms(gw, UNBOUND)
    page = PayPage(client, path)
    assert page.sign_in("w-rich", "135790").status_code == 303
    assert page.pay("wallet").status_code == 303
    assert stored_order(gw, by_page["id"]).status == "activated"

    said = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert {"gateway.access", "gateway.backend.checkout.start", "gateway.messaging.inbound"} <= \
        {record.name for record in caplog.records}
    forbidden = [*spellings(RICH), *spellings(UNBOUND), path.rsplit("/", 1)[1],
                 gw.settings.SECRET_KEY, INBOUND_SECRET, SMPP_PASSWORD,
                 SMPP_PASSWORD.encode().hex(), code.encode("utf-16-be").hex()]
    for secret in forbidden:
        assert secret not in said, secret
        assert secret not in written.text, secret
    for number in (code, "135790"):  # the code, the wallet's password
        alone = re.compile(rf"(?<!\d){number}(?!\d)")
        assert not alone.search(said) and not alone.search(written.text), number
    if provider == "log":
        [code_sms] = [line for line in written.lines("gateway.store.outbox")
                      if "(code)" in line["message"]]
        assert "138****8000" in code_sms["message"] and "******" in code_sms["message"]


def test_apps_built_again_and_again_wrap_log_records_once():
    """Each app build installs phone masking and request ids; a process that builds hundreds
    (this suite) must not stack them until a log call overflows the stack."""
    import inspect

    from gateway import phones
    from gateway.web import request_log

    for _ in range(600):
        phones.install_log_masking()
        request_log._install_request_ids()
    factory, depth = logging.getLogRecordFactory(), 0
    while inspect.isfunction(factory):  # down to logging's own LogRecord
        factory, depth = inspect.getclosurevars(factory).nonlocals["factory"], depth + 1
    assert depth <= 2
    logging.getLogger("test").warning("still logs %s", "+8613800138000")
