"""Schema migrations (Alembic), run by ``flask --app app db upgrade`` and the local start."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

__all__ = ["alembic_config", "is_current", "private_schema", "quiet", "upgrade"]


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Alembic's warnings and errors only, in the block: a local start or a CLI command that
    brings a database up to date says so in a line of its own, not in ten log lines."""
    alembic = logging.getLogger("alembic")
    level = alembic.level
    alembic.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic.setLevel(level)


def is_current(database_url: str) -> bool:
    """Whether the database's schema is at the latest revision."""
    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    engine = create_engine(database_url)
    try:
        with quiet(), engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads()) == heads
    finally:
        engine.dispose()


@contextlib.contextmanager
def private_schema(database_url: str, prefix: str = "scratch") -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a new schema, dropped on exit (tests, benchmarks).

    Any other database URL is yielded as it is.
    """
    if make_url(database_url).get_backend_name() != "postgresql":
        yield database_url
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
