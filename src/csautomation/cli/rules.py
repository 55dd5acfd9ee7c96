"""`csauto rules`: validate, test, dry-run, explain and backtest rules."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from csautomation.cli import rules_preview as preview
from csautomation.cli.audit import rules_replay
from csautomation.cli.common import err, out, plain, write_schema
from csautomation.cli.sample import DATA_DIR

app = typer.Typer(help="Validate, test, dry-run and backtest rules.", no_args_is_help=True)
app.command("replay")(rules_replay)
app.command("diff")(preview.rules_diff)

RulesOpt = Annotated[list[Path] | None, typer.Option("--rules", help="rule files or folders")]
AccountsOpt = Annotated[Path | None, typer.Option("--accounts", help="accounts JSONL")]
SignalsOpt = Annotated[
    Path | None, typer.Option("--signals", "--history", help="signal history JSONL")
]
ModelOpt = Annotated[Path | None, typer.Option("--health-model", help="health model YAML")]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="evaluate at the end of this UTC day (default: the last signal's)"
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


def _health_model(path: Path | None) -> Any:
    from csautomation.facts.health import load_health_model

    if path is None and Path("health_model.yaml").exists():
        path = Path("health_model.yaml")
    return load_health_model(path)


def _rule_paths(paths: list[Path] | None) -> list[Path]:
    return paths or [Path("rules")]


def _sample_files(accounts: Path | None, signals: Path | None) -> tuple[Path, Path]:
    if accounts is None and signals is None:
        acc, sig = DATA_DIR / "accounts.jsonl", DATA_DIR / "signals.jsonl"
        if not (acc.exists() and sig.exists()):
            from csautomation.sample.generate import write_sample

            err.print(f"generating the sample data set in {DATA_DIR}/ ...", markup=False)
            write_sample(DATA_DIR)
        return acc, sig
    if accounts is None or signals is None:
        raise typer.BadParameter("give both --accounts and --signals, or neither (sample data)")
    return accounts, signals


def _load_data(accounts: Path | None, signals: Path | None) -> tuple[list[Any], list[Any]]:
    from csautomation.datafiles import read_jsonl
    from csautomation.facts.model import Account, Signal

    acc, sig = _sample_files(accounts, signals)
    return read_jsonl(acc, Account), read_jsonl(sig, Signal)


def _as_of(value: str | None, signals: list[Any]) -> date:
    if value:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(
                f"--as-of wants a date like 2026-11-01, got {value!r}"
            ) from None
    return max((s.day for s in signals), default=datetime.now(UTC).date())


@app.command("validate")
def rules_validate(paths: Annotated[list[Path] | None, typer.Argument()] = None) -> None:
    """Check rule files; every problem is printed as file:line:column.

    Beside each file on its own: the playbooks rules start (workflows/), the connectors,
    severities and people they name (connectors/, escalation_matrix.yaml, people.yaml),
    and every template rendered for a sample account."""
    from csautomation.bootstrap import known_names, settings
    from csautomation.errors import ConfigFileError
    from csautomation.playbooks.loader import load_playbooks
    from csautomation.references import reference_problems, template_problems
    from csautomation.rules.loader import load_rules

    ruleset = load_rules(_rule_paths(paths))
    config = settings()
    folder = config.playbooks_path
    playbooks = load_playbooks([folder]) if folder.exists() else None
    problems = reference_problems(ruleset, playbooks, known_names(config))
    problems += template_problems(ruleset, None)
    if problems:
        raise ConfigFileError(problems)
    against = f", against {folder}/" if playbooks is not None else f" (no {folder}/ to check)"
    out.print(
        f"[green]ok[/green] {len(ruleset.rules)} rules in {len(ruleset.files)} files "
        f"({len(ruleset.enabled)} enabled){against}"
    )


@app.command("schema")
def rules_schema(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Print (or write) the JSON Schema of rule files, for editor autocompletion."""
    from csautomation.rules.spec import RuleFile

    write_schema(RuleFile, "csautomation rule file", output)


@app.command("facts")
def rules_facts() -> None:
    """List every fact a rule can read, with its type and meaning."""
    from csautomation.facts.catalog import FACTS

    table = Table(title="Facts")
    for col in ("fact", "type", "meaning"):
        table.add_column(col)
    for d in FACTS.values():
        table.add_row(d.path, d.type.value, d.description)
    out.print(table)


