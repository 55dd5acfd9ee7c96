"""Every `csauto` command that reads the store, on a store full of hostile text: rich markup,
Jinja, ANSI escapes, bidi and zero-width characters, emoji, newlines, control characters and
10,000-character strings in every user-visible field the project's APIs let us fill.

Each command must end with exit code 0 or 1 and no traceback; where it prints such a value,
the markup is shown as written (`[/red]` is text), and no escape sequence reaches the
terminal. Commands that read no store, or need Temporal or a network, are listed with why
in NOT_RUN; the test fails when a command is neither run nor listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.connectors.base import Receipt
from csautomation.connectors.receipts import keep_receipt
from csautomation.facts.model import Account, Signal
from csautomation.rules.explain import explain
from csautomation.rules.loader import load_rules
from csautomation.store import ledger
from csautomation.store.deadletters import DeadLetter, record_dead_letter, save_breaker
from csautomation.store.escalations import record_escalation
from csautomation.store.outbox import RunStart, commit_evaluation, finish_run, index_firings
from csautomation.store.quarantine import Held, quarantine
from csautomation.store.repo import Store, create_local_task
from csautomation.store.tables import LocalTaskRow
from csautomation.workflows.types import EscalationEvent, EscalationState

ROOT = Path(__file__).parents[1]
MARKUP = "[/red] [bold]b[/bold] [link=x]l[/link] [red"  # one that would crash rich, and tags
JINJA = "{{ x }} {% if %}"
NASTY = f"{MARKUP} {JINJA} \x1b[31mred\x1b[0m \u202eevil\u200b\u200f 🔥👍🏽 \a\b\x0b\x0c\x7f"
LINES = f"{MARKUP}\nsecond line\r\nthird"
LONG = f"{MARKUP} " + "y" * 10_000
ID = "[/red][bold]b[/bold]{{ id }}\x1b[2J\u202e🔥"  # ids are not checked everywhere
AT = datetime(2026, 11, 1, 9, tzinfo=UTC)
USAGE = json.dumps({"logins": 3, "active_users": 1})
runner = CliRunner()


@dataclass(frozen=True)
class Ids:
    db: str
    env: dict[str, str]
    firing: int
    dead_letter: int
    dead_letter_to_discard: int
    quarantined: int
    held_signal: int
    quarantined_to_discard: int
    escalation: str
    files: Path


def hostile_account(account_id: str) -> Account:
    return Account.model_validate(
        {
            "id": account_id,
            "name": NASTY[:500],
            "tier": "enterprise",
            "segment": MARKUP,
            "region": "\u202eemea\u200b",
            "owner": "csm-01",
            "tags": [MARKUP, "🔥"],
            "crm_ids": {"local": NASTY},
            "arr": 1e6,
            "renewal_date": "2027-01-01",
            "customer_since": "2020-01-01",
        }
    )


def fill(store: Store, folder: Path) -> dict[str, int | str]:
    """The store, through the project's own writers, and data files for the file commands."""
    accounts = [hostile_account("HOSTILE-1"), hostile_account("HOSTILE-2")]
    store.upsert_accounts(accounts)
    usage = [
        Signal(
            type="usage_daily",
            account_id=account_id,
            occurred_at=AT - timedelta(days=back),
            payload={"logins": 10 + back, "active_users": 5},
        )
        for account_id in ("HOSTILE-1", ID)
        for back in range(40)
    ]
    support = Signal(
        type="support_escalation",
        account_id="HOSTILE-1",
        occurred_at=AT,
        payload={"reason": LONG},
        idempotency_key=f"key {MARKUP}",
    )
    store.store_signals([*usage, support])

    # a firing with its explain, kept rule and ledger entry, as the pipeline commits it
    rule = next(r for r in load_rules([ROOT / "rules"]).rules if r.id == "red-health")
    why = explain(rule, {"health.band": "red", "account.segment": MARKUP, "health.score": 5})
    firing = {
        "rule_id": rule.id,
        "rule_version": rule.version,
        "account_id": ID,
        "window": 1,
        "priority": "high",
        "fired_at": AT,
        "explain": {**why.to_dict(), "facts": {**why.to_dict()["facts"], "note": NASTY}},
        "actions": [{"start_playbook": MARKUP}],
    }
    source = rule.rule.model_dump(mode="json", by_alias=True)
    commit_evaluation(store, [firing], [], AT, {rule.version: (rule.id, source)})

    # runs: a playbook a firing started (closed with an outcome), an escalation still open
    wid = f"playbook:{MARKUP}:{ID}:1"
    starts = [
        RunStart(wid, None, "playbook", rule.id, MARKUP[:60], "v1", ID, "high", MARKUP),
        RunStart(f"escalation:{ID}", None, "escalation", rule.id, "", "", ID, "high", "q"),
    ]
    index_firings(store, {1: starts}, {"v1": (MARKUP, {"name": NASTY})})
    finish_run(store, wid, MARKUP[:60], AT)

    # the local CRM's tasks and notifications, and the side effects in the ledger
    for kind, subject in (("task", LONG), ("task", LINES), ("notification", NASTY)):
        key = f"{wid}:{kind}:{len(subject)}"
        create_local_task(
            store,
            LocalTaskRow(
                idempotency_key=key,
                kind=kind,
                workflow_id=wid,
                step_id=MARKUP[:60],
                account_id=ID,
                assignee=MARKUP,
                subject=subject,
                description=NASTY,
                due_at=AT,
            ),
        )
        ledger.append_one(
            store, ledger.effect("create_task", key, wid, "call", ID, "local", NASTY, True, AT)
        )
    keep_receipt(store, f"{wid}:slack", Receipt("slack", NASTY[:100], True))
    save_breaker(store, "local", "open", 3, NASTY)

    # dead letters: one to show, one to discard
    letters = []
    for step in ("call", "discard-me"):
        letters.append(
            record_dead_letter(
                store,
                DeadLetter(
                    idempotency_key=f"{wid}:{step}",
                    workflow_id=wid,
                    step_id=step,
                    action="create_task",
                    connector="local",
                    account_id=ID,
                    payload={"subject": LONG, "description": NASTY, "account_id": ID},
                    errors=[{"type": MARKUP, "message": NASTY}, {"type": "x", "message": LINES}],
                    attempts=8,
                    first_failure=AT,
                    last_failure=AT,
                ),
            )
        )

    # escalations: people's notes, reasons and names as they typed them
    timeline = [
        EscalationEvent(at=AT, kind="opened", detail=LINES),
        EscalationEvent(at=AT, kind="acknowledged", by=MARKUP, detail=NASTY),
        EscalationEvent(at=AT, kind="reassigned", by="csm-01", detail=LONG),
    ]
    for i, status in enumerate(("open", "acknowledged", "resolved")):
        state = EscalationState(
            workflow_id=f"escalation:{ID}:{i}",
            account_id=ID,
            severity="high",
            reason=NASTY,
            rule_id=rule.id,
            source_workflow_id=wid,
            team=MARKUP,
            status=status,
            level=1,
            holder="csm-01",
            holder_name=NASTY,
            opened_at=AT,
            ack_by=AT + timedelta(hours=4),
            resolution=LINES,
            timeline=timeline,
        )
        record_escalation(store, state, seq=1, plan={"note": NASTY})

    # quarantine: a refused payload, a stored signal held back, and one to discard
    raw = json.dumps({"account_id": MARKUP, "type": "usage_daily", "payload": {"x": NASTY}})
    errors = [{"field": MARKUP, "message": NASTY}, {"field": "", "message": LINES}]
    refused, held, extra = quarantine(
        store,
        [
            Held(source=MARKUP, raw=raw, errors=errors),
            Held(source="pipeline", raw=raw, errors=errors, signal_key=support.idempotency_key),
            Held(source=NASTY, raw=LONG + "\x00\ud800", errors=[{"message": LONG}]),
        ],
    )

    # files for the commands that read data files, and a people directory with odd names
    # valid ones for the rules commands; with rows the schemas refuse for the imports
    good_accounts = "".join(a.model_dump_json() + "\n" for a in accounts)
    good_signals = "".join(
        s.model_dump_json() + "\n" for s in [*usage, support] if s.account_id == "HOSTILE-1"
    )
    (folder / "accounts.jsonl").write_text(good_accounts, encoding="utf-8")
    (folder / "signals.jsonl").write_text(good_signals, encoding="utf-8")
    bad_account = {"id": MARKUP, "name": NASTY, "tier": LINES}
    bad_signal = {"type": MARKUP, "account_id": NASTY, "occurred_at": LINES}
    (folder / "bad_accounts.jsonl").write_text(
        good_accounts + json.dumps(bad_account) + "\n", encoding="utf-8"
    )
    (folder / "bad_signals.jsonl").write_text(
        good_signals + json.dumps(bad_signal) + "\n", encoding="utf-8"
    )
    people = yaml.safe_load((ROOT / "people.yaml").read_text(encoding="utf-8"))
    for person in people["people"]:
        person["name"] = f"{NASTY} {person['name']}"
    for team in people["teams"].values():
        team["name"] = f"{MARKUP} {team['name']}"
    (folder / "people.yaml").write_text(yaml.safe_dump(people), encoding="utf-8")
    return {
        "firing": 1,
        "dead_letter": letters[0],
        "dead_letter_to_discard": letters[1],
        "quarantined": refused,
        "held_signal": held,
        "quarantined_to_discard": extra,
        "escalation": f"escalation:{ID}:1",
    }


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ids]:
    folder = tmp_path_factory.mktemp("hostile")
    db = f"sqlite:///{folder}/csauto.db"
    store = Store(db)
    store.create_all()
    made = fill(store, folder)
    store.engine.dispose()
    env = {
        "CSAUTO_DATABASE_URL": db,
        "CSAUTO_DATA_DIR": str(folder / "data"),
        "CSAUTO_RULES_PATH": str(ROOT / "rules"),
        "CSAUTO_PLAYBOOKS_PATH": str(ROOT / "workflows"),
        "CSAUTO_CONNECTORS_PATH": str(ROOT / "connectors"),
        "CSAUTO_ESCALATION_MATRIX_PATH": str(ROOT / "escalation_matrix.yaml"),
        "CSAUTO_PEOPLE_PATH": str(folder / "people.yaml"),
        "CSAUTO_SCHEDULES_PATH": str(ROOT / "schedules.yaml"),
        # wide enough that a cell holding "[/red]" is never wrapped inside it
        "COLUMNS": "400",
    }
    yield Ids(db=db, env=env, files=folder, **made)  # type: ignore[arg-type]


