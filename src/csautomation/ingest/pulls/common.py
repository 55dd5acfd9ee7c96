"""What every pull shares: its context and result, the options every kind has, the tally of
a run, the guarded vendor connector and signals built without raising."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csautomation.connectors.config import SalesforceConfig, ZendeskConfig
from csautomation.connectors.loader import build_connectors, load_connectors
from csautomation.errors import ConfigError
from csautomation.facts.model import Signal, SignalType
from csautomation.store.repo import Store

log = logging.getLogger(__name__)
C = TypeVar("C", SalesforceConfig, ZendeskConfig)


@dataclass(frozen=True)
class PullContext:
    store: Store
    connectors_path: Path  # the connectors/ folder
    now: datetime  # aware UTC


@dataclass(frozen=True)
class PullResult:
    kind: str
    fetched: int  # records read from the vendor (rows, for a file drop)
    stored: int  # signals new to the store
    accounts: int  # accounts created or updated
    cursor: str  # the cursor saved for next time
    held: int = 0  # records kept in the quarantine with their reason (mapping.held_source)


class PullOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # the cursor's name: two pulls of one kind with one name share a cursor
    name: str | None = Field(default=None, min_length=1, max_length=300)

    def cursor_name(self) -> str:
        """`name`, else the connector (or the folder) pulled from."""
        return self.name or str(getattr(self, "connector", None) or getattr(self, "folder", ""))


@dataclass
class Tally:
    fetched: int = 0
    stored: int = 0
    accounts: int = 0
    held: int = 0


def vendor_connector(ctx: PullContext, name: str, config_type: type[C]) -> tuple[Any, C]:
    """(the vendor connector, its config), guarded (breaker and rate limit) as in the
    worker, with credentials from the environment."""
    if not ctx.connectors_path.is_dir():
        raise ConfigError(f"{ctx.connectors_path} is not a folder of connectors")
    config = load_connectors([ctx.connectors_path]).get(name)
    if config is None or not config.enabled:
        raise ConfigError(f"no enabled connector '{name}' in {ctx.connectors_path}")
    if not isinstance(config, config_type):
        [wanted] = get_args(config_type.model_fields["type"].annotation)
        raise ConfigError(f"connector '{name}' is of type {config.type}, not {wanted}")
    return build_connectors({name: config}, ctx.store).by_name[name], config


def new_signal(
    kind: SignalType, account: str, when: datetime, payload: dict[str, Any], key: str
) -> Signal | None:
    try:
        fields = {
            "type": kind,
            "account_id": account,
            "occurred_at": when,
            "payload": payload,
            "idempotency_key": f"{key}:{kind.value}",
        }
        # the door's number and date rules; the vendor's own timestamps are not held to
        # the intake's time window (a pull reads history, on the pull's own clock)
        return Signal.model_validate(fields)
    except ValidationError as exc:
        log.warning("%s for %s (%s) skipped: %s", kind.value, account, key, short_errors(exc))
        return None


def short_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
