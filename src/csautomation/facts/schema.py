"""The data formats, from the models: the JSON Schema of a signal with its payload per type,
and docs/data.md's formats part, generated so that it cannot drift (a test compares
that part with `data_reference()`; `python -m csautomation.facts.schema docs/data.md`
rewrites it, keeping the written sections around it).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from csautomation.facts.model import PAYLOADS, Account, Signal, SignalType

__all__ = ["data_reference", "signal_schema"]

# what a number means and in what unit, and an example payload, per signal type
MEANING: dict[SignalType, tuple[str, dict[str, Any]]] = {
    SignalType.usage_daily: (
        "one day of product usage (send one a day per account)",
        {"logins": 42, "active_users": 17, "feature_events": 230},
    ),
    SignalType.meeting: ("a meeting with the customer", {"status": "attended", "kind": "qbr"}),
    SignalType.nps_response: ("an NPS answer, 0 to 10", {"score": 8}),
    SignalType.support_ticket: (
        "a support ticket opened",
        {"priority": "high", "subject": "Export fails"},
    ),
    SignalType.support_escalation: (
        "a support ticket escalated",
        {"reason": "outage for the EU tenant"},
    ),
    SignalType.outcome_review: (
        "a business outcome review: the share of goals met, in percent",
        {"goals_met_pct": 65},
    ),
    SignalType.stakeholder_change: (
        "a champion, executive sponsor or admin left or joined",
        {"role": "champion", "change": "left", "person": "Dana Reyes"},
    ),
    SignalType.churn_prediction: (
        "a churn model's probability that the account churns, 0 to 1",
        {"probability": 0.72, "model": "gbm-v3"},
    ),
    SignalType.contract_update: (
        "a change of contract: renewal date, ARR (currency units a year), seats",
        {"renewal_date": "2027-03-31", "arr": 120000, "seats": 80},
    ),
    SignalType.expansion_interest: (
        "the customer asked about more (seats, a product)",
        {"source": "sales", "product": "analytics"},
    ),
}


# each payload field's meaning and unit
FIELD_NOTES: dict[str, str] = {
    "logins": "logins that day (count)",
    "active_users": "distinct users active that day (count)",
    "feature_events": "feature events that day (count)",
    "status": "what became of the meeting",
    "kind": "free text, e.g. check_in, qbr",
    "score": "the answer, 0 (detractor) to 10 (promoter)",
    "priority": "the ticket's priority",
    "subject": "free text",
    "reason": "free text",
    "goals_met_pct": "share of the agreed goals met (percent)",
    "role": "whose change",
    "change": "left or joined",
    "person": "their name (free text)",
    "probability": "probability of churn (0 to 1)",
    "model": "which model predicted it (free text)",
    "renewal_date": "the new renewal date",
    "arr": "the new annual recurring revenue (currency units a year)",
    "seats": "the new number of licensed seats",
    "source": "who saw the interest, e.g. sales, support",
    "product": "what they asked about (free text)",
}


def signal_schema() -> dict[str, Any]:
    """A signal: the envelope, and its payload checked against its type's schema."""
    schema = Signal.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    cases = []
    for kind, model in PAYLOADS.items():
        defs[model.__name__] = model.model_json_schema(by_alias=True)
        cases.append(
            {
                "if": {"properties": {"type": {"const": kind.value}}},
                "then": {"properties": {"payload": {"$ref": f"#/$defs/{model.__name__}"}}},
            }
        )
    schema["allOf"] = cases
    return schema


def _type_of(spec: dict[str, Any]) -> str:
    if "anyOf" in spec:
        kinds = [_type_of(s) for s in spec["anyOf"] if s.get("type") != "null"]
        return " or ".join(kinds) + " (optional)"
    if spec.get("format") == "date":
        return "date (YYYY-MM-DD)"
    if spec.get("format") == "date-time":
        return "date-time with an offset (ISO 8601)"
    if spec.get("type") == "array":
        return f"list of {_type_of(spec.get('items', {}))}"
    if spec.get("type") == "object":
        return "object"
    if "$ref" in spec:
        return "choice (see meaning)"
    return str(spec.get("type", "any"))


def _rules(spec: dict[str, Any]) -> str:
    parts = []
    for source in [spec, *spec.get("anyOf", [])]:
        for key, word in (
            ("minimum", ">="),
            ("maximum", "<="),
            ("exclusiveMinimum", ">"),
            ("minLength", "length >="),
            ("maxLength", "length <="),
        ):
            if key in source:
                value = source[key]
                parts.append(
                    f"{word} {value:,}" if isinstance(value, int | float) else f"{word} {value}"
                )
        if "pattern" in source:
            pattern = source["pattern"]
            if pattern.startswith("^(") and pattern.endswith(")$"):
                parts.append("one of " + ", ".join(f"`{v}`" for v in pattern[2:-2].split("|")))
            else:
                parts.append(f"matches `{pattern}`")
    return "; ".join(parts)


