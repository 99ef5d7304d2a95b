"""A newcomer's first minute, as the README tells it: `python app.py` in one terminal, the
README's curl walk-through pasted into a second, and the links the start prints.

The walk-through is taken from README.md itself, so the README cannot drift from the service.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT
from tests.processes import command, free_port, logged, started, wait_for

pytest_plugins = ["tests.browser"]

MARKER = "<!-- walk-through: tests/test_first_minute.py runs the next block as it stands -->"


@dataclass(frozen=True)
class LocalRun:
    base: str
    env: dict[str, str]
    banner: str


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """`python app.py` on embedded defaults, as a newcomer starts it, in a data folder of its
    own; yields once it serves, with what it printed."""
    folder = tmp_path_factory.mktemp("first-minute")
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "SECRET_KEY",
                        "INBOUND_SMS_SECRET", "PUBLIC_BASE_URL", "ADMIN_API_KEY"}}
    env.update(VAR_DIR=str(folder / "var"), PORT=str(free_port()), PYTHONUNBUFFERED="1")
    log = folder / "app.log"
    with started(command("app.py"), env, log, stdout=True) as process:
        logged(log, process, r"Ctrl-C stops it")
        base = f"http://127.0.0.1:{env['PORT']}"
        wait_for(f"{base}/healthz", process)
        yield LocalRun(base, env, log.read_text())


def walk_through() -> str:
    """The README's curl block after its marker, as a reader copies it."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in readme, "the README lost its walk-through marker"
    found = re.search(r"```sh\n(.*?)```", readme[readme.index(MARKER):], re.S)
    assert found is not None
    return found.group(1)


def a_clone_with_its_virtualenv(folder: Path) -> Path:
    """A folder like the newcomer's clone, its ``.venv`` the virtualenv running the tests."""
    for entry in PROJECT_ROOT.iterdir():
        if entry.name not in {".venv", "var", ".git"}:
            (folder / entry.name).symlink_to(entry)
    venv = folder / ".venv"
    if sys.prefix != sys.base_prefix:  # a virtualenv, as the README's commands make
        venv.symlink_to(sys.prefix)
    else:  # CI's or a system Python: an "activate" that puts it first on PATH
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "activate").write_text(
            f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    return folder


def test_the_readme_walk_through_runs_as_pasted_and_ends_with_the_entitlement(local_run,
                                                                               tmp_path):
    script = walk_through()
    assert script.count("localhost:5000") == 1  # one place to change for another PORT
    script = script.replace("localhost:5000", local_run.base.removeprefix("http://"))
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script],
                            cwd=a_clone_with_its_virtualenv(tmp_path), env=local_run.env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    last = result.stdout.strip().splitlines()[-1]
    entitlements = json.loads(last)
    [entitlement] = entitlements["entitlements"]
    assert entitlements["device_id"] == "tv-42" and entitlement["package_id"] == "vip_month"
    until = datetime.fromisoformat(entitlement["active_until"].replace("Z", "+00:00"))
    # two orders of 30 days each, both paid: by a typed number, then by the paired phone
    assert until - datetime.now(UTC) > timedelta(days=59)
    assert '"status":"activated"' in result.stdout.replace(" ", "")
    assert "Traceback" not in result.stderr


def test_the_start_prints_a_short_banner_of_links_that_work(local_run, browser):
    banner = local_run.banner
    assert "alembic" not in banner and "Running upgrade" not in banner  # a quiet migration
    start = banner.index("TV Pay Gateway: ")
    assert banner[:start].count("\n") <= 3  # a few start-up log lines at most above it
    tv = re.search(r"TV app alone +(http://\S+/tv\?key=(\S+))", banner)
    admin = re.search(r"dashboard +(http://\S+/admin) +\(admin key: (\S+)\)", banner)
    assert tv and admin, banner
    assert re.search(r"data +\S+gateway\.db", banner)

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(tv.group(1))  # the TV app alone, with its key: the packages, no dead end
        page.wait_for_selector(".tile")
        assert "VIP 月卡" in page.locator(".tiles").inner_text()
        assert "key=" not in page.url  # the key is kept, out of the address bar

        page.goto(f"{local_run.base}/demo")  # the demo links the dashboard and shows its key
        assert page.locator("code.admin-key").inner_text() == admin.group(2)
        page.get_by_role("link", name="Operator dashboard").click()
        page.wait_for_url(admin.group(1))
        note = page.locator("p.note").inner_text()
        assert "ADMIN_API_KEY" in note and "apps create NAME --admin" in note  # both kinds
        page.fill("#key", admin.group(2))
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Last')")  # the dashboard, signed in
    finally:
        context.close()
