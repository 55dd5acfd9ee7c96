"""`csauto playbooks`: check playbook files (workflows/) and print their schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from csautomation.cli.common import out, write_schema

app = typer.Typer(help="Validate playbooks (workflows/).", no_args_is_help=True)


@app.command("validate")
def playbooks_validate(paths: Annotated[list[Path] | None, typer.Argument()] = None) -> None:
    """Check playbook files; every problem is printed as file:line:column.

    Beside each file on its own: the connectors and severities steps name (connectors/,
    escalation_matrix.yaml), and every template rendered for a sample account, so that
    an unknown variable or filter is found here, not when a task is created."""
    from csautomation.bootstrap import known_names, settings
    from csautomation.errors import ConfigFileError
    from csautomation.playbooks.loader import load_playbooks
    from csautomation.references import reference_problems, template_problems

    playbooks = load_playbooks(paths or [Path("workflows")])
    problems = reference_problems(None, playbooks, known_names(settings()))
    problems += template_problems(None, playbooks)
    if problems:
        raise ConfigFileError(problems)
    for pb in playbooks.values():
        out.print(
            f"[green]ok[/green] {escape(pb.id)} (version {pb.version}, {len(pb.steps)} steps)"
        )


@app.command("schema")
def playbooks_schema(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Print (or write) the JSON Schema of playbook files."""
    from csautomation.playbooks.spec import PlaybookFile

    write_schema(PlaybookFile, "csautomation playbook file", output)
