"""Load packages, wallets, linked cards and phone bindings from a JSON file.

Loading is all or nothing and idempotent: a file is checked whole before anything is written,
and loading the same file again changes nothing. A wallet or card that already exists keeps
its balance (the ledger, not the file, is the record of money once it exists); names, prices,
passwords, cards and bindings are brought in line with the file.

A wallet gives its payment password either plain (``"password"``: hashed here, in a pool of
processes, one per core, at about 90 ms of CPU each) or already hashed (``"password_hash"``,
exactly one of the two), in one of werkzeug's formats, which sign-in checks as it checks its
own (the rules are in ``seed_passwords``)::

    scrypt:<N>:<r>:<p>$<salt>$<128 hex>              N a power of 2, 16384 to 2**20, < 2**(16r)
    pbkdf2:sha256:<iterations>$<salt>$<64 hex>       600000 to 1200000 iterations
    pbkdf2:sha512:<iterations>$<salt>$<128 hex>      210000 to 600000 iterations

Steps, each usable alone (``load_seed`` runs them in one session): ``read_seed`` checks the
file whole; ``stored_passwords`` reads the hashes of the wallets that exist;
``settle_passwords`` hashes (the slow part, which needs no database); ``write_seed`` writes in
batches of ``BATCH`` wallets, in the caller's one transaction.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, NamedTuple, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import phones
from gateway.backend import seed_passwords
from gateway.backend.seed_passwords import Progress
from gateway.config import PROJECT_ROOT
from gateway.domain.errors import InvalidInput
from gateway.domain.money import MINOR_DIGITS
from gateway.payment import ledger
from gateway.store.models import Account, Card, Package, PhoneBinding, Wallet
from gateway.store.writes import insert_rows, write_queued

__all__ = ["BATCH", "DEMO_FILE", "Parsed", "SeedFile", "SeedReport", "load_seed", "parse_seed",
           "read_seed", "settle_passwords", "stored_passwords", "write_seed"]

DEMO_FILE = PROJECT_ROOT / "examples" / "demo.json"  # what `python app.py` loads at first start

_Id = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
_Amount = Annotated[StrictInt, Field(ge=0, le=10**13)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Priced(Strict):
    currency: Annotated[StrictStr, Field(json_schema_extra={"enum": sorted(MINOR_DIGITS)})] = "CNY"

    @field_validator("currency")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in MINOR_DIGITS:
            raise ValueError(f"must be one of {', '.join(sorted(MINOR_DIGITS))}")
        return value


class PackageIn(Priced):
    id: _Id
    name: Annotated[StrictStr, Field(min_length=1, max_length=120)]
    price: Annotated[StrictInt, Field(gt=0, le=10**11)]
    period_days: Annotated[StrictInt, Field(gt=0, le=3660)]


class CardIn(Strict):
    bank: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    last4: Annotated[StrictStr, Field(pattern=r"^[0-9]{4}$")]
    balance: _Amount


class WalletIn(Priced):
    id: _Id
    owner: Annotated[StrictStr, Field(min_length=1, max_length=120)]
    balance: _Amount
    password: Annotated[StrictStr, Field(min_length=6, max_length=64)] | None = None
    password_hash: Annotated[StrictStr, Field(max_length=255)] | None = None
    phones: list[StrictStr] = []
    card: CardIn | None = None

    @field_validator("password_hash")
    @classmethod
    def _a_known_hash(cls, value: str | None) -> str | None:
        if value is not None and (problem := seed_passwords.hash_format_error(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_password(self) -> WalletIn:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of password and password_hash")
        return self


class SeedFile(Strict):
    packages: list[PackageIn] = []
    wallets: list[WalletIn] = []


def _location(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:] or "$"


def parse_seed(text: str, allowed_regions: tuple[str, ...]) -> tuple[SeedFile, dict[str, str]]:
    """Check a seed document whole; return it and each phone's E.164 form.

    :raise InvalidInput: ``invalid_seed`` naming the place at fault, e.g.
        ``wallets[0].card.balance: Input should be greater than or equal to 0``.
    """
    try:
        seed = SeedFile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{_location(first['loc'])}: {first['msg']}",
                           code="invalid_seed") from None

    def fail(place: str, message: str) -> InvalidInput:
        return InvalidInput(f"{place}: {message}", code="invalid_seed")

    for kind, items in (("packages", seed.packages), ("wallets", seed.wallets)):
        repeated = [key for key, n in Counter(item.id for item in items).items() if n > 1]
        if repeated:
            index = [item.id for item in items].index(repeated[0])
            raise fail(f"{kind}[{index}].id", f"{repeated[0]!r} appears more than once")
    e164: dict[str, str] = {}
    owner: dict[str, str] = {}
    for w, wallet in enumerate(seed.wallets):
        for p, raw in enumerate(wallet.phones):
            place = f"wallets[{w}].phones[{p}]"
            try:
                number = phones.parse(raw, allowed_regions)
            except InvalidInput as exc:
                raise fail(place, exc.detail) from None
            if owner.setdefault(number, wallet.id) != wallet.id:
                raise fail(place, f"already bound to wallet {owner[number]!r}")
            e164[raw] = number
    return seed, e164


@dataclass
class SeedReport:
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        kinds = sorted(set(self.created) | set(self.updated)) or ["nothing"]
        return ", ".join(f"{k}: {self.created[k]} created, {self.updated[k]} updated"
                         for k in kinds)


class Parsed(NamedTuple):
    seed: SeedFile
    e164: dict[str, str]  # each phone as the file writes it -> its E.164 form


class Settled(NamedTuple):
    """The hash a wallet with a plain password is to have, and the stored hash it was decided
    against (None: the wallet did not exist)."""

    basis: str | None
    hash: str


BATCH = 1000  # wallets written a round
T = TypeVar("T")


def read_seed(path: Path, allowed_regions: tuple[str, ...]) -> Parsed:
    """Read and check ``path`` whole.

    :raise InvalidInput: ``invalid_seed`` (unreadable file or the first place at fault).
    """
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", code="invalid_seed") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"line {exc.lineno} column {exc.colno}: {exc.msg}",
                           code="invalid_seed") from None
    return Parsed(*parse_seed(text, allowed_regions))


def _batches(items: list[T], size: int = BATCH) -> list[list[T]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def stored_passwords(session: Session, seed: SeedFile) -> dict[str, str]:
    """The stored hashes of the file's wallets that exist and have a plain password there."""
    ids = [w.id for w in seed.wallets if w.password is not None]
    found: dict[str, str] = {}
    for batch in _batches(ids):
        found.update(session.execute(select(Wallet.id, Wallet.password_hash)
                                     .where(Wallet.id.in_(batch))).all())
    return found


