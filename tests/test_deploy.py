"""The production setup: gunicorn.conf.py under real gunicorn, every process's logs, the
container files (Dockerfile, compose.yaml)."""

from __future__ import annotations

import json
import os
import re
import runpy
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from gunicorn.workers.gthread import ThreadWorker

from gateway.config import PROJECT_ROOT
from tests import processes
from tests.conftest import UNBOUND, tv_auth
from tests.processes import command, gunicorn, logged, procfile, started, wait_for
from tests.smpp_helpers import wait_until

CONFIG = PROJECT_ROOT / "gunicorn.conf.py"


@pytest.fixture
def service_env(seeded, database_url) -> dict[str, str]:
    """The environment of a service process on the test's database and Redis."""
    return processes.service_env(seeded, database_url)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in text.splitlines() if line]


# --- gunicorn, for real ----------------------------------------------------------------------


def test_gunicorn_serves_with_request_ids_json_logs_and_stops_gracefully(app, service_env,
                                                                         tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"left by an earlier run")
    env = {**service_env, "WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log = tmp_path / "gunicorn.log"
    assert procfile("web") == ["gunicorn", "app:app"]  # the rest comes from gunicorn.conf.py
    with gunicorn(env, workers=None, log=log) as base:  # stopped by SIGTERM, with exit code 0
        request = urllib.request.Request(f"{base}/api/v1/packages",
                                         headers={"X-Request-ID": "deploy-check-1",
                                                  **tv_auth(app)})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Request-ID"] == "deploy-check-1"
            assert {p["id"] for p in json.loads(response.read())["packages"]} == \
                {"vip_month", "vip_year"}
        created = urllib.request.Request(
            f"{base}/api/v1/orders", headers={"Content-Type": "application/json", **tv_auth(app)},
            data=json.dumps({"device_id": "tv-7", "package_id": "vip_month",
                             "phone": UNBOUND}).encode())
        with urllib.request.urlopen(created, timeout=10) as response:
            payment_path = urlsplit(json.loads(response.read())["payment_url"]).path
        with urllib.request.urlopen(f"{base}{payment_path}?lang=en", timeout=10) as response:
            assert response.status == 200
        assert not (metrics_dir / "counter_99999.db").exists()  # emptied at start
        wait_until(lambda: list(metrics_dir.glob("*.db")), timeout=20,
                   what="the workers' own metrics")
        assert docker_healthcheck(env) == 0
    assert docker_healthcheck(env) != 0  # nothing answers any more

    lines = json_lines(log.read_text())
    messages = [(line["logger"], line["message"]) for line in lines]
    assert ("gunicorn.error", "Using worker: QueueTimedWorker") in messages
    assert len([m for _, m in messages if m.startswith("Booting worker")]) == 2
    assert ("gunicorn.error", "Shutting down: Master") in messages
    access = [line for line in lines if line["logger"] == "gateway.access"]
    [packages] = [line for line in access if line["request_id"] == "deploy-check-1"]
    assert packages["route"] == "/api/v1/packages" and packages["status"] == 200
    assert [line["route"] for line in access if line["level"] == "INFO"] == \
        ["/api/v1/packages", "/api/v1/orders", "/w/<token>"]
    assert all(re.fullmatch(r"[0-9a-f]{32}|deploy-check-1", line["request_id"])
               for line in access)
    text = log.read_text()
    assert payment_path not in text and "HTTP/1.1" not in text  # no gunicorn access line


def docker_healthcheck(env: dict[str, str]) -> int:
    """Run the Dockerfile's HEALTHCHECK command here; return its exit code."""
    found = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])$", (PROJECT_ROOT / "Dockerfile").read_text(),
                      re.MULTILINE | re.DOTALL)
    assert found, "the Dockerfile has no HEALTHCHECK"
    command = json.loads(found.group(1))
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                          timeout=30).returncode


# --- gunicorn.conf.py's settings and hooks ----------------------------------------------------


@pytest.fixture
def load_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Read gunicorn.conf.py as gunicorn does, in an environment restored afterwards."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "-")  # so that the variable is restored
    made: list[Path] = []

    def load(**environ: str | None) -> SimpleNamespace:
        for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "PROMETHEUS_MULTIPROC_DIR"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        config = SimpleNamespace(**runpy.run_path(str(CONFIG)))
        made.append(config.METRICS_DIR)
        return config

    yield load
    for path in made:
        if path.name.startswith("tvpay-metrics-"):
            shutil.rmtree(path, ignore_errors=True)


