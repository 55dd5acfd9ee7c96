"""Playbooks validate like rules: file:line errors, sandboxed templates, checked references."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.config import load_file
from csautomation.errors import ConfigFileError
from csautomation.playbooks.loader import load_playbooks
from csautomation.rules.loader import load_rules
from csautomation.rules.spec import StartPlaybook
from csautomation.templates import TemplateProblem, render

ROOT = Path(__file__).parents[2]


def test_shipped_playbooks_validate_and_cover_the_rules() -> None:
    playbooks = load_playbooks([ROOT / "workflows"])
    assert {"usage-recovery", "renewal-risk", "champion-change", "expansion-handoff"} <= set(
        playbooks
    )
    started = {
        a.start_playbook
        for r in load_rules([ROOT / "rules"]).rules
        for a in r.rule.actions
        if isinstance(a, StartPlaybook)
    }
    assert started <= set(playbooks), started - set(playbooks)


def test_schema_accepts_the_shipped_playbooks() -> None:
    result = CliRunner().invoke(app, ["playbooks", "schema"])
    schema = json.loads(result.output)
    for path in (ROOT / "workflows").glob("*.yaml"):
        jsonschema.validate(load_file(path).data, schema)


BASE = """\
playbook:
  id: p
  name: P
  owner: ops
  steps:
"""


@pytest.mark.parametrize(
    ("steps", "line", "message"),
    [
        ("    - id: a\n      wait: 3 days\n", 7, "write 3d"),
        (
            "    - id: a\n      branch: {if: health.score < 40, then: nowhere}\n",
            7,
            "no step 'nowhere'",
        ),
        (
            "    - id: a\n      notify: {channel: slack, template: '{{ account.name '}\n",
            7,
            "template does not parse",
        ),
        (
            "    - id: a\n      wait_for: {task_completed: b, timeout: 2d}\n    - id: b\n"
            "      wait: 1d\n",
            7,
            "not a create_task step",
        ),
        ("    - id: a\n      wait: 1d\n      complete: {}\n", 6, "exactly one of"),
        ("    - id: a\n      wait: 1d\n    - id: a\n      wait: 2d\n", 8, "used twice"),
        (
            "    - id: a\n      branch: {if: health.scor < 4, then: complete}\n",
            7,
            "did you mean 'health.score'",
        ),
    ],
)
def test_broken_playbooks_name_file_and_line(
    tmp_path: Path, steps: str, line: int, message: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE + steps, encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_playbooks([path])
    problem = info.value.problems[0]
    assert problem.file == str(path)
    assert problem.line == line and message in problem.message, str(problem)


def test_templates_are_sandboxed_and_strict() -> None:
    assert render("Hi {{ account.name }}", {"account": {"name": "Acme"}}) == "Hi Acme"
    with pytest.raises(TemplateProblem):
        render("{{ ''.__class__.__mro__ }}", {})
    with pytest.raises(TemplateProblem, match="undefined"):
        render("{{ acount.name }}", {"account": {"name": "Acme"}})


def test_version_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "    - id: a\n      wait: 1d\n", encoding="utf-8")
    first = load_playbooks([path])["p"].version
    assert load_playbooks([path])["p"].version == first
    path.write_text(BASE + "    - id: a\n      wait: 2d\n", encoding="utf-8")
    assert load_playbooks([path])["p"].version != first


def test_cli_validate(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["playbooks", "validate", str(ROOT / "workflows")])
    assert result.exit_code == 0 and "usage-recovery" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(BASE) + "    - id: a\n      wiat: 1d\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["playbooks", "validate", str(bad)])
    assert result.exit_code == 1 and f"{bad}:" in result.output
