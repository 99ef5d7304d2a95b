"""`flask --app app seed FILE.json` and `sms outbox|receive`: the operator's and developer's CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.backend import seed
from gateway.payment import wallets
from gateway.store.models import Base, Package
from tests.conftest import RICH, SEED, accounts, code_sent_to, order, stored_order


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def snapshot(gw) -> dict[str, list[tuple]]:
    with gw.db.transaction() as session:
        return {t.name: sorted(map(tuple, session.execute(select(t)).all()))
                for t in Base.metadata.sorted_tables}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_seed_loads_and_a_second_run_changes_nothing(runner, gw, tmp_path):
    path = write(tmp_path, SEED)
    first = runner.invoke(args=["seed", str(path)])
    assert first.exit_code == 0, first.output
    assert "packages: 2 created" in first.output and "wallets: 3 created" in first.output
    assert accounts(gw)["wallet:w-rich"] == 50000 and accounts(gw)["card:w-card"] == 100000
    before = snapshot(gw)
    second = runner.invoke(args=["seed", str(path)])
    assert second.exit_code == 0 and "0 created, 0 updated" in second.output
    assert snapshot(gw) == before


def test_seed_updates_names_and_bindings_but_never_rewrites_a_balance(runner, gw, tmp_path):
    runner.invoke(args=["seed", str(write(tmp_path, SEED))])
    changed = json.loads(json.dumps(SEED))
    changed["packages"][0]["name"] = "VIP 月卡（新）"
    changed["wallets"][0]["balance"] = 1
    changed["wallets"][0]["phones"] = []
    changed["wallets"][1]["phones"].append(RICH)  # the phone moves to another wallet
    result = runner.invoke(args=["seed", str(write(tmp_path, changed))])
    assert result.exit_code == 0, result.output
    assert accounts(gw)["wallet:w-rich"] == 50000
    with gw.db.transaction() as session:
        assert session.get(Package, "vip_month").name == "VIP 月卡（新）"
        assert wallets.bound_wallet(session, RICH).id == "w-card"


def test_the_shipped_demo_file_loads(runner, gw):
    result = runner.invoke(args=["seed", str(seed.DEMO_FILE)])
    assert result.exit_code == 0, result.output
    assert "wallets: 4 created" in result.output


@pytest.mark.parametrize("mutate, place", [
    (lambda d: d["wallets"][1]["card"].update(balance=-5), "wallets[1].card.balance"),
    (lambda d: d["wallets"][0].update(balance=1.5), "wallets[0].balance"),
    (lambda d: d["wallets"][2]["phones"].append("12345"), "wallets[2].phones[1]"),
    (lambda d: d["wallets"][2]["phones"].append(RICH), "wallets[2].phones[1]"),
    (lambda d: d["packages"].append(dict(d["packages"][0])), "packages[0].id"),
    (lambda d: d["packages"][1].update(currency="XYZ"), "packages[1].currency"),
    (lambda d: d["packages"][1].update(colour="red"), "packages[1].colour"),
    (lambda d: d.update(wallets={}), "wallets"),
])
def test_a_malformed_file_is_refused_with_the_place_at_fault(runner, gw, tmp_path, mutate,
                                                             place):
    data = json.loads(json.dumps(SEED))
    mutate(data)
    before = snapshot(gw)
    result = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert result.exit_code != 0
    assert place in result.output and "nothing was loaded" in result.output
    assert snapshot(gw) == before


def test_a_file_that_is_not_json_is_refused_with_its_line(runner, gw, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"packages": [\n  {"id": }\n]}')
    result = runner.invoke(args=["seed", str(path)])
    assert result.exit_code != 0 and "line 2" in result.output


def test_sms_outbox_shows_the_full_text_so_a_developer_can_read_a_code(
        runner, client, seeded):
    order(client, RICH)
    code = code_sent_to(seeded, RICH)
    result = runner.invoke(args=["sms", "outbox", "--to", "13800138000", "--limit", "5"])
    assert result.exit_code == 0
    assert code in result.output and "138****8000" in result.output
    assert "[code, queued]" in result.output
    assert runner.invoke(args=["sms", "outbox", "--to", "+8613600136000"]).output.strip() == \
        "no messages"
    assert runner.invoke(args=["sms", "outbox", "--to", "nope"]).exit_code != 0


def test_sms_receive_confirms_like_a_phone(runner, client, seeded):
    created = order(client, RICH).get_json()
    result = runner.invoke(args=["sms", "receive", "--from", "13800138000",
                                 code_sent_to(seeded, RICH)])
    assert result.exit_code == 0, result.output
    assert stored_order(seeded, created["id"]).status == "activated"
