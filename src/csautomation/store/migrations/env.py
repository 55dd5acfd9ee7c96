"""Alembic's environment: run by every migration command, from code (migrate.py) or from the
`alembic` command line of a developer (with the URL in `sqlalchemy.url`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from csautomation.store.engine import make_engine
from csautomation.store.migrate import configure_options

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options())
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # `--sql`: the statements are printed, not run
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **configure_options()
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    # migrate.py's: already in a transaction, holding the migration lock
    _run(given)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()
