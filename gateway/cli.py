"""Operator and developer commands: ``flask --app app seed|sms|events|bills|apps|db|worker``."""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.engine import make_url

from gateway import metrics, migrate, phones
from gateway.backend import apps, bills, boss, privacy, pumping, seed
from gateway.background import Worker
from gateway.config import ConfigError, refuse_local_defaults
from gateway.context import Gateway, services
from gateway.domain.errors import Conflict, InvalidInput, NotFound
from gateway.domain.times import iso
from gateway.messaging import inbound
from gateway.payment import wallets
from gateway.store import outbox

P = ParamSpec("P")

__all__ = ["register"]


def needs_schema(command: Callable[P, None]) -> Callable[P, None]:
    """A command that reads or writes the database: on a fresh local SQLite database it creates
    the schema first; on any other database whose schema is not the latest it says, in one
    line, what to run (there migrations are the release step's, ``db upgrade``)."""

    @functools.wraps(command)
    def checked(*args: P.args, **kwargs: P.kwargs) -> None:
        url = services().settings.DATABASE_URL
        if not migrate.is_current(url):
            if make_url(url).get_backend_name() != "sqlite":
                raise click.ClickException("the database's schema is missing or old: run "
                                           "`flask --app app db upgrade` first")
            with migrate.quiet():
                migrate.upgrade(url)
        command(*args, **kwargs)

    return checked


@click.command("seed")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes that hash passwords (default: one a core).")
@needs_schema
def seed_command(file: Path, workers: int | None) -> None:
    """Load packages, wallets, cards and phone bindings from FILE (JSON); safe to repeat.

    The file is checked whole first; passwords are hashed before the database is written
    (no write lock held meanwhile); then everything is written in one transaction."""
    gw = services()
    progress = _Progress()
    try:
        parsed = seed.read_seed(file, gw.settings.PHONE_COUNTRIES)
        with gw.db.read() as session:
            stored = seed.stored_passwords(session, parsed.seed)
        passwords = seed.settle_passwords(parsed.seed, stored, workers=workers,
                                          progress=progress)
        with gw.db.transaction() as session:
            report = seed.write_seed(session, parsed, passwords, gw.clock(), progress=progress)
    except InvalidInput as exc:
        raise click.ClickException(f"{file}: {exc.detail} (nothing was loaded)") from None
    finally:
        progress.close()
    click.echo(f"{file}: {report}")


class _Progress:
    """A bar on a terminal; else a line a tenth: ``hashing passwords: 10000/100000 (10%)``."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self.stage = ""
        self.bar: Any = None
        self.shown = 0  # bar: done so far; lines: the last tenth written

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.shown = stage, 0
            if self.terminal and total:
                self.bar = click.progressbar(length=total, label=stage, file=sys.stderr,
                                             show_pos=True, show_eta=True)
                self.bar.__enter__()
        if self.bar is not None:
            self.bar.update(done - self.shown)
            self.shown = done
        elif total and (tenth := done * 10 // total) > self.shown:
            self.shown = tenth
            click.echo(f"{stage}: {done}/{total} ({done * 100 // total}%)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


sms = AppGroup("sms", help="Look at outgoing SMS and simulate incoming ones.")


@sms.command("outbox")
@click.option("--to", "to", help="Only messages to this phone number.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@needs_schema
def outbox_command(to: str | None, limit: int) -> None:
    """Print recent outgoing SMS with their full text (newest first)."""
    gw = services()
    number = _phone(gw, to) if to else None
    with gw.db.transaction() as session:
        messages = outbox.recent(session, number, limit)
        for message in messages:
            stamp = message.created_at.isoformat(timespec="seconds")
            click.echo(f"#{message.id} {stamp} to {phones.mask(message.to_phone)} "
                       f"[{message.kind}, {message.status}] {message.body}")
    if not messages:
        click.echo("no messages")


@sms.command("receive")
@click.option("--from", "sender", required=True, help="The phone the SMS comes from.")
@click.argument("text")
@needs_schema
def receive_command(sender: str, text: str) -> None:
    """Act on TEXT as an SMS from a viewer's phone (a local stand-in for an SMS gateway)."""
    gw = services()
    try:
        reply = inbound.receive_sms(gw, sender=sender, text=text)
    except InvalidInput as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"reply: {reply}" if reply else "accepted; the confirmation SMS is in the outbox")


