"""The schema of connectors/*.yaml: which vendor serves which capability, how to reach it,
how hard to retry it, and where its credentials are. Credentials are never in the file:
only the names of the environment variables that hold them (invariant 7).

    connector:
      id: salesforce
      type: salesforce
      default_for: [tasks, records]
      auth: {method: password, username_env: SF_USERNAME, password_env: SF_PASSWORD,
             client_id_env: SF_CLIENT_ID, client_secret_env: SF_CLIENT_SECRET}
      owners: {csm-01: 005000000000001AAA}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from csautomation import logs
from csautomation.config import ShortDuration
from csautomation.errors import ConnectorAuthError


def _id(value: object) -> object:
    """A vendor's numeric user id written without quotes is still an id."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _env_name(value: object) -> object:
    """A credential field names a variable; anything else may be the secret itself, so the
    error never repeats it (invariant 7)."""
    if isinstance(value, str) and _ENV_NAME.match(value):
        return value
    raise ValueError(
        "must be the NAME of an environment variable (upper case, e.g. SF_PASSWORD), never "
        "the secret itself; the value given is not shown"
    )


EnvName = Annotated[
    str,
    BeforeValidator(_env_name),
    Field(description="the NAME of an environment variable, never the secret itself"),
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]


class Capability(StrEnum):
    tasks = "tasks"
    records = "records"
    tickets = "tickets"
    notify = "notify"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(Strict):
    """Temporal's retry policy for this connector's actions: exponential backoff with
    jitter, bounded attempts; a vendor's Retry-After overrides the next delay."""

    initial: ShortDuration = timedelta(seconds=1)
    maximum: ShortDuration = timedelta(minutes=5)
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    attempts: int = Field(default=8, ge=1, le=100)


class Breaker(Strict):
    """Opens after `failures` consecutive failures; after `reset_after` one probe call is
    let through (half-open): success closes it, failure opens it again."""

    failures: int = Field(default=5, ge=1, le=1000)
    reset_after: ShortDuration = timedelta(seconds=30)


class RateLimit(Strict):
    per_second: float = Field(gt=0, le=10_000)
    burst: int = Field(default=10, ge=1, le=10_000)


class Common(Strict):
    id: Slug
    enabled: bool = True
    description: str = ""
    default_for: list[Capability] = Field(default_factory=list)
    timeout: ShortDuration = timedelta(seconds=10)
    # a PEM file of the CAs to trust for this vendor (a proxy's, say): relative to the
    # YAML file's folder, or absolute; the loader checks it exists and makes it absolute
    ca_bundle: str | None = Field(default=None, min_length=1)
    retry: Retry = Retry()
    breaker: Breaker = Breaker()
    rate_limit: RateLimit | None = None
    # our CSM and manager ids -> the vendor's user ids
    owners: dict[str, Annotated[str, BeforeValidator(_id)]] = Field(default_factory=dict)
    # who takes a task whose person has no user at the vendor (a person id, or the vendor's
    # user id); without it such a task is a dead letter (connectors/owners.py)
    fallback_owner: Annotated[str, BeforeValidator(_id)] | None = None
    # our priorities -> the vendor's values
    priorities: dict[str, str] = Field(default_factory=dict)

    def endpoint_limits(self) -> dict[str, RateLimit]:
        """Rate limits for endpoint classes the vendor limits on their own (HubSpot's
        search); every other request takes `rate_limit`."""
        return {}


class DailyAllocation(Strict):
    """Salesforce's daily API allocation, as each answer's `Sforce-Limit-Info:
    api-usage=N/M` reports it: at `stop_at` of M, calls are refused as rate limited (the
    rest is left to the org's other integrations) until a call `recheck_after` later
    finds it lower."""

    stop_at: float = Field(default=0.9, gt=0, le=1)
    recheck_after: ShortDuration = timedelta(minutes=10)


class LocalConfig(Common):
    type: Literal["local"]


class SalesforceAuth(Strict):
    method: Literal["password", "jwt", "session"]
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    client_id_env: EnvName | None = None
    client_secret_env: EnvName | None = None
    private_key_env: EnvName | None = None  # JWT: the PEM key itself, from the environment
    session_id_env: EnvName | None = None
    instance_url_env: EnvName | None = None


