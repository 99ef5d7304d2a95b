"""Seed files at an operator's scale: ready-made password hashes, whole-file checks of large
files, progress lines, reloads (issue 21, point 8). Nothing here is timed: bench/seed_import.py
measures."""

from __future__ import annotations

import hashlib
import json

import pytest
from werkzeug.security import generate_password_hash

from gateway.backend import seed_passwords
from gateway.payment import wallets
from gateway.store.models import Wallet
from tests.conftest import RICH, SEED, accounts
from tests.test_seed_and_cli import snapshot, write

SCRYPT = generate_password_hash("135790")  # scrypt:32768:8:1$...
PBKDF2 = generate_password_hash("135790", method="pbkdf2:sha256:600000")


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def many(count: int, **password: str) -> dict:
    """``count`` wallets with a phone and a card each, all with the same password field."""
    return {"wallets": [{"id": f"w-{i:06d}", "owner": f"owner {i}", "balance": i,
                         "phones": [f"+86139{i:08d}"], **password,
                         "card": {"bank": "ICBC", "last4": "0001", "balance": 100}}
                        for i in range(count)]}


@pytest.mark.parametrize("hashed", [SCRYPT, PBKDF2], ids=["scrypt", "pbkdf2"])
def test_a_wallet_given_a_ready_made_hash_signs_in_with_its_password(runner, gw, tmp_path,
                                                                     hashed):
    data = json.loads(json.dumps(SEED))
    del data["wallets"][0]["password"]
    data["wallets"][0]["password_hash"] = hashed
    result = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert result.exit_code == 0, result.output
    with gw.db.transaction() as session:
        assert session.get(Wallet, "w-rich").password_hash == hashed
    assert wallets.sign_in(gw, RICH, "135790", client="192.0.2.1") == "w-rich"


def test_a_hash_made_by_hand_as_documented_verifies():
    """The documented pbkdf2 format, made with hashlib alone (as another system would)."""
    digest = hashlib.pbkdf2_hmac("sha256", b"135790", b"saltsalt", 600000).hex()
    made = f"pbkdf2:sha256:600000$saltsalt${digest}"
    assert seed_passwords.hash_format_error(made) is None
    assert seed_passwords.settle_one((made, "135790")) == made


@pytest.mark.parametrize("value, says", [
    ("plain-text-password", "not a password hash"),
    (SCRYPT.replace("scrypt:32768", "scrypt:1024"), "power of 2 from 16384"),
    (SCRYPT.replace("scrypt:32768", "scrypt:30000"), "power of 2 from 16384"),
    (SCRYPT.replace("scrypt:32768:8:1", "scrypt:1048576:8:1"), "at most 1048576 (128 MiB"),
    (SCRYPT.replace("scrypt:32768:8:1", "scrypt:32768:8:16"), "p 1-4"),
    (SCRYPT.replace("scrypt:32768:8:1", "scrypt:65536:1:1"), "below 2^(16·r)"),
    (PBKDF2.replace(":600000$", ":10000000$"), "iterations must be 600000 to 1200000"),
    (SCRYPT[:-2], "not a password hash"),
    (SCRYPT.upper(), "not a password hash"),
    (PBKDF2.replace(":600000$", ":1000$"), "iterations must be 600000"),
    (PBKDF2 + "00", "has 64 hex digits"),
    ("md5$salt$0123456789abcdef0123456789abcdef", "not a password hash"),
])
def test_a_bad_hash_is_refused_naming_its_wallet_and_nothing_is_written(runner, gw, tmp_path,
                                                                        value, says):
    data = json.loads(json.dumps(SEED))
    del data["wallets"][2]["password"]
    data["wallets"][2]["password_hash"] = value
    before = snapshot(gw)
    result = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert result.exit_code != 0
    assert "wallets[2].password_hash" in result.output and says in result.output
    assert "nothing was loaded" in result.output
    assert snapshot(gw) == before


@pytest.mark.parametrize("both", [True, False])
def test_a_wallet_gives_exactly_one_of_password_and_password_hash(runner, gw, tmp_path, both):
    data = json.loads(json.dumps(SEED))
    if both:
        data["wallets"][1]["password_hash"] = SCRYPT
    else:
        del data["wallets"][1]["password"]
    result = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert result.exit_code != 0
    assert "wallets[1]: Value error, give exactly one of password and password_hash" in \
        result.output


def test_a_bad_row_late_in_a_large_file_writes_nothing(runner, gw, tmp_path):
    data = many(2000, password_hash=SCRYPT)
    data["wallets"][1998]["phones"] = data["wallets"][3]["phones"]
    before = snapshot(gw)
    result = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert result.exit_code != 0
    assert "wallets[1998].phones[0]: already bound to wallet 'w-000003'" in result.output
    assert snapshot(gw) == before


def test_a_large_file_loads_in_batches_and_again_changes_nothing(runner, gw, tmp_path):
    path = write(tmp_path, many(1200, password_hash=PBKDF2))
    first = runner.invoke(args=["seed", str(path)])
    assert first.exit_code == 0, first.output
    assert "wallets: 1200 created" in first.output and "cards: 1200 created" in first.output
    assert "phone bindings: 1200 created" in first.output
    held = accounts(gw)
    assert held["wallet:w-001199"] == 1199 and held["card:w-000000"] == 100
    before = snapshot(gw)
    second = runner.invoke(args=["seed", str(path)])
    assert second.exit_code == 0 and "wallets: 0 created, 0 updated" in second.output
    assert snapshot(gw) == before  # the app fixture audits the ledger at the end


def test_progress_is_a_line_a_tenth_when_not_on_a_terminal(runner, gw, tmp_path):
    """Plain passwords, enough of them for the pool of processes."""
    data = many(16, password="135790")
    data["wallets"][0]["password"] = "other-password"
    result = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    hashing = [line for line in lines if line.startswith("hashing passwords: ")]
    writing = [line for line in lines if line.startswith("writing wallets: ")]
    assert len(hashing) == 10 and hashing[0] == "hashing passwords: 2/16 (12%)"
    assert hashing[-1] == "hashing passwords: 16/16 (100%)"
    assert writing == ["writing wallets: 16/16 (100%)"]
    assert wallets.sign_in(gw, "+8613900000000", "other-password", client="192.0.2.1") == \
        "w-000000"
    # again: the stored hashes are checked (in the pool), and kept
    before = snapshot(gw)
    data["wallets"][5]["password"] = "changed-password"
    again = runner.invoke(args=["seed", str(write(tmp_path, data))])
    assert again.exit_code == 0 and "wallets: 0 created, 1 updated" in again.output
    after = snapshot(gw)
    changed = [row for row in after["wallets"] if row not in before["wallets"]]
    assert [row[0] for row in changed] == ["w-000005"]
