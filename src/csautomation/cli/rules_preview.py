"""Preview a rule change before it ships: `csauto rules backtest --compare REF` and
`csauto rules diff REF`. REF is a folder of rules, or a git ref of the repository the rules
are in (HEAD~1, main, a tag); the rules on disk are the new version."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from csautomation.cli.common import err, out
from csautomation.errors import ConfigFileError

if TYPE_CHECKING:
    from csautomation.rules.compare import BacktestComparison, RuleComparison
    from csautomation.rules.loader import RuleSet
    from csautomation.rules.versions import OtherVersion

__all__ = ["compare_and_print", "other_version", "rules_diff"]

RefArg = Annotated[str, typer.Argument(help="a git ref (HEAD~1, main, a tag) or a folder")]
ShowAccountsOpt = Annotated[
    int, typer.Option("--show-accounts", min=0, help="accounts to name per rule")
]


def other_version(ref: str, paths: Sequence[Path]) -> OtherVersion:
    """The rules at `ref`; when they do not load, say so before their problems are listed."""
    from csautomation.rules.versions import load_other_version

    try:
        return load_other_version(ref, paths)
    except ConfigFileError:
        err.print(
            f"the rules at {ref} do not load; these problems are in {ref}'s version:",
            markup=False,
            soft_wrap=True,
        )
        raise


def now_label(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths) + " now"


def rules_diff(
    ref: RefArg,
    paths: Annotated[list[Path] | None, typer.Argument(help="rule files or folders")] = None,
) -> None:
    """What changed in the rules since REF, field by field, in words."""
    from csautomation.rules.diff import diff_rulesets
    from csautomation.rules.loader import load_rules

    rule_paths = paths or [Path("rules")]
    current = load_rules(rule_paths)
    other = other_version(ref, rule_paths)
    every = diff_rulesets(other.ruleset, current)
    changes = [c for c in every if c.status != "unchanged"]
    out.print(f"{ref} -> {now_label(rule_paths)}", markup=False, soft_wrap=True)
    if not changes:
        out.print(f"no rule changed ({len(current.rules)} rules)")
        return
    for change in changes:
        out.print(f"{change.status} {change.rule_id}", markup=False)
        for field in change.changes:
            out.print(f"  {field.text()}", markup=False, soft_wrap=True)
    counts = {s: sum(c.status == s for c in every) for s in ("added", "removed", "changed")}
    out.print(
        ", ".join(f"{n} {s}" for s, n in counts.items())
        + f", {len(every) - len(changes)} unchanged"
    )


def compare_and_print(
    other: OtherVersion,
    current: RuleSet,
    paths: Sequence[Path],
    data: tuple[list[Any], list[Any], Any],
    end: date,
    days: int,
    fmt: str,
    show: int,
) -> None:
    """Replay both versions over the same accounts, signals and days, and print the change."""
    from csautomation.rules.compare import compare_backtest

    accounts, signals, model = data
    labels = (other.label, now_label(paths))
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("deriving facts", total=len(accounts))
        result = compare_backtest(
            other.ruleset,
            current,
            labels,
            accounts,
            signals,
            model,
            end,
            days,
            progress=lambda n: progress.advance(task, n),
        )
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    print_comparison(result, show)


def _total(values: tuple[int, ...] | None) -> str:
    return "-" if values is None else str(sum(values))


def _week(before: tuple[int, ...] | None, after: tuple[int, ...] | None, i: int) -> str:
    old = "-" if before is None else str(before[i])
    new = "-" if after is None else str(after[i])
    return old if old == new else f"{old}→{new}"


def _change(rule: RuleComparison) -> str:
    said = [f"{', '.join(rule.fields)} changed"] if rule.fields else []
    if rule.disabled[1]:
        said.append("disabled now, so it fires nothing after")
    return "; ".join(said)


def _accounts(ids: Sequence[str], names: dict[str, str], show: int) -> str:
    shown = [escape(f"{a} ({names[a]})" if names.get(a) else a) for a in ids[:show]]
    more = f", and {len(ids) - show} more" if len(ids) > show else ""
    return f"{len(ids)}" + (": " + ", ".join(shown) + more if shown else "")


def print_comparison(result: BacktestComparison, show: int) -> None:
    table = Table(
        show_edge=False,  # the rule ids whole and every column in 80 characters
        title=escape(
            f"Backtest {result.start} to {result.end}, {result.accounts} accounts: "
            f"before = {result.before_label}, after = {result.after_label}"
        ),
    )
    table.add_column("rule", no_wrap=True)
    table.add_column("change", no_wrap=True)
    for col in ("before", "after", "delta", "enter", "leave"):
        table.add_column(col, justify="right")
    for r in result.rules:
        table.add_row(
            r.rule_id,
            r.status,
            _total(r.before),
            _total(r.after),
            f"{r.delta:+d}" if r.delta else "0",
            str(len(r.entering)),
            str(len(r.leaving)),
        )
    out.print(table)
    for r in result.rules:
        if r.fields or r.disabled[1]:
            out.print(f"{r.rule_id}: {_change(r)}", markup=False, soft_wrap=True)
    moved = [r for r in result.rules if r.moved]
    if not moved:
        out.print("no rule fires differently: every week and every account is the same")
        return
    weekly = Table(title="Firings per week, before→after (rules that fire differently)")
    weekly.add_column("week of")
    for r in moved:
        weekly.add_column(r.rule_id, justify="right")
    for i, week in enumerate(result.weeks):
        weekly.add_row(week.isoformat(), *[_week(r.before, r.after, i) for r in moved])
    out.print(weekly)
    people = Table(title="Accounts that enter (fire only after) or leave (fire only before)")
    for col in ("rule", "enter", "leave"):
        people.add_column(col)
    for r in moved:
        people.add_row(
            r.rule_id,
            _accounts(r.entering, result.names, show),
            _accounts(r.leaving, result.names, show),
        )
    out.print(people)
    enter = len(result.hit_after - result.hit_before)
    leave = len(result.hit_before - result.hit_after)
    out.print(
        f"accounts fired on by any rule: {len(result.hit_before)} before, "
        f"{len(result.hit_after)} after ({enter} enter, {leave} leave)"
    )