class SalesforceConfig(Common):
    type: Literal["salesforce"]
    login_url: str = "https://login.salesforce.com"
    api_version: str = Field(default="59.0", pattern=r"^\d+\.\d$")
    auth: SalesforceAuth
    # an External ID field on Task that holds our idempotency key: upsert creates once
    idempotency_field: str = Field(default="Csauto_Key__c", pattern=r"^\w+__c$")
    # the field on Account that holds our account id (WhatId is looked up by it)
    account_field: str = Field(default="Csauto_Account_Id__c", pattern=r"^\w+$")
    task_status: str = "Not Started"
    rate_limit: RateLimit | None = RateLimit(per_second=20, burst=25)
    daily_api: DailyAllocation = DailyAllocation()


class ZendeskAuth(Strict):
    email_env: EnvName
    token_env: EnvName


# Zendesk's documented requests a minute per plan (developer.zendesk.com/api-reference/
# introduction/rate-limits); the High Volume API add-on raises any plan to 2500
ZENDESK_PLANS = {
    "team": 200,
    "growth": 400,
    "professional": 400,
    "enterprise": 700,
    "enterprise_plus": 2500,
    "high_volume": 2500,
}


class ZendeskConfig(Common):
    type: Literal["zendesk"]
    subdomain: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    url: str | None = None  # instead of the subdomain: a proxy, or a test server
    auth: ZendeskAuth
    # organisations are found by this external_id: our account id
    group_id: int | None = None
    # the account's plan sets the rate limit (its documented requests a minute) unless
    # `rate_limit` is given
    plan: Literal[
        "team", "growth", "professional", "enterprise", "enterprise_plus", "high_volume"
    ] = "professional"
    rate_limit: RateLimit | None = None

    @model_validator(mode="after")
    def _plan_limit(self) -> ZendeskConfig:
        if self.rate_limit is None and "rate_limit" not in self.model_fields_set:
            per_minute = ZENDESK_PLANS[self.plan]
            # frozen: set through object.__setattr__, once, while validating
            limit = RateLimit(per_second=per_minute / 60, burst=20)
            object.__setattr__(self, "rate_limit", limit)
        return self


class IndexWait(Strict):
    attempts: int = Field(default=6, ge=1, le=20)
    initial: ShortDuration = timedelta(milliseconds=500)
    maximum: ShortDuration = timedelta(seconds=8)


class HubSpotAuth(Strict):
    token_env: EnvName  # a private app's access token


class HubSpotConfig(Common):
    type: Literal["hubspot"]
    url: str = "https://api.hubapi.com"
    auth: HubSpotAuth
    # a unique task property holding our idempotency key, and the company property
    # holding our account id
    idempotency_property: str = "csauto_key"
    account_property: str = "csauto_account_id"
    rate_limit: RateLimit | None = RateLimit(per_second=10, burst=10)
    # HubSpot limits its CRM search endpoints on their own, at four requests a second
    # per token (developers.hubspot.com/changelog/crm-search-api-rate-limit-increase):
    # three a second with no burst keeps any one-second window to four
    search_rate_limit: RateLimit | None = RateLimit(per_second=3, burst=1)
    # after a 409 (the key is taken) the task is searched for until HubSpot's search
    # index shows it: `attempts` searches, `initial` apart, doubling, at most `maximum`
    index_wait: IndexWait = IndexWait()

    def endpoint_limits(self) -> dict[str, RateLimit]:
        return {"search": self.search_rate_limit} if self.search_rate_limit else {}


class SlackConfig(Common):
    type: Literal["slack"]
    webhook_url_env: EnvName  # an incoming webhook's URL is itself a secret
    rate_limit: RateLimit | None = RateLimit(per_second=1, burst=5)


class WebhookConfig(Common):
    type: Literal["webhook"]
    url: str
    secret_env: EnvName  # signs the body with HMAC-SHA256
    signature_header: str = "X-Csauto-Signature"
    timestamp_header: str = "X-Csauto-Timestamp"


ConnectorConfig = Annotated[
    LocalConfig | SalesforceConfig | ZendeskConfig | HubSpotConfig | SlackConfig | WebhookConfig,
    Field(discriminator="type"),
]


class ConnectorFile(Strict):
    connector: ConnectorConfig


def secret(connector: str, name: str | None, env: Mapping[str, str] | None = None) -> str:
    """The value of the environment variable `name`; a clear, non-retryable error (naming
    the variable, never a value) when it is not set."""
    source = os.environ if env is None else env
    if not name:
        raise ConnectorAuthError(
            connector, "credentials", "no credential is configured", retryable=False
        )
    value = source.get(name, "")
    if not value:
        raise ConnectorAuthError(
            connector, "credentials", f"environment variable {name} is not set", retryable=False
        )
    logs.register(value)  # masked in every log line from now on
    return value