@app.command("test")
def rules_test(
    paths: Annotated[list[Path] | None, typer.Argument()] = None,
    health_model: ModelOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the test cases in rules/tests/ through both evaluation paths."""
    from csautomation.rules.loader import load_rules
    from csautomation.rules.testcases import case_files, load_cases, run_case

    ruleset = load_rules(_rule_paths(paths))
    model = _health_model(health_model)
    cases = load_cases(case_files(_rule_paths(paths)))
    failed = 0
    for file, line, case in cases:
        result = run_case(ruleset, model, file, line, case)
        # case names and the facts they give are the authors' text, printed as written
        if result.passed:
            if verbose:
                out.print(Text("PASS ", "green") + plain(f"{case.rule}: {case.name}"))
            continue
        failed += 1
        out.print(
            Text("FAIL ", "red")
            + plain(f"{file}:{line}: {case.rule}: {case.name}: {result.reason}"),
            soft_wrap=True,
        )
        if result.explanation is not None:
            out.print(plain(result.explanation.render()))
    untested = sorted({r.id for r in ruleset.rules} - {c.rule for _, _, c in cases})
    for rule_id in untested:
        out.print(Text("warning ", "yellow") + plain(f"rule {rule_id} has no test cases"))
    out.print(f"{len(cases) - failed} passed, {failed} failed")
    if failed or not cases:
        raise typer.Exit(1)


@app.command("evaluate")
def rules_evaluate(
    rules: RulesOpt = None,
    accounts: AccountsOpt = None,
    signals: SignalsOpt = None,
    health_model: ModelOpt = None,
    as_of: AsOfOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Dry run: which rules match which accounts now (no cooldowns, no side effects)."""
    from csautomation.facts.days import end_of_day
    from csautomation.facts.derive import group_by_account
    from csautomation.rules.runtime import RuleRuntime

    runtime = RuleRuntime(_rule_paths(rules), _health_model(health_model))
    accs, sigs = _load_data(accounts, signals)
    day = _as_of(as_of, sigs)
    at = end_of_day(day)  # a day is read at its end: all of its signals count
    by_account = group_by_account(sigs)
    matches: list[Any] = []
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(accs))
        for account in accs:
            ev = runtime.evaluate_account(
                account, by_account.get(account.id, []), at, None, apply_cooldown=False
            )
            matches.extend(ev.fired)
            progress.advance(task)
    if fmt == "json":
        sys.stdout.write(json.dumps([m.to_dict() for m in matches], indent=2) + "\n")
        return
    table = Table(title=f"Rules matching on {day} ({len(accs)} accounts)")
    for col in ("account", "rule", "priority", "why"):
        table.add_column(col)
    for m in sorted(matches, key=lambda m: (m.rule.rank, m.rule_id, m.account_id))[:60]:
        why = "; ".join(c.check.text() for c in _passing_checks(m.explanation.tree))
        table.add_row(plain(m.account_id), m.rule_id, m.rule.rule.priority.value, plain(why))
    out.print(table)
    if len(matches) > 60:
        out.print(f"... and {len(matches) - 60} more (use --format json for all)")
    summary = Table(title="Matches per rule")
    summary.add_column("rule")
    summary.add_column("priority")
    summary.add_column("accounts", justify="right")
    per_rule = Counter(m.rule_id for m in matches)
    for r in sorted(runtime.ruleset.enabled, key=lambda r: (r.rank, r.id)):
        summary.add_row(r.id, r.rule.priority.value, str(per_rule.get(r.id, 0)))
    out.print(summary)


def _passing_checks(node: Any) -> list[Any]:
    if node.check is not None:
        return [node] if node.result else []
    return [c for child in node.children for c in _passing_checks(child)]


