"""The `csauto` command: every command group registered here, one module per group.

The commands build what they need through `csautomation.bootstrap` and let the project's
errors rise; `common.CommandGroup` turns them into a message and exit code 1.
"""

from __future__ import annotations

import typer

from csautomation.cli import (
    accounts,
    audit,
    audit_report,
    audit_verify,
    browse,
    connectors,
    db,
    dlq,
    escalations,
    people,
    playbooks,
    processes,
    quarantine,
    rules,
    sample,
    scheduler,
    schema,
    signals,
    sources,
    tasks,
)
from csautomation.cli.common import CommandGroup

__all__ = ["app", "main"]

app = typer.Typer(
    help="csautomation: rule-based automation for Customer Success teams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=CommandGroup,
)
for name, command in (
    ("demo", processes.demo),
    ("serve", processes.serve),
    ("ingest", signals.ingest),
    ("dev", processes.dev),
    ("worker", processes.worker),
    ("pipeline", processes.pipeline),
    ("replay", audit.replay),
    ("browse", browse.browse),
):
    app.command(name)(command)
for name, group in (
    ("audit", audit_report.app),  # `csauto audit` lists the ledger; `audit report` too
    ("rules", rules.app),
    ("playbooks", playbooks.app),
    ("sample", sample.app),
    ("scheduler", scheduler.app),
    ("people", people.app),
    ("tasks", tasks.app),
    ("signals", signals.app),
    ("runs", tasks.runs_app),
    ("connectors", connectors.app),
    ("dlq", dlq.app),
    ("escalations", escalations.app),
    ("quarantine", quarantine.app),
    ("db", db.app),
    ("history", audit.history_app),
    ("accounts", accounts.app),
    ("schema", schema.app),
    ("sources", sources.app),
):
    app.add_typer(group, name=name)
rules.app.command("replay")(audit.rules_replay)
audit_report.app.command("verify")(audit_verify.verify)


def main() -> None:
    """The `csauto` process: the command, then an exit that the Temporal SDK's threads cannot
    turn into an abort (csautomation.runner)."""
    from csautomation.runner import run_and_exit

    run_and_exit(lambda: app(prog_name="csauto"))
