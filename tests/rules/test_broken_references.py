"""Rules that are valid on their own but name what is not there: a playbook, a person, a
connector, a template variable or filter. `rules validate` refuses each with its file,
line and a "did you mean", and `csauto dev`, `worker` and `pipeline` refuse to start with
the same message, before they connect to anything.

Each file under `broken_refs/` is checked against the shipped workflows/, connectors/,
escalation_matrix.yaml and people.yaml (its first line says what it breaks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.playbooks.loader import load_playbooks
from csautomation.references import Known, reference_problems
from csautomation.rules.loader import load_rules
from jargon import JARGON

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
BROKEN = HERE / "broken_refs"

# file name -> (line, part of the message)
CASES: dict[str, tuple[int, str]] = {
    "01_unknown_playbook.yaml": (
        10,
        "starts playbook 'usage-recovry', which is not in workflows/; "
        "did you mean 'usage-recovery'?",
    ),
    "02_unknown_person.yaml": (
        11,
        "'csm-99' is not a person in people.yaml (account.owner is a person id); "
        "did you mean 'csm-09'?",
    ),
    "03_unknown_connector.yaml": (
        10,
        "no connector 'salesfroce' in connectors/; did you mean 'salesforce'?",
    ),
    "04_connector_without_capability.yaml": (
        10,
        "connector 'slack' (slack) does not send tasks; connectors that do: hubspot, local",
    ),
    "05_template_unknown_field.yaml": (
        12,
        "the template names 'nmae', which is not there; did you mean 'account.name'?",
    ),
    "06_template_unknown_filter.yaml": (10, "No filter named 'shout'"),
    "07_template_unknown_fact.yaml": (
        12,
        "no fact 'health.scor'; did you mean 'health.score'?",
    ),
}


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped configuration beside the rule under test (settings read the cwd)."""
    monkeypatch.chdir(ROOT)
    for name in ("DATABASE_URL", "TEMPORAL_ADDRESS"):
        monkeypatch.delenv(f"CSAUTO_{name}", raising=False)


def test_every_file_is_in_the_table() -> None:
    assert sorted(p.name for p in BROKEN.glob("*.yaml")) == sorted(CASES)


def first_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error ")]
    assert lines, output
    assert "Traceback" not in output
    assert not any(word in output for word in JARGON), output
    return lines[0]


@pytest.mark.parametrize(("name", "line", "text"), [(n, *c) for n, c in CASES.items()])
@pytest.mark.usefixtures("shipped")
def test_rules_validate_names_file_line_and_fix(name: str, line: int, text: str) -> None:
    path = BROKEN / name
    rel = path.relative_to(ROOT)
    result = CliRunner().invoke(app, ["rules", "validate", str(rel)])
    assert result.exit_code == 1, result.output
    first = first_error(result.output)
    assert first.startswith(f"error {rel}:{line}:"), result.output
    assert text in first, result.output


@pytest.mark.parametrize("command", [["pipeline"], ["worker"], ["dev"]])
@pytest.mark.parametrize("name", ["01_unknown_playbook.yaml", "05_template_unknown_field.yaml"])
@pytest.mark.usefixtures("shipped")
def test_processes_refuse_to_start_with_the_same_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str], name: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / name).write_bytes((BROKEN / name).read_bytes())
    monkeypatch.setenv("CSAUTO_RULES_PATH", str(rules))
    # nothing may be started or created: a data dir that a start would fill
    monkeypatch.setenv("CSAUTO_DATA_DIR", str(tmp_path / "data"))
    validate = CliRunner().invoke(app, ["rules", "validate", str(rules)])
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert first_error(result.output) == first_error(validate.output)
    assert not (tmp_path / "data").exists()


def test_a_severity_the_matrix_lacks_is_named() -> None:
    ruleset = load_rules([ROOT / "rules"])
    playbooks = load_playbooks([ROOT / "workflows"])
    problems = reference_problems(ruleset, playbooks, Known(severities={"high", "medium"}))
    shown = [str(p) for p in problems]
    # the shipped files raise critical in rules (lifecycle, support) and in renewal-risk
    assert any(
        s.startswith(f"{ROOT / 'rules' / 'lifecycle.yaml'}:") and "severity 'critical'" in s
        for s in shown
    ), shown
    assert any("renewal-risk.yaml" in s and "escalate.severity" in s for s in shown), shown
    assert all("is not in escalation_matrix.yaml" in s for s in shown), shown


def test_the_shipped_configuration_has_no_reference_problems() -> None:
    from csautomation import bootstrap

    config = bootstrap.settings()
    ruleset = load_rules([ROOT / "rules"])
    playbooks = load_playbooks([ROOT / "workflows"])
    assert reference_problems(ruleset, playbooks, bootstrap.known_names(config)) == []
