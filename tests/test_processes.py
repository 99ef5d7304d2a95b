"""The service as people run it: `python app.py`, the CLI beside it, gunicorn, migrations."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway import migrate
from gateway.config import PROJECT_ROOT
from gateway.store.db import make_engine
from gateway.store.models import Base
from tests.processes import command, free_port, gunicorn, logged, started, wait_for


def test_the_migrations_build_exactly_the_models(database_url):
    engine = make_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a newcomer: no store configured, a private data folder."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "SECRET_KEY",
                        "INBOUND_SMS_SECRET", "PUBLIC_BASE_URL"}}
    env.update(VAR_DIR=str(tmp_path / "var"), PORT=str(free_port()), PYTHONUNBUFFERED="1")
    return env


def call(url: str, body: dict | None = None, key: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def flask_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], env=env,
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for_value(fetch, timeout: float = 20):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := fetch():
            return value
        time.sleep(0.1)
    raise AssertionError(f"nothing came within {timeout} s")


def test_python_app_py_runs_the_whole_flow_on_embedded_defaults(clean_env, tmp_path):
    log = tmp_path / "app.log"
    with started(command("app.py"), clean_env, log, stdout=True) as process:
        demo = logged(log, process, r"TV Pay Gateway: (http://127\.0\.0\.1:\d+/\S*)").group(1)
        base = f"http://127.0.0.1:{clean_env['PORT']}/"
        assert demo == f"{base}demo"
        wait_for(base, process)
        links = re.findall(r"https?://\S+", log.read_text())
        assert links[0] == demo and {link.split("?")[0] for link in links} == {
            demo, f"{base}tv", f"{base}admin", f"{base}docs"}  # the banner's, and no other
        phones = f"{base}demo/"  # the demo page's phone: the built-in SMSC's inboxes
        key = flask_cli(clean_env, "apps", "create", "curl-tv").strip()  # while it runs
        packages = call(f"{base}api/v1/packages", key=key)["packages"]
        assert {p["id"] for p in packages} == {"vip_month", "vip_year", "sports_month"}
        created = call(f"{base}api/v1/orders", {"device_id": "tv-1", "package_id": "vip_month",
                                                 "phone": "13800138000"}, key)
        assert created["status"] == "awaiting_code"
        inbox = f"{phones}phones/8613800138000/messages"
        [sms] = wait_for_value(lambda: call(inbox)["messages"])  # it came over SMPP
        code = re.search(r"回复 (\d{6})", sms["text"]).group(1)
        # The row keeps the code only until the SMS has gone: then the text with it masked.
        kept = wait_for_value(lambda: "******" in (printed := flask_cli(
            clean_env, "sms", "outbox", "--to", "13800138000")) and printed)
        assert code not in kept
        call(f"{phones}phones/8613800138000/reply", {"text": code})  # the reply goes over SMPP
        wait_for_value(lambda: call(f"{base}api/v1/orders/{created['id']}", key=key)["status"]
                       == "activated")
        assert "支付成功" in wait_for_value(lambda: call(inbox)["messages"][1:])[0]["text"]
        assert (Path(clean_env["VAR_DIR"]) / "gateway.db").exists()
        assert (Path(clean_env["VAR_DIR"]) / "redis.db.settings").exists()
    log_text = log.read_text()  # stopped by SIGTERM, with exit code 0
    assert "SMPP worker stopped" in log_text and "worker stopped" in log_text


def test_the_cli_works_on_a_fresh_clone_before_the_first_start(clean_env):
    """The README's `flask --app app apps create my-tv`, before `python app.py` ever ran."""
    key = flask_cli(clean_env, "apps", "create", "my-tv").strip()
    assert key.startswith("tvpay_")
    assert "my-tv" in flask_cli(clean_env, "apps", "list")
    assert "database is at the latest revision" in flask_cli(clean_env, "db", "upgrade")


def test_on_a_server_database_without_its_schema_the_cli_says_what_to_run(clean_env):
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs TEST_DATABASE_URL (PostgreSQL)")
    with migrate.private_schema(url, prefix="empty") as empty:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "apps", "create",
                                 "my-tv"], env={**clean_env, "DATABASE_URL": empty},
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "run `flask --app app db upgrade` first" in result.stderr


def test_a_port_in_use_stops_python_app_py_at_once_naming_port(clean_env):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    try:
        port = held.getsockname()[1]
        result = subprocess.run(command("app.py"), env={**clean_env, "PORT": str(port)},
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    finally:
        held.close()
    assert result.returncode != 0
    assert result.stdout == ""  # no URL printed before the refusal, nor anything else
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert f"PORT={port + 1} python app.py" in result.stderr and "Traceback" not in result.stderr
    assert not (Path(clean_env["VAR_DIR"]) / "gateway.db").exists()  # nothing started


def test_python_app_py_keeps_one_connection_and_says_so_when_given_smpp_config(clean_env):
    config = PROJECT_ROOT / "examples" / "smpp-connections.yaml"
    result = subprocess.run(command("app.py"), env={**clean_env, "SMPP_CONFIG": str(config)},
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the local run keeps one SMPP connection" in result.stderr
    assert "Unset SMPP_CONFIG" in result.stderr


def test_gunicorn_serves_the_app_after_the_release_step(clean_env):
    env = {**clean_env, "SECRET_KEY": "production-secret-0123456789"}
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "seed", str(PROJECT_ROOT / "examples" / "demo.json"))
    key = flask_cli(env, "apps", "create", "operator-tv").strip()
    with gunicorn(env) as base:  # stopped by SIGTERM, with exit code 0
        created = call(f"{base}/api/v1/orders", {"device_id": "tv-1",
                                                  "package_id": "vip_month",
                                                  "phone": "13600136000"}, key)
        assert created["status"] == "awaiting_wap"
        # No setting turns the demo on: only `python app.py` gives the app an SMSC to show.
        for path in ("/demo", "/demo/phones/13600136000/messages"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            refused.value.close()
            assert refused.value.code == 404, path


@pytest.mark.parametrize("role", ["web", "stream", "worker", "smpp"])
def test_a_production_start_refuses_the_local_runs_defaults(clean_env, role):
    """No SECRET_KEY (the local run keeps a random one per host) and the built-in SMSC's
    password for a real SMSC: every production process stops at once, naming both."""
    weak = {**clean_env, "SMPP_HOST": "127.0.0.1", "SMPP_PORT": str(free_port())}
    bind = ["--bind", f"127.0.0.1:{free_port()}", "--workers", "1"]
    result = subprocess.run([*command(role), *(bind if role in ("web", "stream") else [])],
                            env=weak, cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "TV Pay Gateway will not start" in said
    assert "SECRET_KEY must be set" in said and "SMPP_PASSWORD must be" in said
    assert "Traceback" not in said