def settle_passwords(seed: SeedFile, stored: dict[str, str], *, workers: int | None = None,
                     progress: Progress | None = None) -> dict[str, Settled]:
    """The hash of each wallet with a plain password: its stored one while the password
    matches it, else a new one; hashed across ``workers`` processes (default: one a core)."""
    plain = [(w.id, w.password) for w in seed.wallets if w.password is not None]
    tasks = [(stored.get(wallet_id), password) for wallet_id, password in plain]
    hashes = seed_passwords.settle(tasks, workers=workers, progress=progress)
    return {wallet_id: Settled(basis, hashed)
            for (wallet_id, _), (basis, _), hashed in zip(plain, tasks, hashes, strict=True)}


def load_seed(session: Session, path: Path, allowed_regions: tuple[str, ...],
              now: datetime, *, workers: int | None = None,
              progress: Progress | None = None) -> SeedReport:
    """Check ``path`` whole, then bring the database in line with it in ``session``.

    :raise InvalidInput: ``invalid_seed`` (unreadable file or the first place at fault).
    """
    parsed = read_seed(path, allowed_regions)
    passwords = settle_passwords(parsed.seed, stored_passwords(session, parsed.seed),
                                 workers=workers, progress=progress)
    return write_seed(session, parsed, passwords, now, progress=progress)


def write_seed(session: Session, parsed: Parsed, passwords: dict[str, Settled],
               now: datetime, *, progress: Progress | None = None) -> SeedReport:
    """Bring the database in line with a checked file, ``BATCH`` wallets a round, in the
    session's transaction. ``passwords``: ``settle_passwords``'s; a wallet whose stored hash
    changed since is settled again here."""
    seed, report = parsed.seed, SeedReport()
    currencies = {p.currency for p in seed.packages} | {w.currency for w in seed.wallets}
    for currency in sorted(currencies):
        ledger.open_system_accounts(session, currency)
    for item in seed.packages:
        _create_or_sync(session, report, "packages", Package, {"id": item.id},
                        {"name": item.name, "price": item.price, "currency": item.currency,
                         "period_days": item.period_days})
    session.flush()
    done, total = 0, len(seed.wallets)
    if progress and total:
        progress("writing wallets", 0, total)
    for batch in _batches(seed.wallets):
        _write_wallets(session, report, batch, passwords, now)
        _write_cards(session, report, batch)
        _write_accounts(session, batch, now)
        _write_bindings(session, report, batch, parsed.e164, now)
        session.flush()
        write_queued(session)  # the batch's journal entries, now rather than all at commit
        done += len(batch)
        if progress:
            progress("writing wallets", done, total)
    return report