Args = Callable[[Ids], list[str]]
DB = "--database-url"


def files(*extra: str) -> Args:
    return lambda i: [
        *extra,
        "--accounts",
        str(i.files / "accounts.jsonl"),
        "--signals",
        str(i.files / "signals.jsonl"),
    ]


# command -> argument lists to run it with (each run is a case), and whether the output
# must show hostile markup as written (it prints a value holding it)
RUNS: dict[str, list[tuple[Args, bool]]] = {
    "accounts list": [(lambda i: [DB, i.db], True)],
    "accounts show": [
        (lambda i: ["HOSTILE-1", DB, i.db], True),
        (lambda i: [ID, DB, i.db], True),  # no such account: the id quoted as written
    ],
    # the rejected row is named by line and field (its value is not repeated)
    "accounts import": [(lambda i: [str(i.files / "bad_accounts.jsonl"), DB, i.db], False)],
    "audit": [
        (lambda i: [DB, i.db], True),
        (lambda i: ["--account", ID, DB, i.db], True),
        (lambda i: ["--jsonl", "-", DB, i.db], True),
    ],
    "audit report": [
        (lambda i: ["--account", ID, "--html", str(i.files / "report.html"), DB, i.db], True),
    ],
    "audit verify": [(lambda i: [DB, i.db], False), (lambda i: ["--json", DB, i.db], False)],
    "connectors status": [(lambda i: [DB, i.db], True)],
    "db current": [(lambda i: [DB, i.db], False)],
    "db upgrade": [(lambda i: [DB, i.db], False)],
    "dlq list": [(lambda i: [DB, i.db], True), (lambda i: ["--all", DB, i.db], True)],
    "dlq show": [(lambda i: [str(i.dead_letter), DB, i.db], True)],
    "dlq discard": [(lambda i: [str(i.dead_letter_to_discard), DB, i.db], False)],
    "escalations list": [
        (lambda i: [DB, i.db], True),
        (lambda i: ["--all", "--json", DB, i.db], True),
        (lambda i: ["--team", MARKUP, "--holder", "csm-01", DB, i.db], True),
    ],
    "escalations show": [
        (lambda i: [i.escalation, DB, i.db], True),
        (lambda i: [MARKUP, DB, i.db], True),  # no such escalation
    ],
    "escalations simulate": [
        (lambda i: ["--severity", "high", "--account", "HOSTILE-1", DB, i.db], True),
        (lambda i: ["--severity", "high", "--account", "HOSTILE-1", "--json", DB, i.db], True),
        (lambda i: ["--severity", MARKUP, "--account", "HOSTILE-1", DB, i.db], True),
        (lambda i: ["--severity", "high", "--account", ID, DB, i.db], True),
    ],
    "escalations validate": [(lambda _: [], False)],
    "ingest": [(lambda i: [str(i.files / "bad_signals.jsonl"), DB, i.db], False)],
    "quarantine list": [
        (lambda i: [DB, i.db], True),
        (lambda i: ["--status", "all", "--json", DB, i.db], True),
        (lambda i: ["--source", MARKUP, DB, i.db], True),
    ],
    "quarantine show": [
        (lambda i: [str(i.quarantined), DB, i.db], True),
        (lambda i: [str(i.quarantined_to_discard), "--json", DB, i.db], True),
    ],
    "quarantine retry": [
        (lambda i: [str(i.quarantined), DB, i.db], False),  # still refused: says why
        (lambda i: [str(i.held_signal), "--by", MARKUP, DB, i.db], True),
    ],
    "quarantine discard": [
        (lambda i: [str(i.quarantined_to_discard), "--by", NASTY, DB, i.db], False)
    ],
    "rules backtest": [(files("--since", "14d", "--as-of", "2026-11-01"), False)],
    "rules evaluate": [(files("--as-of", "2026-11-01"), False)],
    "rules explain": [
        (files("red-health", "HOSTILE-1", "--as-of", "2026-11-01"), True),
        (files(MARKUP, "HOSTILE-1"), True),
        (files("red-health", MARKUP), True),
    ],
    "rules replay": [(lambda i: [str(i.firing), DB, i.db], True)],
    "runs list": [(lambda i: [DB, i.db], True)],
    "scheduler jobs": [(lambda i: [DB, i.db], False)],
    "scheduler sweep": [
        (lambda i: ["red-health", "--at", "2026-11-01", DB, i.db], False),
        (lambda i: [MARKUP, DB, i.db], True),
    ],
    "signals add": [
        (
            lambda i: [
                ID,
                "support_escalation",
                "--payload",
                json.dumps({"reason": NASTY}),
                DB,
                i.db,
            ],
            False,
        ),
        (lambda i: [ID, "usage_daily", "--payload", USAGE, "--key", LINES, DB, i.db], True),
        (lambda i: [ID, MARKUP, DB, i.db], False),  # not a type: the types are listed
    ],
    # the shipped sources, over a store whose quarantine holds hostile rows
    "sources status": [
        (
            lambda i: [
                *(DB, i.db),
                *("--schedules", str(ROOT / "schedules.yaml")),
                *("--sources", str(ROOT / "sources.yaml")),
            ],
            False,
        )
    ],
    "tasks show": [
        (lambda i: ["1", DB, i.db], True),
        (lambda i: ["2", DB, i.db], True),
    ],
    "tasks list": [
        (lambda i: [DB, i.db], True),
        (lambda i: ["--assignee", MARKUP, "--status", "open", DB, i.db], True),
    ],
}

