"""The SQL pool: connections the server closed while they sat in it, and a multi-host URL
(PostgreSQL only)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from gateway.context import Gateway
from gateway.store import db
from gateway.wiring import connect
from tests.processes import free_port


@pytest.fixture
def pooled(gw: Gateway) -> Gateway:
    if gw.db.dialect != "postgresql":
        pytest.skip("SQLite has no server to close a connection")
    return gw


def close_pooled_connection(gw: Gateway) -> None:
    """Have PostgreSQL end the backend of the connection the pool holds (it holds one: the
    test uses one at a time)."""
    with gw.db.read() as session:
        pid = session.scalar(text("SELECT pg_backend_pid()"))
    admin = create_engine(gw.db.url, poolclass=NullPool)
    with admin.begin() as connection:
        assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_connection_closed_while_idle_is_replaced_before_a_request_uses_it(
        pooled, client, monkeypatch):
    assert client.get("/api/v1/packages").status_code == 200
    close_pooled_connection(pooled)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle long enough
    assert client.get("/api/v1/packages").status_code == 200


def test_a_connection_closed_moments_after_its_use_fails_one_request_then_the_pool_renews(
        pooled, client):
    assert client.get("/api/v1/packages").status_code == 200
    close_pooled_connection(pooled)  # not pinged: it was used moments ago
    response = client.get("/api/v1/packages")
    assert response.status_code == 503
    assert response.get_json()["code"] == "service_unavailable"
    assert client.get("/api/v1/packages").status_code == 200


def test_a_multi_host_url_reaches_the_writable_server_past_a_dead_one(pooled):
    """libpq's multi-host form, as a PostgreSQL failover setup gives it: the first host is
    down, the next is the read-write primary."""
    url = make_url(pooled.db.url)
    dead = free_port()
    multi = url.set(host=None, port=None).update_query_dict({
        "host": f"127.0.0.1,{url.host}", "port": f"{dead},{url.port or 5432}",
        "target_session_attrs": "read-write"})
    gw = connect(dataclasses.replace(
        pooled.settings, DATABASE_URL=multi.render_as_string(hide_password=False)))
    try:
        with gw.db.read() as session:
            assert session.scalar(text("SELECT NOT pg_is_in_recovery()"))
            assert session.scalar(text("SELECT count(*) FROM packages")) == 0
    finally:
        gw.close()
