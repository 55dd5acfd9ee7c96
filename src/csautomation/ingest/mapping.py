"""The declarative mapping of a vendor's events onto our signals (sources.yaml, a push
source's `mapping:`; the Intercom pull reads the same one).

    mapping:
      account:                        # how an event finds its account: the first rule
        - from: data.item.custom_attributes.account_id   # that gives one wins
        - from: data.item.company_id
          map: {"6762f0d51bb69f9f2193bb7f": acct-0001}  # the vendor's id -> our account id
        - from: userId
          users: true                 # the account a `group` call linked this user to
      events:                         # the vendor's event (topic, track name) -> signals
        conversation.rating.added:
          - type: nps_response
            key: data.item.id         # the idempotency key's vendor id (default: the event's)
            payload:
              score: {from: data.item.conversation_rating.rating,
                      map: {1: 0, 2: 2, 3: 5, 4: 8, 5: 10}}   # 1-5 stars as a 0-10 score
          - type: support_escalation
            when: {data.item.conversation_rating.rating: [1, 2]}
            payload:
              reason: {value: "rated the conversation 1 or 2 of 5"}

A field is `from` a dotted path into the event (list items by index: `contacts.0.id`), or
a constant `value`; `map` translates the vendor's values (a value not in it is an error,
unless there is a `default`), `scale` multiplies a number (units: cents to dollars is
0.01), and `default` fills a missing field. `when` keeps a rule to events whose path holds
one of the listed values. Nothing here evaluates text: paths are looked up, values compared.

`translate` turns one event into signal-shaped dicts, or the field errors that name the
vendor's path; the API and the pull then validate, store and quarantine them as every
signal is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from csautomation.facts.model import PAYLOADS, SignalType
from csautomation.ingest.validate import FieldError

MISSING: Any = object()
Path = str  # dotted, e.g. data.item.conversation_rating.rating
_PATH = r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@ -]+)*$"


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING (a JSON null is missing too)."""
    node = doc
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part, MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
        if node is MISSING or node is None:
            return MISSING
    return node


def _key(value: Any) -> str:
    """A map's key for a vendor value: YAML keys 1, "1" and 1.0 are one key."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class FieldRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: Path | None = Field(default=None, alias="from", pattern=_PATH)
    value: Any = None
    map: dict[str, Any] | None = None
    scale: float | None = Field(default=None, gt=0)
    default: Any = None

    @field_validator("map", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return {_key(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _one_source(self) -> FieldRule:
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give exactly one of 'from' (a path in the event) or 'value'")
        return self

    def apply(self, doc: Any) -> Any:
        """The field's value, MISSING, or raises ValueError saying what is wrong."""
        if self.from_ is None:
            return self.value
        found = lookup(doc, self.from_)
        if found is MISSING:
            return MISSING if self.default is None else self.default
        if self.map is not None:
            mapped = self.map.get(_key(found), MISSING)
            if mapped is MISSING:
                if self.default is not None:
                    return self.default
                known = ", ".join(sorted(self.map)[:10])
                raise ValueError(f"{_show(found)} is not one of the mapped values ({known})")
            found = mapped
        if self.scale is not None:
            if isinstance(found, bool) or not isinstance(found, int | float):
                raise ValueError(f"expected a number to scale, got {_show(found)}")
            found = round(found * self.scale, 6)
        return found


class AccountRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: Path = Field(alias="from", pattern=_PATH)
    map: dict[str, str] | None = None  # the vendor's id -> our account id
    users: bool = False  # the value is a user id: the account its group call linked

    @field_validator("map", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return {_key(k): v for k, v in value.items()} if isinstance(value, dict) else value


class EventRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: SignalType
    payload: dict[str, FieldRule] = Field(default_factory=dict)
    when: dict[Path, list[Any]] = Field(default_factory=dict)
    key: Path | None = Field(default=None, pattern=_PATH)  # default: the event's own id
    occurred_at: Path | None = Field(default=None, pattern=_PATH)  # default: the vendor's

    @model_validator(mode="after")
    def _fields_of_type(self) -> EventRule:
        known = PAYLOADS[self.type].model_fields
        unknown = sorted(set(self.payload) - set(known))
        if unknown:
            raise ValueError(
                f"{self.type.value} has no payload field {', '.join(unknown)} "
                f"(its fields: {', '.join(known) or 'none'})"
            )
        return self

    def applies(self, doc: Any) -> bool:
        return all(
            _key(lookup(doc, path)) in {_key(v) for v in values}
            for path, values in self.when.items()
        )


class VendorMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account: list[AccountRule] = Field(default_factory=list)
    events: dict[str, list[EventRule]] = Field(default_factory=dict)
    # Segment: `group` calls link a user to the account these rules find (default groupId)
    group: list[AccountRule] = Field(default_factory=list)
    # Segment: `identify` calls link a user when these rules find an account in the traits
    identify: list[AccountRule] = Field(default_factory=list)

    @field_validator("events", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value


TimeUnit = Literal["iso", "unix_seconds"]


@dataclass(frozen=True)
class Event:
    """One vendor event, as the envelope gave it."""

    name: str  # the topic or track name
    doc: Any  # the event as JSON
    event_id: str  # the vendor's id of this delivery's event (notification id, messageId)
    time_path: str  # where its time is, by default
    time_unit: TimeUnit


@dataclass
class Translated:
    signals: list[dict[str, Any]] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    no_account: list[dict[str, Any]] = field(default_factory=list)  # signals lacking one


Accounts = Callable[[str], str | None]  # a user id -> the account a group call linked


def find_account(rules: list[AccountRule], doc: Any, users: Accounts) -> str | None:
    for rule in rules:
        found = lookup(doc, rule.from_)
        if found is MISSING or isinstance(found, dict | list):
            continue
        value = _key(found)
        if rule.map is not None:
            value = rule.map.get(value, "")
        elif rule.users:
            value = users(value) or ""
        if value:
            return value
    return None


def translate(
    vendor: str, mapping: VendorMapping, event: Event, users: Accounts
) -> Translated | None:
    """The signals `event` maps to (None: the mapping has nothing for it). Each carries the
    idempotency key `<vendor>:<vendor id>:<type>`, the same however often it is delivered."""
    rules = [r for r in mapping.events.get(event.name, []) if r.applies(event.doc)]
    if not rules:
        return None
    out = Translated()
    account = find_account(mapping.account, event.doc, users)
    for rule in rules:
        item: dict[str, Any] = {"type": rule.type.value}
        raw_id = lookup(event.doc, rule.key) if rule.key else event.event_id
        if raw_id is MISSING or not _key(raw_id) or isinstance(raw_id, dict | list):
            out.errors.append(FieldError(rule.key or "id", "missing: the event's id is needed"))
            continue
        item["idempotency_key"] = f"{vendor}:{_key(raw_id)[:150]}:{rule.type.value}"
        when_path = rule.occurred_at or event.time_path
        when = when_time(lookup(event.doc, when_path), event.time_unit)
        if isinstance(when, FieldError):
            out.errors.append(FieldError(when_path, when.message))
            continue
        item["occurred_at"] = when
        payload: dict[str, Any] = {}
        for name, spec in rule.payload.items():
            try:
                value = spec.apply(event.doc)
            except ValueError as exc:
                out.errors.append(FieldError(spec.from_ or name, f"{exc} (for payload.{name})"))
                continue
            if value is not MISSING:
                payload[name] = value
        item["payload"] = payload
        if account is None:
            out.no_account.append(item)
        else:
            out.signals.append({**item, "account_id": account})
    return out


def when_time(value: Any, unit: TimeUnit) -> str | FieldError:
    if value is MISSING:
        return FieldError("", "missing: when it happened is needed")
    if unit == "unix_seconds":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return FieldError("", f"expected seconds since 1970, got {_show(value)}")
        try:
            return datetime.fromtimestamp(value, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return FieldError("", f"{_show(value)} seconds since 1970 is no date")
    return value if isinstance(value, str) else FieldError("", f"expected text, {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."