NOT_RUN = {
    # they need Temporal (a server, or the bundled one started), or run until stopped
    "demo": "starts the bundled Temporal server and runs until the demo ends",
    "dev": "starts the bundled Temporal server and runs until stopped",
    "browse": "the bundled Temporal server on a copy of temporal.db, until stopped",
    "serve": "an HTTP server that runs until stopped (its pages: tests/api)",
    "worker": "a Temporal worker: runs until stopped",
    "pipeline": "needs Temporal and runs until stopped",
    "scheduler run": "runs until stopped",
    "escalations ack": "signals the escalation's workflow through Temporal",
    "escalations reassign": "signals the escalation's workflow through Temporal",
    "escalations resolve": "signals the escalation's workflow through Temporal",
    "escalations snooze": "signals the escalation's workflow through Temporal",
    "tasks complete": "signals the task's playbook through Temporal",
    "dlq retry": "re-drives through the connectors and signals the playbooks through Temporal",
    "connectors sync": "asks Temporal's playbooks and the vendors",
    "connectors check": "calls the live vendors",
    "history export": "reads histories from Temporal",
    "replay": "reads a history from Temporal or a history file",
    # they read no store and print no user data
    "connectors validate": "reads connector files only",
    "db downgrade": "drops the tables every other command reads",
    "db history": "the code's migrations",
    "db revision": "writes a migration into the source tree",
    "escalations schema": "a JSON Schema",
    "people hash-password": "prompts for a password",
    "people revoke": "prints only the person id it was given (tests/api/test_sessions.py)",
    "playbooks schema": "a JSON Schema",
    "playbooks validate": "reads playbook files only",
    "rules diff": "reads rule files only, here and at a git ref (tests/rules/test_preview.py)",
    "rules facts": "the fact catalogue",
    "rules schema": "a JSON Schema",
    "rules test": "reads rule files only (tests/rules/test_case_histories.py)",
    "rules validate": "reads rule files only",
    "sample generate": "writes the sample data set",
    "schema accounts": "a JSON Schema",
    "schema signals": "a JSON Schema",
}