@app.command("explain")
def rules_explain(
    rule: str,
    account: str,
    rules: RulesOpt = None,
    accounts: AccountsOpt = None,
    signals: SignalsOpt = None,
    health_model: ModelOpt = None,
    as_of: AsOfOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Why RULE does or does not match ACCOUNT: every fact read and every comparison."""
    from csautomation.facts.derive import derive
    from csautomation.rules.explain import explain
    from csautomation.rules.loader import load_rules

    ruleset = load_rules(_rule_paths(rules))
    model = _health_model(health_model)
    accs, sigs = _load_data(accounts, signals)
    compiled = ruleset.by_id(rule)
    if compiled is None:
        import difflib

        near = difflib.get_close_matches(rule, [r.id for r in ruleset.rules], n=1)
        err.print(plain(f"no rule '{rule}'" + (f"; did you mean '{near[0]}'?" if near else "")))
        raise typer.Exit(1)
    target = next((a for a in accs if a.id == account), None)
    if target is None:
        err.print(plain(f"no account '{account}' in the accounts file"))
        raise typer.Exit(1)
    day = _as_of(as_of, sigs)
    history = [s for s in sigs if s.account_id == account]
    record = derive(target, history, day, model, compiled.derived).record()
    why = explain(compiled, record)
    if fmt == "json":
        sys.stdout.write(json.dumps(why.to_dict(), indent=2) + "\n")
    else:
        out.print(plain(f"account {target.id} ({target.name}) as of {day}"), soft_wrap=True)
        out.print(plain(why.render()), soft_wrap=True)


@app.command("backtest")
def rules_backtest(
    since: Annotated[str, typer.Option("--since", help="how far back, e.g. 90d")] = "90d",
    rules: RulesOpt = None,
    accounts: AccountsOpt = None,
    signals: SignalsOpt = None,
    health_model: ModelOpt = None,
    as_of: AsOfOpt = None,
    fmt: FormatOpt = "table",
    include_disabled: Annotated[bool, typer.Option("--include-disabled")] = True,
    compare: Annotated[
        str | None, typer.Option("--compare", help="git ref or folder: before and after")
    ] = None,
    show_accounts: preview.ShowAccountsOpt = 5,
) -> None:
    """Replay history day by day (no side effects): firings per rule per week, and overlap.
    With --compare REF: the rules at REF against the rules now, over the same history."""
    from csautomation.config import parse_duration
    from csautomation.rules.backtest import backtest
    from csautomation.rules.loader import load_rules

    try:
        days = parse_duration(since).days
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ruleset = load_rules(_rule_paths(rules))
    other = preview.other_version(compare, _rule_paths(rules)) if compare is not None else None
    model = _health_model(health_model)
    accs, sigs = _load_data(accounts, signals)
    end = _as_of(as_of, sigs)
    if other is not None:
        data = (accs, sigs, model)
        return preview.compare_and_print(
            other, ruleset, _rule_paths(rules), data, end, days, fmt, show_accounts
        )
    chosen = list(ruleset.rules if include_disabled else ruleset.enabled)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("deriving facts", total=len(accs))
        result = backtest(
            accs, sigs, chosen, model, end, days, progress=lambda n: progress.advance(task, n)
        )
    if fmt == "json":
        sys.stdout.write(
            json.dumps(
                {
                    "start": result.start.isoformat(),
                    "end": result.end.isoformat(),
                    "weeks": [w.isoformat() for w in result.weeks],
                    "fires": result.fires,
                    "accounts": {r: sorted(a) for r, a in result.accounts_hit.items()},
                },
                indent=2,
            )
            + "\n"
        )
        return
    _print_backtest(result)


def _print_backtest(result: Any) -> None:
    keys = {rule_id: f"R{i}" for i, rule_id in enumerate(result.rules, 1)}
    legend = Table(
        title=f"Backtest {result.start} to {result.end}: {result.accounts} accounts, "
        f"{result.account_days:,} account-days"
    )
    for col, justify in (
        ("", "left"),
        ("rule", "left"),
        ("firings", "right"),
        ("accounts", "right"),
    ):
        legend.add_column(col, justify=justify)  # type: ignore[arg-type]
    for rule_id, key in keys.items():
        legend.add_row(
            key, rule_id, str(sum(result.fires[rule_id])), str(len(result.accounts_hit[rule_id]))
        )
    out.print(legend)
    weekly = Table(title="Firings per rule per week (weeks from Monday)")
    weekly.add_column("week of")
    for key in keys.values():
        weekly.add_column(key, justify="right")
    for i, week in enumerate(result.weeks):
        weekly.add_row(week.isoformat(), *[str(result.fires[r][i]) for r in result.rules])
    out.print(weekly)
    overlap = Table(title="Overlap: accounts fired on by both rules in the period")
    overlap.add_column("")
    for key in keys.values():
        overlap.add_column(key, justify="right")
    for a, key in keys.items():
        overlap.add_row(key, *[str(result.overlap(a, b)) for b in result.rules])
    out.print(overlap)
