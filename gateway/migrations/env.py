"""Alembic environment: migrate the database named by the config, or by DATABASE_URL."""

from alembic import context

from gateway.config import load_settings
from gateway.store.db import make_engine
from gateway.store.models import Base

url = context.config.get_main_option("sqlalchemy.url") or load_settings().DATABASE_URL

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