def leaf_commands() -> list[str]:
    found: list[str] = []

    def walk(command: object, path: list[str]) -> None:
        subs = getattr(command, "commands", None)
        # a group that runs on its own too (`csauto audit`) is a command of its own
        if subs is None or (path and getattr(command, "invoke_without_command", False)):
            found.append(" ".join(path))
        for name, sub in sorted((subs or {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_is_run_here_or_listed_with_why_not() -> None:
    commands = set(leaf_commands())
    assert commands == RUNS.keys() | NOT_RUN.keys(), (
        commands - RUNS.keys() - NOT_RUN.keys(),
        (RUNS.keys() | NOT_RUN.keys()) - commands,
    )
    assert not RUNS.keys() & NOT_RUN.keys()


CASES = [
    pytest.param(command, args, shows, id=f"{command}-{n}")
    for command, runs in RUNS.items()
    for n, (args, shows) in enumerate(runs)
]


@pytest.mark.parametrize(("command", "args", "shows"), CASES)
def test_a_command_on_hostile_data_says_it_as_written(
    ids: Ids, command: str, args: Args, shows: bool
) -> None:
    result = runner.invoke(app, [*command.split(), *args(ids)], env=ids.env)
    output = result.output  # stdout and stderr
    # an uncaught exception (rich's MarkupError, a ValidationError) is the failure sought
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert result.exit_code in (0, 1), (result.exit_code, output[-3000:])
    assert "Traceback" not in output, output[-3000:]
    if shows:  # markup shown as written, not applied, not swallowed
        assert "[/red]" in output and "[bold]b[/bold]" in output, output[-3000:]
    assert "\x1b" not in output, "an escape sequence reached the terminal"
