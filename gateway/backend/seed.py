"""Load packages, wallets, linked cards and phone bindings from a JSON file.

Loading is all or nothing and idempotent: a file is checked whole before anything is written,
and loading the same file again changes nothing. A wallet or card that already exists keeps
its balance (the ledger, not the file, is the record of money once it exists); names, prices,
passwords, cards and bindings are brought in line with the file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from gateway import phones
from gateway.config import PROJECT_ROOT
from gateway.domain.errors import InvalidInput
from gateway.domain.money import MINOR_DIGITS
from gateway.payment import ledger
from gateway.store.models import Account, Card, Package, PhoneBinding, Wallet

__all__ = ["DEMO_FILE", "SeedFile", "SeedReport", "load_seed", "parse_seed"]

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
    password: Annotated[StrictStr, Field(min_length=6, max_length=64)]
    phones: list[StrictStr] = []
    card: CardIn | None = None


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


def load_seed(session: Session, path: Path, allowed_regions: tuple[str, ...],
              now: datetime) -> SeedReport:
    """Check ``path`` whole, then bring the database in line with it in ``session``.

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
    seed, e164 = parse_seed(text, allowed_regions)
    report = SeedReport()
    currencies = {p.currency for p in seed.packages} | {w.currency for w in seed.wallets}
    for currency in sorted(currencies):
        ledger.open_system_accounts(session, currency)
    for item in seed.packages:
        _create_or_sync(session, report, "packages", Package, {"id": item.id},
                        {"name": item.name, "price": item.price, "currency": item.currency,
                         "period_days": item.period_days})
    for wallet in seed.wallets:
        _load_wallet(session, report, wallet, [e164[p] for p in wallet.phones], now)
    session.flush()
    return report


def _create_or_sync(session: Session, report: SeedReport, kind: str, model: type,
                    key: dict[str, str], values: dict[str, object]) -> None:
    """Create the row, or update only the fields of it that differ from the file."""
    row = session.get(model, tuple(key.values()))
    if row is None:
        session.add(model(**key, **values))
        report.created[kind] += 1
        return
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    report.updated[kind] += bool(changed)


def _load_wallet(session: Session, report: SeedReport, item: WalletIn, numbers: list[str],
                 now: datetime) -> None:
    wallet = session.get(Wallet, item.id)
    if wallet is None:
        session.add(Wallet(id=item.id, owner=item.owner, currency=item.currency, created_at=now,
                           password_hash=generate_password_hash(item.password)))
        report.created["wallets"] += 1
    else:
        changed = wallet.owner != item.owner
        wallet.owner = item.owner
        if not check_password_hash(wallet.password_hash, item.password):
            wallet.password_hash = generate_password_hash(item.password)
            changed = True
        report.updated["wallets"] += changed
    session.flush()
    _open_funded(session, ledger.wallet_account(item.id), item.balance, item.currency, now)
    if item.card is not None:
        _create_or_sync(session, report, "cards", Card, {"wallet_id": item.id},
                        {"bank": item.card.bank, "last4": item.card.last4})
        session.flush()
        _open_funded(session, ledger.card_account(item.id), item.card.balance, item.currency,
                     now)
    for number in numbers:
        binding = session.get(PhoneBinding, number)
        if binding is None:
            session.add(PhoneBinding(phone=number, wallet_id=item.id, created_at=now))
            report.created["phone bindings"] += 1
        elif binding.wallet_id != item.id:
            binding.wallet_id = item.id
            report.updated["phone bindings"] += 1


def _open_funded(session: Session, account_id: str, amount: int, currency: str,
                 now: datetime) -> None:
    """Open a customer account with its opening balance, once; an existing one is kept."""
    if session.get(Account, account_id) is not None:
        return
    ledger.open_account(session, account_id, currency)
    if amount:
        ledger.fund(session, account_id, amount, currency, now)