@sms.command("paused")
@needs_schema
def paused_command() -> None:
    """List the number prefixes whose SMS are paused (SMS pumping), and until when."""
    paused, _budgets = pumping.overview(services())
    if not paused:
        click.echo("no prefix is paused")
    for prefix, until in paused.items():
        click.echo(f"{prefix}… paused until {iso(until)}")


@sms.command("unpause")
@click.argument("prefix")
@needs_schema
def unpause_command(prefix: str) -> None:
    """Let SMS go to numbers starting with PREFIX again (as `sms paused` lists it)."""
    if not pumping.lift(services(), prefix.rstrip("…")):
        raise click.ClickException(f"{prefix} is not paused")
    click.echo(f"{prefix}: SMS go again")


def _phone(gw: Gateway, raw: str, param_hint: str = "--to") -> str:
    try:
        return phones.parse(raw, gw.settings.PHONE_COUNTRIES)
    except InvalidInput as exc:
        raise click.BadParameter(exc.detail, param_hint=param_hint) from None


events = AppGroup("events", help="Look at and resend the events posted to the operator's BOSS.")


@events.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]),
              help="Only events with this status.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@needs_schema
def events_list_command(status: str | None, limit: int) -> None:
    """Print recent events (newest first): their status, attempts and last error."""
    with services().db.read() as session:
        found = boss.recent(session, status, limit)
    for event in found:
        when = (f"delivered {iso(event.delivered_at)}" if event.status == "delivered" else
                f"next {iso(event.next_attempt_at)}" if event.status == "pending" else "gave up")
        error = f" last error: {event.last_error}" if event.last_error else ""
        click.echo(f"{event.id} {event.type} {event.status} attempts={event.attempts} "
                   f"created {iso(event.created_at)} {when}{error}")
    if not found:
        click.echo("no events")


@events.command("redeliver")
@click.argument("event_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Every failed event.")
@needs_schema
def events_redeliver_command(event_ids: tuple[str, ...], failed: bool) -> None:
    """Make EVENT_IDS (or, with --failed, every failed event) pending and due now."""
    if not event_ids and not failed:
        raise click.UsageError("give event ids, or --failed")
    gw = services()
    try:
        again = boss.redeliver(gw, event_ids, failed=failed)
    except boss.UnknownEvents as exc:
        raise click.ClickException(
            f"no such event: {', '.join(exc.args[0])} (nothing was changed)") from None
    click.echo(f"to deliver again: {', '.join(again)}" if again else "no failed events")
    if again and not gw.settings.BOSS_WEBHOOK_URL:
        click.echo("BOSS_WEBHOOK_URL is not set: nothing will post them", err=True)


bills_group = AppGroup("bills", help="Operators' outstanding fees per device.")


@bills_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@needs_schema
def bills_import_command(file: Path) -> None:
    """Load bills from FILE (CSV: bill_id,device_id,amount,currency,description; amount in
    minor units). All or nothing; a bill already loaded as it is stays as it is."""
    gw = services()
    try:
        parsed = bills.parse_csv(file.read_text(encoding="utf-8-sig"))
        with gw.db.transaction() as session:
            report = bills.add_bills(session, parsed, gw.clock())
    except (InvalidInput, Conflict) as exc:
        raise click.ClickException(f"{file}: {exc.detail} (nothing was loaded)") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{file}: not UTF-8 text (nothing was loaded)") from None
    click.echo(f"{file}: {report}")


apps_group = AppGroup("apps", help="TV apps and admin tools, and their API keys.")


def _show_key(key: str) -> None:
    click.echo(key)
    click.echo("keep it now: it is not stored and cannot be shown again", err=True)


