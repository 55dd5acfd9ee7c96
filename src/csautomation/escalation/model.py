"""An escalation's plan: the levels of the matrix, resolved to people and absolute times.

The plan is computed outside the workflow (an activity, or `csauto escalations simulate`)
and carried in the workflow's history, so a change to the matrix or the people directory
never changes an escalation already open.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Recipient(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_id: str
    name: str
    role: str  # csm, manager, director, vp, or a named person's role
    team: str = ""
    email: str = ""
    slack: str = ""  # a Slack member id, for mentions
    crm_ids: dict[str, str] = Field(default_factory=dict)  # connector id -> vendor user id


class PlannedLevel(BaseModel):
    """One notification round: a level of the matrix, or one of its repeats."""

    model_config = ConfigDict(frozen=True)

    level: int  # 1-based level of the matrix
    repeat: int = 0  # 0 for the first round of a level, 1.. for its repeats
    roles: list[str]
    recipients: list[Recipient]
    channels: list[str]  # connector ids: a CRM task, Slack, a webhook
    starts_at: datetime
    ack_by: datetime  # starts_at plus the level's acknowledge-within, in working time


class EscalationPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: str
    account_id: str
    team: str  # the team whose managers see and act on it
    matched: str  # which entry of the matrix matched, in words
    calendar: str | None = None  # the working-time calendar the deadlines count, if any
    levels: list[PlannedLevel]
    timezone: str | None = None  # the calendar's time zone, to show deadlines in local time
    notes: list[str] = Field(default_factory=list)  # roles that could not be resolved, etc.
