"""Persistence: SQLModel tables and repositories; SQLite by default, PostgreSQL by URL.

    engine.py            the engine factory; `table`, `upsert`, `aware` for every repository
    tables.py            the tables, with pull_tables.py and scheduler_tables.py: every table
                         is here, on one SQLModel metadata (what Alembic compares)
    repo.py              `Store`: accounts, signals, rule firings, local tasks
    outbox.py            the evaluation and dispatch outboxes, and the runs index
    facts.py             fresh account facts, derived once per account, day and history
    ledger.py            the decision ledger; chain.py its hash chain and verification
    deadletters.py, escalations.py, quarantine.py   one repository each
    signins.py           session generations: sign-out and revoke end a person's sessions
    migrate.py           schema migrations (Alembic, driven from code; migrations/)

A low layer: nothing here imports connectors, pipeline, ingest or scheduling. Modules are
imported directly (`from csautomation.store.repo import Store`); importing the package loads
none of them.
"""

__all__ = [
    "chain",
    "deadletters",
    "engine",
    "escalations",
    "facts",
    "ledger",
    "migrate",
    "outbox",
    "pull_tables",
    "quarantine",
    "repo",
    "scheduler_tables",
    "signins",
    "tables",
]