def test_the_settings_follow_the_environment(load_config, tmp_path):
    defaults = load_config()
    assert defaults.bind == "0.0.0.0:8000"
    assert issubclass(defaults.worker_class, ThreadWorker) and defaults.threads == 16
    assert 2 <= defaults.workers <= 4
    assert (defaults.timeout, defaults.graceful_timeout, defaults.keepalive) == (30, 30, 5)
    assert defaults.max_requests == 100_000 and 0 < defaults.max_requests_jitter < 100_000
    assert defaults.accesslog is None
    assert defaults.logconfig_dict["loggers"]["gunicorn.access"]["level"] == "CRITICAL"
    assert defaults.forwarded_allow_ips == "127.0.0.1,::1"
    chosen = load_config(PORT="9123", WEB_CONCURRENCY="3", GUNICORN_THREADS="8",
                         FORWARDED_ALLOW_IPS="10.0.0.0/8",
                         PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert (chosen.bind, chosen.workers, chosen.threads) == ("0.0.0.0:9123", 3, 8)
    assert chosen.forwarded_allow_ips == "10.0.0.0/8"
    assert chosen.METRICS_DIR == tmp_path


@pytest.mark.parametrize("name, value", [
    ("WEB_CONCURRENCY", "0"), ("WEB_CONCURRENCY", "many"), ("GUNICORN_THREADS", "-4"),
    ("PORT", "70000"),
])
def test_a_bad_value_stops_gunicorn_naming_the_variable(load_config, name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be a whole number"):
        load_config(**{name: value})


def test_metrics_files_start_empty_and_follow_the_workers(load_config, tmp_path):
    given = load_config(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    given.on_starting(None)
    folder = tmp_path / "metrics"
    assert folder.is_dir() and not list(folder.iterdir())
    (folder / "counter_100.db").write_bytes(b"old")
    given.on_starting(None)
    assert not list(folder.iterdir())
    for name in ("gauge_livesum_100.db", "gauge_livesum_200.db", "counter_100.db"):
        (folder / name).write_bytes(b"")
    given.child_exit(None, SimpleNamespace(pid=100))
    assert sorted(p.name for p in folder.iterdir()) == ["counter_100.db", "gauge_livesum_200.db"]
    given.on_exit(None)
    assert folder.is_dir()  # a folder given in the environment stays


def test_without_a_metrics_folder_gunicorn_makes_one_before_forking_and_removes_it(load_config):
    made = load_config()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(made.METRICS_DIR)  # for the workers
    assert made.METRICS_DIR.is_dir() and made.METRICS_DIR.name.startswith("tvpay-metrics-")
    made.on_starting(None)
    made.on_exit(None)
    assert not made.METRICS_DIR.exists()


# --- the other processes log the same way -------------------------------------------------


@pytest.mark.parametrize("role, log_format, ready_line", [
    ("worker", "json", "worker started"),
    ("worker", "text", "worker started"),
    ("smpp", "json", "bound to SMSC"),
])
def test_the_worker_and_smpp_processes_log_as_the_web_does(service_env, tmp_path, role,
                                                           log_format, ready_line):
    log = tmp_path / f"{role}.log"
    env = {**service_env, "LOG_FORMAT": log_format, "SMS_PROVIDER": "smpp"}
    with started(command(role), env, log) as process:  # stopped by SIGTERM, exit code 0
        logged(log, process, re.escape(ready_line))
    text = log.read_text()
    if log_format == "json":
        [line] = [line for line in json_lines(text) if ready_line in line["message"]]
        assert line["level"] == "INFO" and line["logger"] in ("gateway.background", "smpp.worker")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    else:
        assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z INFO gateway\.background \[-\] worker started",
                         text, re.MULTILINE), text
        assert not text.lstrip().startswith("{")


def test_python_app_py_logs_json_lines_and_never_a_raw_path(service_env, tmp_path):
    port = service_env["PORT"]
    log = tmp_path / "app.log"
    token = secrets.token_urlsafe(24)
    with started(command("app.py"), service_env, log) as process:
        logged(log, process, "worker started")
        wait_for(f"http://127.0.0.1:{port}/healthz", process)
        with pytest.raises(urllib.error.HTTPError):  # no such link: 404
            urllib.request.urlopen(f"http://127.0.0.1:{port}/w/{token}?lang=en", timeout=10)
    lines = json_lines(log.read_text())  # werkzeug's request lines, with raw paths, are off
    assert {"gateway.access", "gateway.background"} <= {line["logger"] for line in lines}
    [page] = [line for line in lines if line.get("route") == "/w/<token>"]
    assert page["status"] == 404
    assert token not in log.read_text()
    assert "lang=en" not in log.read_text()  # no request line of werkzeug


# --- the container files -----------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose` (v2), or a standalone docker-compose v2; skip without either."""
    for compose in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(compose[0]) is None:
            continue
        found = subprocess.run([*compose, "version"], capture_output=True, text=True)
        if found.returncode == 0 and re.search(r"v?2\.\d+", found.stdout):
            return compose
    pytest.skip("no Docker Compose v2 (`docker compose` or docker-compose) on this machine")


def compose_config(**environ: str) -> subprocess.CompletedProcess[str]:
    """compose.yaml as Compose reads it with ``environ`` (and no .env file) set."""
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ADMIN_API_KEY"}}
    return subprocess.run([*compose_command(), "-f", str(PROJECT_ROOT / "compose.yaml"),
                           "--env-file", os.devnull, "config", "--format", "json"],
                          env={**env, **environ}, capture_output=True, text=True, timeout=60)


def test_compose_runs_every_process_from_one_image_on_postgres_and_redis():
    result = compose_config(SECRET_KEY="k" * 20, ADMIN_API_KEY="a" * 20)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "stream", "worker", "smpp"}
    app = {name: services[name] for name in ("migrate", "web", "stream", "worker", "smpp")}
    assert {service["image"] for service in app.values()} == {"tvpay-gateway"}
    assert {service["build"]["context"] for service in app.values()} == {str(PROJECT_ROOT)}
    assert app["migrate"]["command"] == procfile("release")
    for role in ("web", "stream", "worker", "smpp"):
        assert app[role]["command"] == procfile(role)
        assert app[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert app[role]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert app[role]["environment"]["SECRET_KEY"] == "k" * 20
        assert app[role]["environment"]["DATABASE_URL"].startswith(
            "postgresql+psycopg://tvpay:")
        assert app[role]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert app["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["web"]["ports"][0]["target"] == 8000
    assert "PROMETHEUS_MULTIPROC_DIR" in app["web"]["environment"]
    assert {app[role]["environment"]["METRICS_PORT"] for role in ("worker", "smpp")} == \
        {"9101", "9102"}
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["command"][1:] == ["--save", "", "--appendonly", "no"]
    docker_cmd = re.search(r"^CMD (\[.*\])$", (PROJECT_ROOT / "Dockerfile").read_text(),
                           re.MULTILINE)
    assert json.loads(docker_cmd.group(1)) == procfile("web")


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ADMIN_API_KEY"])
def test_compose_refuses_to_start_without_the_secrets(missing):
    given = {"SECRET_KEY": "k" * 20, "ADMIN_API_KEY": "a" * 20}
    del given[missing]
    result = compose_config(**given)
    assert result.returncode != 0 and missing in result.stderr


def test_no_local_secret_or_environment_goes_into_the_image():
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", "var", "test-output", ".git", "__pycache__"} <= ignored
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    user = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")


# --- locked dependencies ------------------------------------------------------------------------

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def locked(file: str) -> dict[str, tuple[str, int]]:
    """The packages a lock file pins: name -> (version, how many hashes)."""
    found: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (PROJECT_ROOT / file).read_text().splitlines():
        if pin := _PIN.match(line):
            name = _name(pin.group(1))
            found[name] = (pin.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = found[name]
            found[name] = (version, hashes + 1)
    return found


def pinned(file: str) -> dict[str, str]:
    """What a requirements file pins itself (not what it includes with -r)."""
    return {_name(pin.group(1)): pin.group(2)
            for line in (PROJECT_ROOT / file).read_text().splitlines()
            if (pin := _PIN.match(line.strip()))}


def test_every_package_is_locked_at_one_version_with_its_hashes():
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    assert len(runtime) > len(pinned("requirements.txt"))  # transitive packages too
    for name, (version, hashes) in {**runtime, **dev}.items():
        assert hashes >= 1, f"{name}=={version} has no hash"
    for name, version in pinned("requirements.txt").items():
        assert runtime[name][0] == version, name
    for name, version in pinned("requirements-dev.txt").items():
        assert dev[name][0] == version, name
    # The tests run the very packages the service runs.
    assert {n: v for n, (v, _) in runtime.items()} == \
        {n: v for n, (v, _) in dev.items() if n in runtime}


def test_the_image_and_ci_install_the_locks_checking_every_hash():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install .*--require-hashes -r requirements\.lock$", dockerfile,
                     re.M)
    assert "requirements.txt" not in dockerfile
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^pip install .*--require-hashes -r requirements-dev\.lock$", ci, re.M)


def audit_summary(tmp_path: Path, report: dict[str, Any]) -> str:
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(report))
    return subprocess.run([sys.executable, str(PROJECT_ROOT / ".ci" / "audit.py"), "--report",
                           str(path)], capture_output=True, text=True, check=True).stdout


def test_the_audit_says_so_when_it_could_not_look(tmp_path):
    unreachable = {"dependencies": [
        {"name": n, "skip_reason": f"Dependency not found on PyPI and could not be audited: {n}"}
        for n in ("flask", "redis")], "fixes": []}
    said = audit_summary(tmp_path, unreachable)
    assert "NOT AUDITED" in said and "none of the 2 packages" in said
    assert "no known vulnerabilities" not in said.lower()
    found = audit_summary(tmp_path, {"dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "redis", "version": "8.1.0", "vulns": [{"id": "PYSEC-2099-1"}]}]})
    assert "redis 8.1.0: PYSEC-2099-1" in found and "2 of 2 packages looked up" in found
