"""Running a pull of `schedules.yaml`: its options validated by its kind's model, its
work done, one line of counts logged."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from csautomation.errors import ConfigError, ConnectorError
from csautomation.ingest.pulls.amplitude import (
    KIND_AMPLITUDE,
    AmplitudeUsageOptions,
    pull_amplitude_usage,
)
from csautomation.ingest.pulls.common import (
    PullContext,
    PullOptions,
    PullResult,
    Tally,
    short_errors,
)
from csautomation.ingest.pulls.file_drop import (
    KIND_FILES,
    UsageFileDropOptions,
    pull_usage_file_drop,
)
from csautomation.ingest.pulls.hubspot_companies import (
    KIND_HS,
    HubSpotCompaniesOptions,
    pull_hubspot_companies,
)
from csautomation.ingest.pulls.intercom import (
    KIND_IC,
    IntercomConversationsOptions,
    pull_intercom_conversations,
)
from csautomation.ingest.pulls.mixpanel import (
    KIND_MIXPANEL,
    MixpanelUsageOptions,
    pull_mixpanel_usage,
)
from csautomation.ingest.pulls.salesforce import (
    KIND_SF,
    SalesforceAccountsOptions,
    pull_salesforce_accounts,
)
from csautomation.ingest.pulls.sql import KIND_SQL, SqlQueryOptions, pull_sql_query
from csautomation.ingest.pulls.zendesk import KIND_ZD, ZendeskTicketsOptions, pull_zendesk_tickets
from csautomation.store.pull_tables import create_pull_tables

log = logging.getLogger(__name__)
PULL_KINDS: dict[str, type[BaseModel]] = {
    KIND_SF: SalesforceAccountsOptions,
    KIND_ZD: ZendeskTicketsOptions,
    KIND_FILES: UsageFileDropOptions,
    KIND_AMPLITUDE: AmplitudeUsageOptions,
    KIND_MIXPANEL: MixpanelUsageOptions,
    KIND_IC: IntercomConversationsOptions,
    KIND_HS: HubSpotCompaniesOptions,
    KIND_SQL: SqlQueryOptions,
}


def run_pull(kind: str, options: Mapping[str, Any], ctx: PullContext) -> PullResult:
    """Run one pull to its end (or its page limit). Raises ConfigError or ConnectorError."""
    if kind not in PULL_KINDS:
        raise ConfigError(f"unknown pull kind '{kind}' (known: {', '.join(PULL_KINDS)})")
    try:
        opts = PULL_KINDS[kind].model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(f"pull {kind}: {short_errors(exc)}") from exc
    assert isinstance(opts, PullOptions)
    create_pull_tables(ctx.store.engine)
    tally = Tally()
    try:
        if isinstance(opts, SalesforceAccountsOptions):
            cursor = pull_salesforce_accounts(opts, ctx, tally)
        elif isinstance(opts, ZendeskTicketsOptions):
            cursor = pull_zendesk_tickets(opts, ctx, tally)
        elif isinstance(opts, AmplitudeUsageOptions):
            cursor = pull_amplitude_usage(opts, ctx, tally)
        elif isinstance(opts, MixpanelUsageOptions):
            cursor = pull_mixpanel_usage(opts, ctx, tally)
        elif isinstance(opts, IntercomConversationsOptions):
            cursor = pull_intercom_conversations(opts, ctx, tally)
        elif isinstance(opts, HubSpotCompaniesOptions):
            cursor = pull_hubspot_companies(opts, ctx, tally)
        elif isinstance(opts, SqlQueryOptions):
            cursor = pull_sql_query(opts, ctx, tally)
        else:
            assert isinstance(opts, UsageFileDropOptions)
            cursor = pull_usage_file_drop(opts, ctx, tally)
    except ConnectorError as exc:
        log.warning(
            "pull %s %s failed after fetching %d, storing %d signals and %d accounts: %s",
            kind, opts.cursor_name(), tally.fetched, tally.stored, tally.accounts, exc,
        )  # fmt: skip
        raise
    log.info(
        "pull %s %s: fetched %d, stored %d new signals, %d accounts; cursor %s",
        kind, opts.cursor_name(), tally.fetched, tally.stored, tally.accounts, cursor or "-",
    )  # fmt: skip
    return PullResult(kind, tally.fetched, tally.stored, tally.accounts, cursor, tally.held)
