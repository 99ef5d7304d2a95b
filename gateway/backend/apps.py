"""TV apps and their API keys: who may call ``/api/v1``, and which devices each app may use.

A key reads ``tvpay_<id>_<secret>``: the id finds its row, the secret (256 random bits) is
compared with its stored SHA-256 (a slow hash adds nothing to a secret that cannot be guessed),
and the whole key is shown once, when it is made. A device belongs to the TV app that first
used it: another app gets 404 for it and for its orders, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.domain.errors import Conflict, InvalidInput, NotFound
from gateway.store.db import read_or_insert
from gateway.store.models import ApiKey, Device, TvApp
from gateway.store.redis_store import KeyCache

__all__ = ["ADMIN", "TV", "Caller", "add_key", "any_admin_app", "authenticate",
           "claim_device", "create", "key_is_live", "list_keys", "may_use_device", "revoke",
           "sole_key"]

log = logging.getLogger(__name__)

TV, ADMIN = "tv", "admin"
_KEY = re.compile(r"tvpay_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")


@dataclass(frozen=True)
class Caller:
    """The app a request's key belongs to."""

    app_id: str
    name: str
    kind: str
    key_id: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_key(session: Session, app_id: str, now: datetime) -> str:
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    session.add(ApiKey(id=key_id, app_id=app_id, secret_hash=_hash(secret), created_at=now))
    return f"tvpay_{key_id}_{secret}"


def create(session: Session, name: str, kind: str, now: datetime) -> str:
    """Make an app and its first key; return the key (shown this once).

    :raise InvalidInput: a bad name. :raise Conflict: ``app_exists``.
    """
    if not _NAME.fullmatch(name):
        raise InvalidInput("an app name is 1-64 letters, digits, spaces, '.', '_' or '-'",
                           code="invalid_field", field="name")
    if session.scalar(select(TvApp.id).where(TvApp.name == name)) is not None:
        raise Conflict(f"an app named {name!r} exists; `apps key` adds a key", code="app_exists")
    app_id = f"app_{secrets.token_hex(6)}"
    session.add(TvApp(id=app_id, name=name, kind=kind, created_at=now))
    session.flush()
    return _new_key(session, app_id, now)


def add_key(session: Session, name: str, now: datetime) -> str:
    """Another key for the app ``name`` (to rotate: add, deploy, then revoke the old one)."""
    app_id = session.scalar(select(TvApp.id).where(TvApp.name == name))
    if app_id is None:
        raise NotFound(f"no app named {name!r}", code="app_not_found")
    return _new_key(session, app_id, now)


def sole_key(session: Session, name: str, kind: str, now: datetime) -> str:
    """A new key of the app ``name`` (made at the first call), its other keys revoked: the
    keys a local run makes at each start and prints, so that only the latest works."""
    try:
        key = create(session, name, kind, now)
    except Conflict:
        key = add_key(session, name, now)
    key_id = key.split("_", 2)[1]  # tvpay_<id>_<secret>
    app_id = session.scalar(select(ApiKey.app_id).where(ApiKey.id == key_id))
    session.execute(update(ApiKey).where(ApiKey.app_id == app_id, ApiKey.id != key_id,
                                         ApiKey.revoked_at.is_(None)).values(revoked_at=now))
    return key


def revoke(gw: Gateway, key_id: str) -> None:
    """End a key now: every request with it is refused from this commit on.

    :raise NotFound: ``key_not_found``.
    """
    with gw.db.transaction() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        if key.revoked_at is None:
            key.revoked_at = gw.clock()
    gw.key_cache.forget_all()


def list_keys(session: Session) -> list[tuple[TvApp, ApiKey]]:
    rows = session.execute(select(TvApp, ApiKey).join(ApiKey, ApiKey.app_id == TvApp.id)
                           .order_by(TvApp.name, ApiKey.created_at))
    return [(app, key) for app, key in rows]


def authenticate(gw: Gateway, header: str | None) -> Caller | None:
    """The app of an ``Authorization: Bearer <key>`` header, or None (missing, wrong, revoked)."""
    scheme, _, key = (header or "").partition(" ")
    found = _KEY.fullmatch(key.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        return None
    key_id, secret_hash = found.group(1), _hash(found.group(2))
    cache: KeyCache[Caller] = gw.key_cache
    epoch = cache.epoch()
    if (caller := cache.get(key_id, secret_hash, epoch)) is not None:
        return caller
    with gw.db.read() as session:
        row = session.execute(
            select(ApiKey.secret_hash, ApiKey.revoked_at, TvApp.id, TvApp.name, TvApp.kind)
            .join(TvApp, TvApp.id == ApiKey.app_id).where(ApiKey.id == key_id)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(
            row.secret_hash, secret_hash):
        return None
    caller = Caller(row.id, row.name, row.kind, key_id)
    cache.put(caller.key_id, caller, secret_hash, epoch)
    return caller


def key_is_live(session: Session, key_id: str) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.id == key_id,
                                                  ApiKey.revoked_at.is_(None))) is not None


def any_admin_app(session: Session) -> bool:
    return session.scalar(select(TvApp.id).where(TvApp.kind == ADMIN).limit(1)) is not None


def may_use_device(session: Session, app_id: str, device_id: str) -> bool:
    """Whether the device is the app's or nobody's yet."""
    owner = session.scalar(select(Device.app_id).where(Device.id == device_id))
    return owner in (None, app_id)


_OWNER = select(Device.app_id).where(Device.id == bindparam("device"))


def claim_device(session: Session, app_id: str, device_id: str, now: datetime) -> None:
    """Make the device the app's if it is nobody's yet (one statement on PostgreSQL, for a
    device known or new, in the common case).

    :raise NotFound: ``device_not_found`` when another app uses it.
    """
    owner = read_or_insert(session, Device, "app_id", id=device_id, created_at=now,
                           app_id=app_id)
    if owner is None:  # inserted meanwhile, or made before apps were
        session.execute(update(Device).where(Device.id == device_id, Device.app_id.is_(None))
                        .values(app_id=app_id))
        owner = session.execute(_OWNER, {"device": device_id}).scalar_one()
    if owner != app_id:
        raise NotFound(f"no device {device_id}", code="device_not_found")
