"""The warehouse pull: a parameterised SQL query read in a read-only transaction, its rows
mapped column by column onto accounts or signals.

    kind: sql_query
    options:
      url_env: CSAUTO_WAREHOUSE_URL   # the variable holding the SQLAlchemy URL (a secret)
      query: >
        SELECT account_id, day, logins, active_users, loaded_at FROM usage_daily
        WHERE loaded_at >= :cursor ORDER BY loaded_at LIMIT :limit
      cursor_column: loaded_at
      into: signals                   # or accounts
      signal_type: usage_daily
      columns: {account_id: account_id, day: occurred_at, logins: payload.logins,
                active_users: payload.active_users}

Only bound parameters reach the database: `:cursor` (required; a query without it is
refused when schedules.yaml is read, with its file, line and field) and `:limit` (the
batch size). The query text is never built from values. Each batch runs in its own
read-only transaction (PostgreSQL: SET TRANSACTION READ ONLY; SQLite: the file opened
with mode=ro), reads at most `batch_size` rows, stores what they map to, then the cursor:
the greatest `cursor_column` value read. Order the query by that column; compare with
`>=` when several rows may share a value (rows read again change nothing: their keys are
the same), `>` for a strictly growing one.

A row that does not map (a missing account, a number that is not one) is kept in the
quarantine with its reason, once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from csautomation import logs
from csautomation.connectors.config import EnvName
from csautomation.errors import ConfigError, ConnectorUnavailableError
from csautomation.facts.model import Signal, SignalType
from csautomation.ingest.accounts import release_held
from csautomation.ingest.pulls.common import PullContext, PullOptions, Tally
from csautomation.ingest.pulls.mapping import (
    AccountField,
    Batch,
    account_record,
    account_values,
    held_item,
    held_source,
    hold_new,
    plain,
    problems,
)
from csautomation.store.pull_tables import load_cursor, save_cursor

log = logging.getLogger(__name__)
KIND_SQL = "sql_query"
PARAMS = {"cursor", "limit"}
SIGNAL_FIELDS = re.compile(r"^(account_id|occurred_at|payload\.[a-z_][a-z0-9_]{0,63})$")


class SqlQueryOptions(PullOptions):
    url_env: EnvName
    query: str = Field(min_length=1, max_length=20_000)
    cursor_column: str = Field(min_length=1, max_length=128)
    start: str | int | float = ""  # the first run's cursor; "" reads from the beginning
    into: Literal["signals", "accounts"]
    signal_type: SignalType | None = None
    # column -> field: for signals account_id, occurred_at or payload.<name>; for
    # accounts one of our Account fields (id and name at least, unless already stored)
    columns: dict[str, str] = Field(min_length=1)
    key_columns: list[str] = Field(default_factory=list)  # a signal's identity (default:
    # the columns mapped to account_id and occurred_at)
    defaults: dict[AccountField, Any] = Field(default_factory=dict)  # accounts new to us
    batch_size: int = Field(default=1000, ge=1, le=50_000)
    max_batches: int = Field(default=20, ge=1, le=10_000)  # per run; the rest on the next
    timeout: float = Field(default=30.0, gt=0, le=3600)  # seconds to connect

    @field_validator("query")
    @classmethod
    def _bound(cls, query: str) -> str:
        found = set(text(query).compile().params)
        if "cursor" not in found:
            raise ValueError(
                "the query needs the bound parameter :cursor (e.g. WHERE loaded_at >= "
                ":cursor ORDER BY loaded_at); values are never written into the SQL"
            )
        if extra := sorted(found - PARAMS):
            raise ValueError(
                f"unknown parameters {', '.join(':' + p for p in extra)} "
                "(only :cursor and :limit are bound)"
            )
        return query

    @model_validator(mode="after")
    def _fields(self) -> SqlQueryOptions:
        fields = set(self.columns.values())
        if self.into == "signals":
            if self.signal_type is None:
                raise ValueError("into: signals needs signal_type (e.g. usage_daily)")
            if bad := sorted(f for f in fields if not SIGNAL_FIELDS.match(f)):
                raise ValueError(
                    f"columns: {', '.join(bad)} is not account_id, occurred_at or payload.<name>"
                )
            if not {"account_id", "occurred_at"} <= fields:
                raise ValueError("columns must map a column to account_id and one to occurred_at")
        else:
            allowed = set(get_args(AccountField))
            if bad := sorted(fields - allowed):
                raise ValueError(
                    f"columns: {', '.join(bad)} is not an account field "
                    f"({', '.join(sorted(allowed))})"
                )
            if "id" not in fields:
                raise ValueError("columns must map a column to id (our account id)")
        return self

    def cursor_name(self) -> str:
        return self.name or self.url_env.lower()


def read_only_engine(url_text: str, timeout: float) -> Engine:
    """An engine whose connections cannot write: SQLite opened with mode=ro; PostgreSQL
    transactions begun READ ONLY (`begin_read_only`)."""
    try:
        url = make_url(url_text)
    except ArgumentError:
        # not `from exc`: its message quotes the URL, password and all
        raise ConfigError("the warehouse URL is not a SQLAlchemy URL") from None
    if url.password:  # masked wherever a log line would quote it
        logs.register(url_text, str(url.password))
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path or path == ":memory:":
            raise ConfigError("a SQLite warehouse must be a file")
        uri = f"file:{path}?mode=ro"
        return create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=timeout)
        )
    if url.get_backend_name() != "postgresql":
        raise ConfigError("the warehouse must be PostgreSQL or SQLite (read-only transactions)")
    return create_engine(_with_driver(url), connect_args={"connect_timeout": int(timeout)})


def _with_driver(url: URL) -> URL:
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


def pull_sql_query(opts: SqlQueryOptions, ctx: PullContext, tally: Tally) -> str:
    name = opts.cursor_name()
    url = os.environ.get(opts.url_env, "")
    if not url:
        raise ConfigError(
            f"pull {KIND_SQL} {name}: the environment variable {opts.url_env} is not set"
        )
    saved = load_cursor(ctx.store.engine, KIND_SQL, name)
    cursor: Any = decode_cursor(saved) if saved else opts.start
    engine = read_only_engine(url, opts.timeout)
    try:
        for _ in range(opts.max_batches):
            rows = _read(engine, opts, cursor, url)
            tally.fetched += len(rows)
            if not rows:
                break
            before = cursor
            batch = Batch()
            for row in rows:
                if (value := row.get(opts.cursor_column)) is not None:
                    cursor = value if cursor in ("", None) else max(cursor, value, key=_order)
                _row(ctx, opts, name, row, batch)
            tally.stored += ctx.store.add_signals(batch.signals)
            tally.accounts += ctx.store.upsert_accounts(batch.accounts.values())
            tally.held += hold_new(ctx.store, batch.held)
            release_held(ctx.store, batch.accounts, f"pull {name}")
            save_cursor(ctx.store.engine, KIND_SQL, name, encode_cursor(cursor), ctx.now)
            if len(rows) < opts.batch_size:
                break
            if cursor == before:
                raise ConfigError(
                    f"pull {KIND_SQL} {name}: a whole batch of {opts.batch_size} rows shares "
                    f"the cursor value {cursor!r}: raise batch_size, or use a finer column"
                )
    finally:
        engine.dispose()
    return encode_cursor(cursor) if cursor not in ("", None) else ""


def _read(engine: Engine, opts: SqlQueryOptions, cursor: Any, url: str) -> list[dict[str, Any]]:
    params = {"cursor": cursor, "limit": opts.batch_size}
    wanted = set(text(opts.query).compile().params)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            result = conn.execute(
                text(opts.query), {k: v for k, v in params.items() if k in wanted}
            )
            rows = [dict(r._mapping) for r in result.fetchmany(opts.batch_size)]
            result.close()
            conn.rollback()  # nothing to keep: the transaction only read
    except DBAPIError as exc:
        said = _first_line(exc, url)
        # the query's own mistakes (a table or column that is not there, bad SQL) are the
        # configuration's; a database that does not answer, or is busy, may in a moment
        mistake = any(w in said.lower() for w in ("no such", "syntax", "does not exist"))
        if not mistake and (
            exc.connection_invalidated
            or isinstance(exc.orig, sqlite3.OperationalError | OSError)
            or type(exc.orig).__name__ in ("OperationalError", "ConnectionTimeout")
        ):
            raise ConnectorUnavailableError(opts.cursor_name(), "pull_sql", said) from exc
        raise ConfigError(
            f"pull {KIND_SQL} {opts.cursor_name()}: the query failed: {said}"
        ) from exc
    except SQLAlchemyError as exc:
        raise ConfigError(f"pull {KIND_SQL} {opts.cursor_name()}: {_first_line(exc, url)}") from exc
    missing = [c for c in [opts.cursor_column, *opts.columns] if rows and c not in rows[0]]
    if missing:
        raise ConfigError(
            f"pull {KIND_SQL} {opts.cursor_name()}: the query returns no column "
            f"{', '.join(missing)} (it returns {', '.join(rows[0])})"
        )
    return rows


def _first_line(exc: BaseException, url: str) -> str:
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
    password = make_url(url).password if "://" in url else None
    return said.replace(str(password), "[redacted]") if password else said


def _row(
    ctx: PullContext, opts: SqlQueryOptions, name: str, row: Mapping[str, Any], batch: Batch
) -> None:
    source = held_source(KIND_SQL, name)
    if opts.into == "accounts":
        values = account_values(row, {f: c for c, f in opts.columns.items()}, {})
        at = encode_cursor(row.get(opts.cursor_column))
        key = f"sql:{name}:account:{values.get('id', '')}:{at}"
        when = _moment(row.get(opts.cursor_column)) or ctx.now
        why = account_record(ctx.store, batch, values, opts.defaults, None, when, key)
        if why:
            batch.held.append(held_item(source, row, key, why))
        return
    assert opts.signal_type is not None
    by_field = {f: row.get(c) for c, f in opts.columns.items()}
    identity = opts.key_columns or [
        c for c, f in opts.columns.items() if f in ("account_id", "occurred_at")
    ]
    ident = ":".join(str(plain(row.get(c))) for c in identity)
    if len(ident) > 120:
        ident = hashlib.sha256(ident.encode()).hexdigest()
    key = f"sql:{name}:{ident}:{opts.signal_type.value}"
    payload = {
        f.removeprefix("payload."): plain(v)
        for f, v in by_field.items()
        if f.startswith("payload.") and v is not None
    }
    fields = {
        "type": opts.signal_type,
        "account_id": None if by_field.get("account_id") is None else str(by_field["account_id"]),
        "occurred_at": _moment(by_field.get("occurred_at")) or by_field.get("occurred_at"),
        "payload": payload,
        "idempotency_key": key,
    }
    try:
        batch.signals.append(Signal.model_validate(fields))
    except ValidationError as exc:
        batch.held.append(held_item(source, row, key, problems(exc)))


def _moment(value: Any) -> datetime | None:
    """A row's date or timestamp as an aware UTC datetime (naive values are UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _order(value: Any) -> Any:
    return _moment(value) if isinstance(value, datetime) else value


def encode_cursor(value: Any) -> str:
    """The cursor as text a person reads, with its type: `datetime:2030-03-04T12:00:00`."""
    if isinstance(value, datetime):
        return f"datetime:{value.isoformat()}"
    if isinstance(value, date):
        return f"date:{value.isoformat()}"
    if isinstance(value, bool | int):
        return f"int:{int(value)}"
    if isinstance(value, float | Decimal):
        return f"number:{value}"
    return f"text:{'' if value is None else value}"


def decode_cursor(saved: str) -> Any:
    kind, _, value = saved.partition(":")
    try:
        if kind == "datetime":
            return datetime.fromisoformat(value)
        if kind == "date":
            return date.fromisoformat(value)
        if kind == "int":
            return int(value)
        if kind == "number":
            return Decimal(value)
    except ValueError as exc:
        raise ConfigError(f"the saved SQL cursor is not a {kind}: {value!r}") from exc
    return value
