"""`csauto escalations validate | simulate | schema`: the
shipped files validate, problems come out as file:line:column, and simulate prints the
timeline of every shipped severity without touching anything."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.escalation.matrix import load_escalation_config
from csautomation.escalation.model import EscalationPlan
from csautomation.escalation.policy import plan
from factories import account, new_store

ROOT = Path(__file__).parents[2]
MATRIX, PEOPLE = load_escalation_config(ROOT / "escalation_matrix.yaml", ROOT / "people.yaml")

runner = CliRunner()

ACCOUNTS = [
    account(
        id="ENT-1",
        name="Initech Holdings",
        arr=420_000,
        region="emea",
        renewal_date=date(2027, 3, 1),
        customer_since=date(2021, 3, 1),
    ),
    account(
        id="SMB-1",
        name="Hooli Foods",
        tier="smb",
        arr=12_000,
        region="emea",
        owner="csm-10",
        manager="mgr-03",
        renewal_date=date(2027, 5, 1),
        customer_since=date(2023, 3, 1),
    ),
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "CSAUTO_ESCALATION_MATRIX_PATH": str(ROOT / "escalation_matrix.yaml"),
        "CSAUTO_PEOPLE_PATH": str(ROOT / "people.yaml"),
        "CSAUTO_DATA_DIR": str(tmp_path / "data"),
        "CSAUTO_DATABASE_URL": "",
        "COLUMNS": "200",
    }


@pytest.fixture
def stored(env: dict[str, str], db_url: str) -> dict[str, str]:
    new_store(db_url, ACCOUNTS).engine.dispose()
    return env | {"CSAUTO_DATABASE_URL": db_url}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["escalations", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_validate_the_shipped_files(env: dict[str, str]) -> None:
    code, output = run(env, "validate")
    assert code == 0, output
    assert output.startswith("ok: ")
    assert "4 severities (critical, high, medium, low), 9 entries, 2 calendars" in output
    assert "20 people in 3 teams" in output


def test_validate_reports_file_line_column(env: dict[str, str], tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "severities:\n  high:\n    - match: {tier: [smb]}\n      calendar: office\n"
        "      levels:\n        - reach: [owner, person:nobody]\n          channels: [local]\n"
        "          ack_within: 1h\n",
        encoding="utf-8",
    )
    people = tmp_path / "people.yaml"
    people.write_text("people:\n  - {id: a, name: A, role: csm, team: west}\n", encoding="utf-8")
    code, output = run(
        {**env, "CSAUTO_ESCALATION_MATRIX_PATH": str(matrix), "CSAUTO_PEOPLE_PATH": str(people)},
        "validate",
    )
    assert code == 1
    assert f"{matrix}:2:3: severities.high: severity 'high' is incomplete" in output
    assert f"{matrix}:4:7: severities.high[0].calendar: unknown calendar 'office'" in output
    assert f"{people}:1:1: " in output and "team 'west' is not in teams" in output
    assert "problem(s) found" in output


@pytest.mark.parametrize("severity", list(MATRIX.severities))
@pytest.mark.parametrize("account_id", ["ENT-1", "SMB-1"])
def test_simulate_prints_the_timeline(
    stored: dict[str, str], severity: str, account_id: str
) -> None:
    code, output = run(
        stored,
        "simulate",
        "--severity",
        severity,
        "--account",
        account_id,
        "--at",
        "2026-12-24T15:00Z",
    )
    assert code == 0, output
    account = next(a for a in ACCOUNTS if a.id == account_id)
    expected = plan(MATRIX, PEOPLE, account, severity, datetime(2026, 12, 24, 15, 0, tzinfo=UTC))
    assert f"{severity} escalation for {account_id} ({account.name}" in output
    assert "from the store" in output
    assert f"matched: {expected.matched}" in output
    assert f"team: {expected.team}" in output
    for column in ("round", "level", "when", "who", "channels", "ack by"):
        assert column in output
    for rnd in expected.levels:
        for person in rnd.recipients:
            assert f"{person.name} ({person.role})" in output
        assert ", ".join(rnd.channels) in output
        assert f"{rnd.ack_by:%Y-%m-%d %H:%M} UTC" in output
    if expected.calendar:
        assert f"calendar: {expected.calendar} ({expected.timezone})" in output
        assert "GMT" in output  # the local time beside UTC
    else:
        assert "around the clock" in output
    assert any(r.repeat for r in expected.levels) == ("(repeat 1)" in output)


def test_simulate_json_is_the_plan(stored: dict[str, str]) -> None:
    code, output = run(
        stored,
        "simulate",
        "--severity",
        "high",
        "--account",
        "SMB-1",
        "--at",
        "2026-12-24T16:00+01:00",
        "--json",
    )
    assert code == 0, output
    got = EscalationPlan.model_validate(json.loads(output))
    at = datetime(2026, 12, 24, 15, 0, tzinfo=UTC)
    assert got == plan(MATRIX, PEOPLE, ACCOUNTS[1], "high", at)
    assert got.levels[0].starts_at == at and got.levels[0].ack_by == datetime(
        2026, 12, 29, 10, 30, tzinfo=UTC
    )


def test_simulate_defaults_to_now(stored: dict[str, str]) -> None:
    before = datetime.now(UTC)
    code, output = run(stored, "simulate", "--severity", "critical", "--account", "ENT-1", "--json")
    assert code == 0, output
    starts = EscalationPlan.model_validate(json.loads(output)).levels[0].starts_at
    assert before <= starts <= datetime.now(UTC)


def test_simulate_a_naive_time_is_utc(stored: dict[str, str]) -> None:
    code, output = run(
        stored,
        "simulate",
        "--severity",
        "critical",
        "--account",
        "ENT-1",
        "--at",
        "2026-06-01 12:00",
        "--json",
    )
    assert code == 0, output
    starts = EscalationPlan.model_validate(json.loads(output)).levels[0].starts_at
    assert starts == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_simulate_refuses_unknown_severities_and_accounts(stored: dict[str, str]) -> None:
    code, output = run(stored, "simulate", "--severity", "urgent", "--account", "ENT-1")
    assert (
        code == 1
        and "unknown severity 'urgent'; the matrix has: critical, high, medium, low" in output
    )
    code, output = run(stored, "simulate", "--severity", "high", "--account", "NOPE")
    assert code == 1 and "no account 'NOPE' in the store" in output


def test_simulate_falls_back_to_the_written_sample(env: dict[str, str]) -> None:
    sample = Path(env["CSAUTO_DATA_DIR"]) / "sample"
    sample.mkdir(parents=True)
    (sample / "accounts.jsonl").write_text(ACCOUNTS[0].model_dump_json() + "\n", encoding="utf-8")
    code, output = run(
        env, "simulate", "--severity", "critical", "--account", "ENT-1", "--at", "2026-12-24T15:00Z"
    )
    assert code == 0, output
    assert "from the sample data" in output and "Priya Raman (csm)" in output
    assert not (Path(env["CSAUTO_DATA_DIR"]) / "csauto.db").exists()


def test_simulate_falls_back_to_the_generated_sample_without_writing(env: dict[str, str]) -> None:
    code, output = run(
        env, "simulate", "--severity", "high", "--account", "ACC-00002", "--at", "2026-12-24T15:00Z"
    )
    assert code == 0, output
    assert "ACC-00002" in output and "from the sample data" in output
    assert "2027-01-04 13:00 UTC" in output  # the worked example in escalation_matrix.yaml
    assert not Path(env["CSAUTO_DATA_DIR"]).exists()


def test_simulate_with_broken_config_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("severities: {}\n", encoding="utf-8")
    code, output = run(
        {**env, "CSAUTO_ESCALATION_MATRIX_PATH": str(bad)},
        "simulate",
        "--severity",
        "high",
        "--account",
        "X",
    )
    assert code == 1 and f"{bad}:1:1: severities" in output


def test_schema(env: dict[str, str], tmp_path: Path) -> None:
    code, output = run(env, "schema")
    assert code == 0 and json.loads(output)["title"] == "csautomation escalation matrix"
    target = tmp_path / "matrix.schema.json"
    code, _ = run(env, "schema", "--output", str(target))
    assert (
        code == 0 and "severities" in json.loads(target.read_text(encoding="utf-8"))["properties"]
    )


def test_show_prints_peoples_text_as_written(env: dict[str, str], db_url: str) -> None:
    """A note holding rich markup ("[/red]") is text: `escalations show` prints it and
    exits 0 (it crashed on it), with the rendered reason."""
    from datetime import timedelta

    from api.support import EAST_CRITICAL, populate
    from csautomation.store.escalations import get_escalation, record_escalation
    from csautomation.workflows.types import EscalationEvent

    store = new_store(db_url)
    populate(store)
    state = get_escalation(store, EAST_CRITICAL)
    assert state is not None
    note = EscalationEvent(
        at=state.opened_at + timedelta(hours=1),
        kind="acknowledged",
        by="mia",
        detail="customer said [/red] and [bold]call back[/bold]",
    )
    changed = state.model_copy(
        update={"timeline": [*state.timeline, note], "reason": "Renewal at risk at Acme [Corp]"}
    )
    record_escalation(store, changed, seq=99)
    store.engine.dispose()
    code, output = run(env | {"CSAUTO_DATABASE_URL": db_url}, "show", EAST_CRITICAL)
    assert code == 0, output
    assert "customer said [/red] and [bold]call back[/bold]" in output
    assert "reason: Renewal at risk at Acme [Corp]" in output
