"""The HubSpot companies pull: our Account rows from the companies changed since the
cursor, and `contract_update` when a company's renewal date or ARR changed.

It reads the connector's config (connectors/hubspot.yaml: url, token_env, account_property,
owners) and asks the CRM search API itself, through httpx:

    POST /crm/v3/objects/companies/search
    {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate",
                                    "operator": "GTE", "value": "<epoch ms>"}]}],
     "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
     "properties": [...], "limit": 200, "after": "<paging.next.after>"}

HubSpot's documented search limits (developers.hubspot.com/docs/api/crm/search,
"Limitations"): a few requests a second per token (4 when the changelog "CRM Search API
Rate Limit Increase" raised it from 1; later docs say 5), at most 200 records a page, and
at most 10,000 results a query. So requests are spaced `per_second` apart (default 4), a
429 waits its Retry-After (at most `max_wait`) and is asked again, and a query that nears
10,000 results starts again from the newest modification time it has read. The cursor is
that time; the next run asks >= it, so a company modified in the same millisecond as the
last one read is not missed, and the one read again changes nothing.

Owners: HubSpot owner ids become our person ids through people.yaml (`crm_ids: {hubspot:
...}`, the file beside connectors/), then the connector's `owners`; an owner id neither
maps is stored as HubSpot's id.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import AwareDatetime, Field

from csautomation.connectors.config import HubSpotConfig, secret
from csautomation.connectors.http import classify_status, classify_transport, tls
from csautomation.connectors.hubspot import epoch_ms, parse_time
from csautomation.connectors.loader import load_connectors
from csautomation.errors import (
    ConfigError,
    ConfigFileError,
    ConnectorError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
)
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
)
from csautomation.store.pull_tables import load_cursor, save_cursor

log = logging.getLogger(__name__)
KIND_HS = "hubspot_companies"
MODIFIED = "hs_lastmodifieddate"
PAGE_LIMIT = 200  # HubSpot's most per search page
QUERY_LIMIT = 10_000  # HubSpot's most results per search query
DEFAULT_PROPERTIES: dict[str, str] = {"name": "name", "owner": "hubspot_owner_id"}
SLEEP: Callable[[float], None] = time.sleep  # the waits and the clock they are measured
CLOCK: Callable[[], float] = time.monotonic  # on (tests drive both)


class HubSpotCompaniesOptions(PullOptions):
    connector: str = "hubspot"
    # our Account fields -> HubSpot company properties, over DEFAULT_PROPERTIES; `id`
    # defaults to the connector's account_property (the property holding our account id)
    properties: dict[AccountField, str] = Field(default_factory=dict)
    # values for fields no property fills, for accounts new to the store (tier, ...)
    defaults: dict[AccountField, Any] = Field(default_factory=dict)
    start: AwareDatetime | None = None  # the first pull: companies changed at or after it
    page_size: int = Field(default=100, ge=1, le=PAGE_LIMIT)
    max_pages: int = Field(default=50, ge=1, le=10_000)  # per run; the rest on the next
    per_second: float = Field(default=4.0, gt=0, le=100)  # search requests a second
    max_wait: float = Field(default=60.0, ge=0, le=600)  # the longest Retry-After honoured
    attempts: int = Field(default=5, ge=1, le=20)  # per request, 429 and 5xx together


class CompanySearch:
    """The companies search endpoint, paced and retried; errors leave as ConnectorErrors."""

    def __init__(self, config: HubSpotConfig, opts: HubSpotCompaniesOptions) -> None:
        self.config, self.opts = config, opts
        verify: str | bool = os.environ.get("SSL_CERT_FILE") or True
        self.http = httpx.Client(
            base_url=config.url, timeout=config.timeout.total_seconds(), verify=tls(verify)
        )
        self._next = 0.0  # monotonic time the next request may go

    def close(self) -> None:
        self.http.close()

    def page(self, since: datetime, props: list[str], after: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": MODIFIED, "operator": "GTE", "value": str(epoch_ms(since))}
                    ]
                }
            ],
            "sorts": [{"propertyName": MODIFIED, "direction": "ASCENDING"}],
            "properties": props,
            "limit": self.opts.page_size,
        }
        if after is not None:
            body["after"] = after
        for attempt in range(1, self.opts.attempts + 1):
            try:
                answer: dict[str, Any] = self._post(body)
                return answer
            except ConnectorError as exc:
                wait = exc.retry_after if exc.retry_after is not None else 2.0**attempt
                again = isinstance(exc, ConnectorRateLimitedError | ConnectorUnavailableError)
                if not again or attempt == self.opts.attempts or wait > self.opts.max_wait:
                    raise
                log.info("HubSpot company search: %s; asking again in %.1fs", exc, wait)
                SLEEP(wait)
        raise AssertionError("unreachable")

    def _post(self, body: dict[str, Any]) -> Any:
        name, operation = self.config.id, "pull_companies"
        token = secret(name, self.config.auth.token_env)
        pause = self._next - CLOCK()
        if pause > 0:
            SLEEP(pause)
        self._next = CLOCK() + 1 / self.opts.per_second
        try:
            resp = self.http.post(
                "/crm/v3/objects/companies/search",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if not resp.is_success:
                raise classify_status(
                    name, operation, resp.status_code, resp.headers, resp.content, [token]
                )
            return resp.json()
        except httpx.TransportError as exc:
            raise classify_transport(name, operation, exc, [token]) from exc
        except ValueError as exc:  # a success whose body is not JSON
            raise classify_transport(name, operation, exc, [token]) from exc


def pull_hubspot_companies(opts: HubSpotCompaniesOptions, ctx: PullContext, tally: Tally) -> str:
    name = opts.cursor_name()
    config = hubspot_config(ctx, opts.connector)
    mapping = {"id": config.account_property} | DEFAULT_PROPERTIES | dict(opts.properties)
    people = owners(ctx.connectors_path, config)
    saved = load_cursor(ctx.store.engine, KIND_HS, name)
    cursor = parse_time(saved) if saved else None
    since = cursor or opts.start or datetime(1970, 1, 1, tzinfo=UTC)
    search = CompanySearch(config, opts)
    source = held_source(KIND_HS, name)
    try:
        for companies in _pages(search, since, sorted({MODIFIED, *mapping.values()}), opts):
            tally.fetched += len(companies)
            batch = Batch()
            for company in companies:
                props = company.get("properties") or {}
                modified = parse_time(props.get(MODIFIED) or company["updatedAt"])
                cursor = max(cursor or modified, modified)
                key = f"hs:company:{company['id']}:{epoch_ms(modified)}"
                values = account_values(props, mapping, people)
                why = account_record(
                    ctx.store,
                    batch,
                    values,
                    opts.defaults,
                    (opts.connector, str(company["id"])),
                    modified,
                    key,
                )
                if why:
                    batch.held.append(held_item(source, {"id": company["id"], **props}, key, why))
            tally.stored += ctx.store.add_signals(batch.signals)
            tally.accounts += ctx.store.upsert_accounts(batch.accounts.values())
            tally.held += hold_new(ctx.store, batch.held)
            release_held(ctx.store, batch.accounts, f"pull {name}")
            if cursor is not None:
                save_cursor(ctx.store.engine, KIND_HS, name, cursor.isoformat(), ctx.now)
    finally:
        search.close()
    return cursor.isoformat() if cursor else ""


def _pages(
    search: CompanySearch, since: datetime, props: list[str], opts: HubSpotCompaniesOptions
) -> Iterator[list[dict[str, Any]]]:
    after: str | None = None
    read = 0  # results of this query so far
    newest = since
    for _ in range(opts.max_pages):
        page = search.page(since, props, after)
        results = list(page.get("results") or [])
        yield results
        read += len(results)
        for company in results:
            stamp = (company.get("properties") or {}).get(MODIFIED) or company.get("updatedAt")
            if stamp:
                newest = max(newest, parse_time(stamp))
        after = ((page.get("paging") or {}).get("next") or {}).get("after")
        if after is None or not results:
            return
        if read + opts.page_size > QUERY_LIMIT:  # HubSpot refuses to page past 10,000
            if newest == since:
                raise ConfigError(
                    f"more than {QUERY_LIMIT} HubSpot companies share the modification time "
                    f"{since.isoformat()}: the search cannot page past them"
                )
            since, after, read = newest, None, 0


def hubspot_config(ctx: PullContext, name: str) -> HubSpotConfig:
    """The connector's config only: the pull asks the search API itself."""
    if not ctx.connectors_path.is_dir():
        raise ConfigError(f"{ctx.connectors_path} is not a folder of connectors")
    config = load_connectors([ctx.connectors_path]).get(name)
    if config is None or not config.enabled:
        raise ConfigError(f"no enabled connector '{name}' in {ctx.connectors_path}")
    if not isinstance(config, HubSpotConfig):
        raise ConfigError(f"connector '{name}' is of type {config.type}, not hubspot")
    return config


def owners(connectors_path: Path, config: HubSpotConfig) -> dict[str, str]:
    """HubSpot owner id -> our person id: people.yaml's crm_ids first, then the
    connector's `owners`."""
    mapped = {vendor: ours for ours, vendor in config.owners.items()}
    path = connectors_path.parent / "people.yaml"
    if path.exists():
        from csautomation.escalation.people import load_people

        try:
            directory = load_people(path)
        except ConfigFileError as exc:
            raise ConfigError(f"pull {KIND_HS}: {exc}") from exc
        for person in directory.people:
            if vendor_id := person.crm_ids.get(config.id):
                mapped[vendor_id] = person.id
    return mapped
