"""Operator and developer commands: ``flask --app app seed|sms|db|worker``."""

from __future__ import annotations

import signal
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from gateway import inbound, migrate, phones, seed
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.sms import outbox
from gateway.worker import Worker

__all__ = ["register"]


def _gateway() -> Gateway:
    return current_app.extensions["gateway"]


@click.command("seed")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def seed_command(file: Path) -> None:
    """Load packages, wallets, cards and phone bindings from FILE (JSON); safe to repeat."""
    gw = _gateway()
    try:
        with gw.db.transaction() as session:
            report = seed.load_seed(session, file, gw.settings.PHONE_COUNTRIES, gw.clock())
    except InvalidInput as exc:
        raise click.ClickException(f"{file}: {exc.detail} (nothing was loaded)") from None
    click.echo(f"{file}: {report}")


sms = AppGroup("sms", help="Look at outgoing SMS and simulate incoming ones.")


@sms.command("outbox")
@click.option("--to", "to", help="Only messages to this phone number.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def outbox_command(to: str | None, limit: int) -> None:
    """Print recent outgoing SMS with their full text (newest first)."""
    gw = _gateway()
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
def receive_command(sender: str, text: str) -> None:
    """Act on TEXT as an SMS from a viewer's phone (a local stand-in for an SMS gateway)."""
    gw = _gateway()
    try:
        reply = inbound.receive_sms(gw, sender=sender, text=text)
    except InvalidInput as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"reply: {reply}" if reply else "accepted; the confirmation SMS is in the outbox")


def _phone(gw: Gateway, raw: str) -> str:
    try:
        return phones.parse(raw, gw.settings.PHONE_COUNTRIES)
    except InvalidInput as exc:
        raise click.BadParameter(exc.detail, param_hint="--to") from None


db = AppGroup("db", help="Database schema.")


@db.command("upgrade")
def upgrade_command() -> None:
    """Create or migrate the schema to the latest revision."""
    migrate.upgrade(_gateway().settings.DATABASE_URL)
    click.echo("database is at the latest revision")


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run the background worker (order expiry, SMS outbox) until SIGTERM or Ctrl-C."""
    worker = Worker(_gateway())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stopping.set())
    worker.run()


def register(app: Flask) -> None:
    for command in (seed_command, sms, db, worker_command):
        app.cli.add_command(command)
