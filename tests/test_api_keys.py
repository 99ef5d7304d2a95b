"""TV app keys: `flask --app app apps ...`, the key on every /api/v1 call, devices per app.

(Each TV operation's 401 and 404 against the OpenAPI document: tests/test_openapi.py.)
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from gateway.backend import apps, pages
from gateway.store.models import ApiKey, Order
from gateway.wiring import connect
from tests.conftest import CARD_ONLY, RICH, new_tv_app, order, sms_to, tv_key

KEY = re.compile(r"tvpay_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_the_cli_makes_a_key_shown_once_and_kept_hashed(app, gw, runner, client, seeded):
    made = runner.invoke(args=["apps", "create", "Acme TV"])
    assert made.exit_code == 0, made.output
    key = KEY.search(made.stdout).group(0)
    assert "cannot be shown again" in made.stderr
    with gw.db.read() as session:
        stored = session.scalars(select(ApiKey.secret_hash)).all()
    assert all(key.rsplit("_", 1)[1] not in value for value in stored)  # only its digest
    listed = runner.invoke(args=["apps", "list"]).stdout
    assert "Acme TV (tv) key " + key.split("_")[1] + " made" in listed and key not in listed
    assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 200
    again = runner.invoke(args=["apps", "create", "Acme TV"])
    assert again.exit_code != 0 and "exists" in again.stderr
    second = KEY.search(runner.invoke(args=["apps", "key", "Acme TV"]).stdout).group(0)
    assert client.get("/api/v1/packages", headers=bearer(second)).status_code == 200


def test_a_revoked_key_is_refused_from_the_next_request(runner, client, seeded):
    key = KEY.search(runner.invoke(args=["apps", "create", "Old TV"]).stdout).group(0)
    assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 200
    revoked = runner.invoke(args=["apps", "revoke", key.split("_")[1]])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    refused = client.get("/api/v1/packages", headers=bearer(key))
    assert refused.status_code == 401 and refused.get_json()["code"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="tvpay"'
    assert "revoked" in runner.invoke(args=["apps", "list"]).stdout
    assert runner.invoke(args=["apps", "revoke", "nosuchkey"]).exit_code != 0


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer nonsense", "Basic dXNlcjpwYXNz",
    "Bearer tvpay_000000000000_" + "A" * 43,  # well formed, no such key
])
def test_without_a_live_key_nothing_is_read_or_done(app, client, seeded, header):
    headers = {"Authorization": header} if header else {"Authorization": ""}
    for response in (client.get("/api/v1/packages", headers=headers),
                     client.post("/api/v1/orders", headers=headers, json={
                         "device_id": "tv-1", "package_id": "vip_year", "phone": RICH})):
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
    assert sms_to(seeded, RICH) == []
    with seeded.db.read() as session:
        assert session.scalars(select(Order)).all() == []


def test_a_device_belongs_to_the_app_that_first_used_it(app, client, seeded):
    created = order(client, RICH, device="tv-7").get_json()  # the test's own app
    other = bearer(new_tv_app(app, "Other TV"))
    for path in ("/api/v1/devices/tv-7/entitlements", "/api/v1/devices/tv-7/bill",
                 "/api/v1/devices/tv-7/pairing"):
        refused = client.get(path, headers=other)
        assert refused.status_code == 404 and refused.get_json()["code"] == "device_not_found"
    taken = client.post("/api/v1/orders", headers=other, json={
        "device_id": "tv-7", "package_id": "vip_month", "phone": RICH})
    assert taken.status_code == 404 and taken.get_json()["code"] == "device_not_found"
    cancel = client.post(f"/api/v1/orders/{created['id']}/cancel", headers=other)
    assert cancel.status_code == 404 and cancel.get_json()["code"] == "order_not_found"
    assert client.get(f"/api/v1/orders/{created['id']}").get_json()["status"] == "awaiting_code"
    # the other app has TVs of its own
    assert client.post("/api/v1/orders", headers=other, json={
        "device_id": "tv-8", "package_id": "vip_month", "phone": CARD_ONLY}).status_code == 201
    mine = client.get("/api/v1/devices/tv-8/entitlements")
    assert mine.status_code == 404 and mine.get_json()["code"] == "device_not_found"


@pytest.mark.settings(ADMIN_API_KEY=None)
def test_an_admin_apps_key_opens_the_admin_api_and_dashboard_not_the_tv_api(app, runner,
                                                                            client, seeded):
    off = client.get("/api/v1/admin/bills?device_id=tv-1")
    assert off.status_code == 401 and off.get_json()["code"] == "admin_api_off"
    admin = KEY.search(runner.invoke(args=["apps", "create", "ops", "--admin"]).stdout).group(0)
    assert client.get("/api/v1/admin/bills?device_id=tv-1",
                      headers=bearer(admin)).status_code == 200
    assert client.get("/admin", headers=bearer(admin)).status_code == 200
    as_tv = client.get("/api/v1/packages", headers=bearer(admin))
    assert as_tv.status_code == 401
    tv_on_admin = client.get("/api/v1/admin/bills?device_id=tv-1", headers=bearer(tv_key(app)))
    assert tv_on_admin.status_code == 401 and tv_on_admin.get_json()["code"] == "unauthorized"
    runner.invoke(args=["apps", "revoke", admin.split("_")[1]])
    assert client.get("/admin", headers=bearer(admin)).status_code == 401


def test_a_key_revoked_by_another_process_is_refused_from_the_next_request(app, gw, client,
                                                                           seeded):
    """Each process remembers keys it has checked; a revocation anywhere ends that at once."""
    key = new_tv_app(app, "Cached TV")
    for _ in range(2):  # the second answer comes from this process's memory of the key
        assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 200
    elsewhere = connect(gw.settings, clock=gw.clock)  # e.g. `flask apps revoke` on a server
    try:
        apps.revoke(elsewhere, key.split("_")[1])
    finally:
        elsewhere.close()
    assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 401


def test_a_remembered_key_still_needs_its_secret(app, client, seeded):
    key = new_tv_app(app, "Cached TV")
    assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 200
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.get("/api/v1/packages", headers=bearer(forged)).status_code == 401


def test_keys_are_checked_in_sql_when_redis_forgot_everything(app, gw, client, seeded):
    """Redis restarted empty: no process trusts what it remembered, so a revocation it could
    not announce (Redis was down) still holds."""
    key = new_tv_app(app, "Cached TV")
    assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 200
    for name in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*"):
        gw.redis.delete(name)
    with gw.db.transaction() as session:
        session.execute(update(ApiKey).where(ApiKey.id == key.split("_")[1])
                        .values(revoked_at=gw.clock()))
    assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 401


@pytest.mark.settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_keys_work_while_redis_is_down(app, client, seeded):
    key = new_tv_app(app, "Cached TV")
    for _ in range(2):
        assert client.get("/api/v1/packages", headers=bearer(key)).status_code == 200
    assert client.get("/api/v1/packages", headers=bearer(key[:-1] + "?")).status_code == 401


def test_each_local_start_s_keys_replace_the_last_start_s(client, gw):
    """`python app.py` prints a TV key and an admin key at each start: only the latest work,
    so a key printed to a terminal long ago opens nothing."""
    for kind, path in ((apps.TV, "/api/v1/packages"),
                       (apps.ADMIN, "/api/v1/admin/bills?device_id=tv-42")):
        first = pages.demo_key(gw, f"local-{kind}", kind)
        second = pages.demo_key(gw, f"local-{kind}", kind)
        assert client.get(path, headers={"Authorization": f"Bearer {second}"}).status_code == 200
        old = client.get(path, headers={"Authorization": f"Bearer {first}"})
        assert old.status_code == 401, (kind, old.get_json())
