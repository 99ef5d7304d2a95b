"""Idempotency-Key on POST /api/v1/orders: a retried request never orders twice."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.store.models import Order
from tests.conftest import RICH, UNBOUND, balance, order


def count_orders(gw) -> int:
    with gw.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(Order))


def test_the_same_key_and_body_return_the_first_response(client, seeded):
    first = order(client, RICH, **{"Idempotency-Key": "tv-42-attempt-1"})
    again = order(client, RICH, **{"Idempotency-Key": "tv-42-attempt-1"})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert count_orders(seeded) == 1
    assert balance(seeded, "wallet:w-rich") == 30000


def test_the_same_key_with_another_body_is_a_conflict(client, seeded):
    order(client, RICH, **{"Idempotency-Key": "k-1"})
    response = order(client, UNBOUND, **{"Idempotency-Key": "k-1"})
    assert response.status_code == 409
    assert response.get_json()["code"] == "idempotency_key_reused"
    assert count_orders(seeded) == 1


def test_a_refused_request_is_replayed_too_but_a_rate_limit_is_not(client, seeded):
    bad = order(client, RICH, package="nope", **{"Idempotency-Key": "k-2"})
    assert bad.status_code == 400
    assert order(client, RICH, package="nope", **{"Idempotency-Key": "k-2"}).headers[
        "Idempotent-Replayed"] == "true"
    order(client, RICH, device="tv-1")
    limited = order(client, RICH, device="tv-2", **{"Idempotency-Key": "k-3"})
    assert limited.status_code == 429
    again = order(client, RICH, device="tv-2", **{"Idempotency-Key": "k-3"})
    assert again.status_code == 429 and "Idempotent-Replayed" not in again.headers


def test_keys_are_checked(client, seeded):
    response = order(client, RICH, **{"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_idempotency_key"
    assert count_orders(seeded) == 0


def test_keys_live_a_day(gw, seeded, client):
    order(client, RICH, **{"Idempotency-Key": "k-ttl"})
    [name] = [k for k in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}idem:*")]
    assert 86000 < gw.redis.ttl(name) <= 86400


def test_a_request_that_died_in_progress_frees_its_key_within_a_minute(gw, seeded):
    gw.idempotency.begin("k-crash", "fingerprint")  # claimed, and never finished
    [name] = [k for k in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}idem:*")]
    assert 0 < gw.redis.ttl(name) <= 60
