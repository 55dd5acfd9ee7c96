"""The domain model: accounts and the signals that arrive about them."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from csautomation.facts.canonical import Payload, TimeWindow, canonical_payload, timestamp
from csautomation.facts.days import utc_day


class Tier(StrEnum):
    enterprise = "enterprise"
    mid_market = "mid_market"
    smb = "smb"


class Account(BaseModel):
    """An account as the CRM knows it. Facts about its health are derived, never stored here.

    Only `id`, `name` and `tier` are required: an account that has no renewal date, ARR,
    owner or start date yet is still an account, and the facts those fields feed are
    simply missing (the health model leaves missing metrics out)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    name: str = Field(min_length=1, max_length=500)
    tier: Tier
    segment: str = Field(default="general", max_length=128)
    region: str = Field(default="emea", max_length=128)
    arr: float | None = Field(default=None, ge=0, le=1e15, description="annual recurring revenue")
    seats: int = Field(default=10, ge=1, le=10_000_000)
    owner: str | None = Field(default=None, max_length=128, description="the owning CSM's user id")
    manager: str | None = Field(
        default=None, max_length=128, description="the owning CSM's manager's user id"
    )
    renewal_date: date | None = None
    customer_since: date | None = None
    tenant: str = Field(default="default", max_length=128)
    tags: tuple[str, ...] = ()
    crm_ids: dict[str, str] = Field(
        default_factory=dict, description="the account's id per connector, e.g. salesforce: 001..."
    )


class SignalType(StrEnum):
    usage_daily = "usage_daily"
    meeting = "meeting"
    nps_response = "nps_response"
    support_ticket = "support_ticket"
    support_escalation = "support_escalation"
    outcome_review = "outcome_review"
    stakeholder_change = "stakeholder_change"
    churn_prediction = "churn_prediction"
    contract_update = "contract_update"
    expansion_interest = "expansion_interest"


class UsageDaily(Payload):
    logins: int = Field(ge=0)
    active_users: int = Field(ge=0)
    feature_events: int = Field(default=0, ge=0)


class Meeting(Payload):
    status: str = Field(pattern="^(attended|missed|cancelled)$")
    kind: str = "check_in"


class NpsResponse(Payload):
    score: int = Field(ge=0, le=10)


class SupportTicket(Payload):
    priority: str = Field(pattern="^(low|normal|high|urgent)$")
    subject: str = ""


class SupportEscalation(Payload):
    reason: str = ""


class OutcomeReview(Payload):
    goals_met_pct: float = Field(ge=0, le=100)


class StakeholderChange(Payload):
    role: str = Field(pattern="^(champion|exec_sponsor|admin)$")
    change: str = Field(pattern="^(left|joined)$")
    person: str = ""


class ChurnPrediction(Payload):
    probability: float = Field(ge=0, le=1)
    model: str = "default"


class ContractUpdate(Payload):
    renewal_date: date | None = None
    arr: float | None = Field(default=None, ge=0)
    seats: int | None = Field(default=None, ge=1)


class ExpansionInterest(Payload):
    source: str = "sales"
    product: str = ""


PAYLOADS: dict[SignalType, type[Payload]] = {
    SignalType.usage_daily: UsageDaily,
    SignalType.meeting: Meeting,
    SignalType.nps_response: NpsResponse,
    SignalType.support_ticket: SupportTicket,
    SignalType.support_escalation: SupportEscalation,
    SignalType.outcome_review: OutcomeReview,
    SignalType.stakeholder_change: StakeholderChange,
    SignalType.churn_prediction: ChurnPrediction,
    SignalType.contract_update: ContractUpdate,
    SignalType.expansion_interest: ExpansionInterest,
}


class Signal(BaseModel):
    """Something that happened to an account. The payload is checked against its type and
    kept in its canonical form (facts/canonical.py): what is stored is what was validated.

    Validated with `canonical.door_context()` as context, `occurred_at` must also fall in
    the intake's time window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: SignalType
    account_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = Field(default="", max_length=200)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        return timestamp(value)

    @field_validator("occurred_at")
    @classmethod
    def _in_window(cls, value: datetime, info: ValidationInfo) -> datetime:
        context = info.context if isinstance(info.context, dict) else {}
        window = context.get("window")
        if isinstance(window, TimeWindow):
            window.check(value, context["now"])
        try:  # kept in UTC (below): a moment with no UTC date cannot be placed on a day
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f"{value.isoformat()} falls outside the years 1 to 9999 in UTC"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_payload(self) -> Signal:
        object.__setattr__(self, "payload", canonical_payload(PAYLOADS[self.type], self.payload))
        if not self.idempotency_key:
            # Deterministic: the same event delivered twice gets the same key.
            digest = hashlib.sha256(
                f"{self.type}|{self.account_id}|{self.occurred_at.isoformat()}|"
                f"{sorted(self.payload.items())}".encode()
            ).hexdigest()[:32]
            object.__setattr__(self, "idempotency_key", digest)
        # In UTC from here on (the key above keeps the moment as written, as it always has):
        # the day a signal counts on is its UTC day, and SQLite keeps no offset.
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        return self

    def typed_payload(self) -> Payload:
        return PAYLOADS[self.type].model_validate(self.payload)

    @property
    def day(self) -> date:
        """The UTC day the signal counts on (facts/days.py)."""
        return utc_day(self.occurred_at)