@apps_group.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="A key for the admin API and the dashboard.")
@needs_schema
def apps_create_command(name: str, admin: bool) -> None:
    """Register the app NAME and print its first key (once)."""
    gw = services()
    try:
        with gw.db.transaction() as session:
            key = apps.create(session, name, apps.ADMIN if admin else apps.TV, gw.clock())
    except (InvalidInput, Conflict) as exc:
        raise click.ClickException(exc.detail) from None
    _show_key(key)


@apps_group.command("key")
@click.argument("name")
@needs_schema
def apps_key_command(name: str) -> None:
    """Print a new key of the app NAME (to rotate: add, deploy, revoke the old one)."""
    gw = services()
    try:
        with gw.db.transaction() as session:
            key = apps.add_key(session, name, gw.clock())
    except NotFound as exc:
        raise click.ClickException(exc.detail) from None
    _show_key(key)


@apps_group.command("list")
@needs_schema
def apps_list_command() -> None:
    """Every app and its keys (their ids, never the secrets)."""
    with services().db.read() as session:
        rows = apps.list_keys(session)
    for app, key in rows:
        state = f"revoked {iso(key.revoked_at)}" if key.revoked_at else "live"
        click.echo(f"{app.name} ({app.kind}) key {key.id} made {iso(key.created_at)} {state}")
    if not rows:
        click.echo("no apps")


@apps_group.command("revoke")
@click.argument("key_id")
@needs_schema
def apps_revoke_command(key_id: str) -> None:
    """End the key KEY_ID (as `apps list` shows it) now."""
    try:
        apps.revoke(services(), key_id)
    except NotFound as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"key {key_id} revoked")


wallets_group = AppGroup("wallets", help="Viewers' wallets.")


@wallets_group.command("unlock")
@click.argument("wallet_id")
@needs_schema
def wallets_unlock_command(wallet_id: str) -> None:
    """Let WALLET_ID pay on payment pages again, after too many wrong passwords stopped it."""
    if not wallets.unlock(services(), wallet_id):
        raise click.ClickException(f"no wallet {wallet_id}")
    click.echo(f"wallet {wallet_id}: page payments unlocked")


privacy_group = AppGroup("privacy", help="What the service holds about a phone number.")


@privacy_group.command("export")
@click.argument("phone")
@needs_schema
def privacy_export_command(phone: str) -> None:
    """Print, as JSON, everything held about PHONE."""
    gw = services()
    held = privacy.export(gw, _phone(gw, phone, "PHONE"))
    click.echo(json.dumps(held, ensure_ascii=False, indent=2))


@privacy_group.command("erase")
@click.argument("phone")
@needs_schema
def privacy_erase_command(phone: str) -> None:
    """Remove PHONE everywhere but in what the ledger keeps (a masked number); print what
    changed. Running it again changes nothing."""
    gw = services()
    changed = privacy.erase(gw, _phone(gw, phone, "PHONE"))
    done = {what: count for what, count in changed.items() if count}
    if not done:
        click.echo("nothing held about this number: nothing changed")
    for what, count in done.items():
        click.echo(f"{what}: {count}")


db = AppGroup("db", help="Database schema.")


@db.command("upgrade")
def upgrade_command() -> None:
    """Create or migrate the schema to the latest revision."""
    migrate.upgrade(services().settings.DATABASE_URL)
    click.echo("database is at the latest revision")


@click.command("worker")
@with_appcontext
@needs_schema
def worker_command() -> None:
    """Run the background worker (order expiry, SMS outbox, BOSS events) until SIGTERM."""
    worker = Worker(services())
    try:
        worker.check_connections()
        refuse_local_defaults(services().settings)
    except ConfigError as exc:
        raise click.ClickException(f"TV Pay Gateway will not start: {exc}") from None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stopping.set())
    metrics.serve(worker.gw.settings.METRICS_PORT)
    worker.run()


def register(app: Flask) -> None:
    for command in (seed_command, sms, events, bills_group, apps_group, wallets_group,
                    privacy_group, db, worker_command):
        app.cli.add_command(command)