def _create_or_sync(session: Session, report: SeedReport, kind: str, model: type,
                    key: dict[str, str], values: dict[str, object]) -> None:
    """Create the row, or update only the fields of it that differ from the file."""
    row = session.get(model, tuple(key.values()))
    if row is None:
        session.add(model(**key, **values))
        report.created[kind] += 1
        return
    _sync(report, kind, row, values)


def _sync(report: SeedReport, kind: str, row: object, values: dict[str, object]) -> None:
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    report.updated[kind] += bool(changed)


def _password_hash(item: WalletIn, stored: str | None, passwords: dict[str, Settled]) -> str:
    if item.password_hash is not None:
        return item.password_hash
    assert item.password is not None
    settled = passwords.get(item.id)
    if settled is None or (stored is not None and settled.basis != stored):
        return seed_passwords.settle_one((stored, item.password))  # changed since: again
    return settled.hash


def _write_wallets(session: Session, report: SeedReport, batch: list[WalletIn],
                   passwords: dict[str, Settled], now: datetime) -> None:
    existing = {w.id: w for w in session.scalars(
        select(Wallet).where(Wallet.id.in_([item.id for item in batch])))}
    new = []
    for item in batch:
        wallet = existing.get(item.id)
        hashed = _password_hash(item, wallet.password_hash if wallet else None, passwords)
        if wallet is None:
            new.append({"id": item.id, "owner": item.owner, "currency": item.currency,
                        "password_hash": hashed, "created_at": now, "web_failed_attempts": 0})
        else:
            _sync(report, "wallets", wallet, {"owner": item.owner, "password_hash": hashed})
    insert_rows(session, Wallet, *new)
    report.created["wallets"] += len(new)


def _write_cards(session: Session, report: SeedReport, batch: list[WalletIn]) -> None:
    carded = [item for item in batch if item.card is not None]
    existing = {c.wallet_id: c for c in session.scalars(
        select(Card).where(Card.wallet_id.in_([item.id for item in carded])))}
    new = []
    for item in carded:
        assert item.card is not None
        values: dict[str, object] = {"bank": item.card.bank, "last4": item.card.last4}
        if (card := existing.get(item.id)) is None:
            new.append({"wallet_id": item.id, **values})
        else:
            _sync(report, "cards", card, values)
    session.flush()  # a card's wallet may be an update pending
    insert_rows(session, Card, *new)
    report.created["cards"] += len(new)


def _write_accounts(session: Session, batch: list[WalletIn], now: datetime) -> None:
    """Open the accounts the batch's wallets and cards do not have yet, with their opening
    balances; an account that exists keeps its balance."""
    wanted: dict[str, tuple[int, str]] = {}
    for item in batch:
        wanted[ledger.wallet_account(item.id)] = (item.balance, item.currency)
        if item.card is not None:
            wanted[ledger.card_account(item.id)] = (item.card.balance, item.currency)
    existing = set(session.scalars(select(Account.id).where(Account.id.in_(list(wanted)))))
    by_currency: dict[str, list[tuple[str, int]]] = {}
    for account_id, (amount, currency) in wanted.items():
        if account_id not in existing:
            by_currency.setdefault(currency, []).append((account_id, amount))
    for currency, accounts in sorted(by_currency.items()):
        ledger.open_funded(session, accounts, currency, now)


def _write_bindings(session: Session, report: SeedReport, batch: list[WalletIn],
                    e164: dict[str, str], now: datetime) -> None:
    owner = {e164[raw]: item.id for item in batch for raw in item.phones}
    existing = {b.phone: b for b in session.scalars(
        select(PhoneBinding).where(PhoneBinding.phone.in_(list(owner))))}
    new = []
    for number, wallet_id in owner.items():
        if (binding := existing.get(number)) is None:
            new.append({"phone": number, "wallet_id": wallet_id, "created_at": now})
        elif binding.wallet_id != wallet_id:
            binding.wallet_id = wallet_id
            report.updated["phone bindings"] += 1
    session.flush()
    insert_rows(session, PhoneBinding, *new)
    report.created["phone bindings"] += len(new)