def _field_rows(model: type[BaseModel], extra: dict[str, str] | None = None) -> list[str]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    rows = ["| field | type | required | rules | default | meaning |", "|---|---|---|---|---|---|"]
    for name, spec in schema.get("properties", {}).items():
        default = spec.get("default")
        shown = "" if name in required or default is None else f"`{json.dumps(default)}`"
        meaning = (extra or {}).get(name) or spec.get("description", "")
        rows.append(
            f"| `{name}` | {_type_of(spec)} | {'yes' if name in required else 'no'} | "
            f"{_rules(spec)} | {shown} | {meaning} |"
        )
    return rows


ACCOUNT_NOTES = {
    "id": "your CRM's account id, used by every signal's `account_id`",
    "name": "shown on the review page and in tasks",
    "tier": "one of `enterprise`, `mid_market`, `smb`",
    "segment": "free text; rules and the escalation matrix can route on it",
    "region": "free text; the escalation matrix routes on it",
    "seats": "licensed seats (seat utilisation is usage over seats)",
    "arr": "annual recurring revenue; missing: counted as 0 by the escalation matrix's bands",
    "owner": "the owning CSM's id (people.yaml); missing: tasks go to the manager",
    "tenant": "for a deployment that serves several customer bases",
    "renewal_date": "the next renewal; missing: the renewal facts are missing",
    "customer_since": "the contract start; missing: tenure is missing",
    "tags": "in CSV: tags separated by `;`",
}

SIGNAL_NOTES = {
    "type": "one of " + ", ".join(f"`{k.value}`" for k in SignalType) + " (below)",
    "account_id": "the account's `id`",
    "occurred_at": "when it happened, e.g. `2026-11-02T09:30:00Z`; it counts on its UTC day "
    "(`2026-11-01T23:30:00-05:00` is the 2nd)",
    "payload": "the fields of its type, below",
    "idempotency_key": "the same key twice is one signal; default: derived from the content",
}

HEAD = """## Data formats

Generated from the models (`python -m csautomation.facts.schema docs/data.md` rewrites
this part; a test checks that it is current). The same shapes travel in every way in:
JSONL files (one object a line), CSV files (one column a field), `PUT /v1/accounts` and
`POST /v1/signals`. `csauto schema accounts` and `csauto schema signals` print them as
JSON Schema.

## Accounts

`csauto accounts import accounts.csv` (or `.jsonl`); over HTTP, `PUT /v1/accounts` with
`{"accounts": [...]}` (up to 1,000 a request), authenticated as a source is for signals.
An account is stored by its `id`: importing it again updates it. Only `id`, `name` and
`tier` are required. In CSV, `crm_ids.<connector>` columns hold the account's id in each
CRM (e.g. `crm_ids.salesforce`), and blank cells are left out.

"""

SIGNALS = """
## Signals

`csauto ingest signals.csv` (or `.jsonl`), `csauto signals add`, or `POST /v1/signals`.
Every signal has these fields; its `payload` is checked against its `type` (below). In
CSV, each payload field is a `payload.<field>` column (`payload.logins`), typed by the
payload's schema: `5` in a `payload.logins` cell is stored as the number 5. A signal for
an account that is not known yet is held in the quarantine with that reason and released
when the account arrives.

"""


def data_reference() -> str:
    """docs/data.md."""
    out = [HEAD.rstrip("\n"), "", *_field_rows(Account, ACCOUNT_NOTES), SIGNALS.rstrip("\n"), ""]
    out += _field_rows(Signal, SIGNAL_NOTES)
    example_account = {
        "id": "ACME-001",
        "name": "Acme Corp",
        "tier": "mid_market",
        "arr": 120000,
        "owner": "csm-01",
        "renewal_date": "2027-03-31",
    }
    out += ["", "An account, as a JSONL line:", "", "```json", json.dumps(example_account), "```"]
    for kind, model in PAYLOADS.items():
        meaning, example = MEANING[kind]
        out += ["", f"### `{kind.value}`", "", meaning[0].upper() + meaning[1:] + ".", ""]
        out += _field_rows(model, FIELD_NOTES)
        signal = {
            "type": kind.value,
            "account_id": "ACME-001",
            "occurred_at": "2026-11-02T09:30:00Z",
            "payload": example,
        }
        out += ["", "```json", json.dumps(signal), "```"]
    return "\n".join(out) + "\n"


BEGIN = "<!-- generated from the models: python -m csautomation.facts.schema docs/data.md -->"
END = "<!-- end of the generated part -->"


def generated_part(text: str) -> str:
    """The part of docs/data.md between BEGIN and END ("" when the markers are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    return text[start + len(BEGIN) + 1 : end] if 0 <= start < end else ""


def rewrite(text: str) -> str:
    """docs/data.md with its generated part current; the written parts kept."""
    start, end = text.find(BEGIN), text.find(END)
    if not 0 <= start < end:
        return f"{text}{BEGIN}\n{data_reference()}{END}\n"
    return f"{text[: start + len(BEGIN)]}\n{data_reference()}{text[end:]}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if len(sys.argv) > 1:  # the file to bring up to date
        path = Path(sys.argv[1])
        path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(data_reference(), end="")
