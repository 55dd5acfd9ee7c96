"""Load connectors/*.yaml and build the connectors they describe, each behind its breaker
and rate limit. Problems come with file:line:column, never a traceback."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from csautomation.config import Document, load_yaml_files, validation_problems
from csautomation.connectors.base import Connector
from csautomation.connectors.config import (
    Capability,
    ConnectorConfig,
    ConnectorFile,
    LocalConfig,
    SalesforceConfig,
)
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.owners import attach
from csautomation.connectors.registry import Connectors
from csautomation.connectors.resilience import (
    Allocation,
    BreakerState,
    CircuitBreaker,
    Guard,
    TokenBucket,
    temporal_clock,
)
from csautomation.errors import ConfigFileError, Problem
from csautomation.escalation.people import People
from csautomation.store.repo import Store

# type -> "module:Class", imported only when a connector of that type is configured
VENDORS = {
    "salesforce": "csautomation.connectors.salesforce:SalesforceCrm",
    "zendesk": "csautomation.connectors.zendesk:ZendeskTicketing",
    "hubspot": "csautomation.connectors.hubspot:HubSpotCrm",
    "slack": "csautomation.connectors.slack:SlackNotifier",
    "webhook": "csautomation.connectors.webhook:WebhookNotifier",
}


def parse_connector(doc: Document) -> tuple[list[ConnectorConfig], list[Problem]]:
    """The file's connector configuration, or its problems."""
    if not isinstance(doc.data, dict):
        return [], [doc.problem((), "expected a mapping with 'connector:' at the top")]
    try:
        return [ConnectorFile.model_validate(doc.data).connector], []
    except ValidationError as exc:
        return [], validation_problems(doc, exc, model=ConnectorFile)


def load_connectors(paths: Sequence[Path]) -> dict[str, ConnectorConfig]:
    """Connector configurations by id; raise ConfigFileError listing every problem."""
    loaded = load_yaml_files(paths, parse_connector)
    problems = loaded.problems
    out: dict[str, ConnectorConfig] = {}
    where: dict[str, str] = {}
    for found in loaded.parsed:
        doc, config = found.doc, found.value
        if config.id in out:
            problems.append(
                doc.problem(
                    ("connector", "id"),
                    f"duplicate connector id '{config.id}' (also in {where[config.id]})",
                )
            )
            continue
        if config.ca_bundle is not None:
            bundle = Path(doc.file).parent / Path(config.ca_bundle).expanduser()
            if not bundle.is_file():
                problems.append(
                    doc.problem(
                        ("connector", "ca_bundle"),
                        f"no CA bundle at {bundle} (a PEM file, relative to this file's "
                        "folder or absolute)",
                    )
                )
                continue
            config = config.model_copy(update={"ca_bundle": str(bundle.resolve())})
        out[config.id] = config
        where[config.id] = doc.file
    enabled = [c for c in out.values() if c.enabled]
    for capability in Capability:
        claim = [c.id for c in enabled if capability in c.default_for]
        if len(claim) > 1:
            problems.append(
                Problem(
                    where[claim[1]],
                    1,
                    1,
                    "connector.default_for",
                    f"'{capability.value}' has two default connectors: {', '.join(claim)}",
                )
            )
    if problems:
        raise ConfigFileError(problems)
    return out


def vendor(
    config: ConnectorConfig,
    env: Mapping[str, str],
    verify: str | bool,
    guard: Guard | None = None,
) -> Any:
    """The connector for a configuration, behind `guard` (none: bare, for `check`). Its
    own `ca_bundle` wins over `verify` (the process's default)."""
    if isinstance(config, LocalConfig):
        raise TypeError("the local connector needs the store: use build_connectors")
    module, _, cls = VENDORS[config.type].partition(":")
    return getattr(importlib.import_module(module), cls)(
        config, env=env, verify=config.ca_bundle or verify, guard=guard
    )


def build_connectors(
    configs: Mapping[str, ConnectorConfig],
    store: Store,
    env: Mapping[str, str] | None = None,
    verify: str | bool = True,
    on_change: Callable[[BreakerState], None] | None = None,
    people: People | None = None,
) -> Connectors:
    """The enabled connectors, each guarded; the built-in `local` one always, as the
    default for any capability no enabled connector claims. Task owners resolve through
    `people` (people.yaml) after each connector's own `owners:` map."""
    source = os.environ if env is None else env
    by_name: dict[str, Connector] = {"local": LocalCrm(store)}
    defaults: dict[str, str] = {}
    for config in configs.values():
        if not config.enabled:
            continue
        if isinstance(config, LocalConfig):
            by_name[config.id] = LocalCrm(store)
        else:
            breaker = CircuitBreaker(
                config.id, config.breaker, clock=temporal_clock, on_change=on_change
            )
            bucket = TokenBucket(config.rate_limit) if config.rate_limit else None
            buckets = {k: TokenBucket(v) for k, v in config.endpoint_limits().items()}
            quota = (
                Allocation(config.id, config.daily_api, clock=temporal_clock)
                if isinstance(config, SalesforceConfig)
                else None
            )
            guard = Guard(
                config.id,
                breaker,
                bucket,
                wait_limit=config.timeout.total_seconds(),
                buckets=buckets,
                quota=quota,
            )
            # each of its requests passes the breaker and the limit
            by_name[config.id] = vendor(config, source, verify, guard)
            attach(by_name[config.id], people)
        for capability in config.default_for:
            defaults[capability.value] = config.id
    return Connectors(by_name, default="local", fallback="local", defaults=defaults)
