"""`csauto connectors`: the connectors' configuration, credentials and breakers, whom their
tasks go to, and one completion-sync pass."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from csautomation import bootstrap
from csautomation.cli.common import DataDirOpt, DbOpt, out, plain, read_store
from csautomation.errors import ConnectorError

if TYPE_CHECKING:
    from csautomation.connectors.owners import Survey

app = typer.Typer(help="Vendor connectors (connectors/).", no_args_is_help=True)


def _configs(settings: Any) -> dict[str, Any]:
    from csautomation.connectors.loader import load_connectors

    return load_connectors([settings.connectors_path])


@app.command("validate")
def validate() -> None:
    """Check every file in connectors/ (file:line:column errors, exit code 1)."""
    configs = _configs(bootstrap.settings())
    enabled = sum(1 for c in configs.values() if c.enabled)
    out.print(f"{len(configs)} connector(s) valid, {enabled} enabled")


def _needs(config: Any) -> list[str]:
    """The environment variables a configuration names."""
    names: list[str] = []
    for part in (config, getattr(config, "auth", None)):
        if part is None:
            continue
        for field, value in part:
            if field.endswith("_env") and isinstance(value, str):
                names.append(value)
    return names


@app.command("check")
def check(
    owners: Annotated[
        bool, typer.Option("--owners", help="list whom each person's tasks go to, and why")
    ] = False,
) -> None:
    """Verify each connector's configuration and credentials against the live service with
    one authenticated call, and resolve every person in people.yaml to a user there (a
    task connector's owners). Exit code 1 if an enabled connector fails, or cannot resolve
    someone and has no fallback_owner to give their tasks to."""
    from csautomation.connectors.loader import vendor
    from csautomation.connectors.owners import Owners, attach, survey
    from csautomation.escalation.people import load_people

    settings = bootstrap.settings()
    configs = _configs(settings)
    people = load_people(settings.people_path) if settings.people_path.exists() else None
    surveys: list[tuple[str, Survey]] = []
    table = Table(title="connectors check")
    for col in ("connector", "type", "verdict"):
        table.add_column(col)
    failed = 0
    for config in configs.values():
        missing = [n for n in _needs(config) if not os.environ.get(n)]
        if config.type == "local":
            verdict = "[green]ok[/green]: built-in, kept in the csautomation store"
        elif not config.enabled:
            need = f"; needs {', '.join(missing)}" if missing else ""
            verdict = f"[dim]disabled[/dim] (enabled: true in its file{need})"
        else:
            connector = vendor(config, os.environ, True)
            try:
                said = connector.check()
                verdict = f"[green]ok[/green]: {said}"
                if isinstance(getattr(connector, "owners", None), Owners):
                    attach(connector, people)
                    surveys.append((config.id, survey(connector.owners, people)))
            except ConnectorError as exc:
                failed += 1
                verdict = f"[red]FAILED[/red]: {exc}"
            finally:
                connector.close()
        table.add_row(config.id, config.type, verdict)
    out.print(table)
    for name, found in surveys:
        failed += _report(name, found, owners)
    if failed:
        raise typer.Exit(1)


def _report(connector: str, found: Survey, every: bool) -> int:
    """Print a connector's owners; 1 when someone's tasks would be dead letters."""
    from csautomation.connectors.owners import SOURCES

    ok = [r for r in found.people if r.user_id is not None]
    missing = [r for r in found.people if r.user_id is None]
    sources = Counter(r.source for r in ok)
    how = "; ".join(f"{sources[k]} by {said}" for k, said in SOURCES.items() if sources[k])
    out.print(
        plain(
            f"{connector} owners: resolved {len(ok)} of {len(found.people)} people in "
            f"people.yaml" + (f" ({how})" if how else "")
        )
    )
    for r in found.people if every else []:
        whom = f"{r.user_id} ({SOURCES[r.source]})" if r.user_id else "nobody"
        out.print(plain(f"  {r.who}: {whom}"))
    for r in missing:
        out.print(plain(f"  {r.who} cannot be resolved: {r.reason}"))
    if not missing:
        return 0
    fallback = found.fallback
    if fallback is not None and fallback.user_id is not None:
        whom = fallback.name or f"user {fallback.user_id}"
        out.print(plain(f"  their tasks go to the fallback owner, {whom}"))
        return 0
    if fallback is not None:
        out.print(plain(f"  [FAILED] and the fallback owner cannot take them: {fallback.reason}"))
    else:
        out.print(
            plain(
                "  [FAILED] their tasks would be dead letters: add crm_ids or an e-mail the "
                "vendor knows to people.yaml, or set fallback_owner in the connector's file"
            )
        )
    return 1


@app.command("status")
def status(database_url: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """What the store holds of each connector: the side effects done through it (from the
    decision ledger), its dead letters, and its breaker as its workers last reported it."""
    from csautomation.store.deadletters import breaker_states, dead_letter_counts
    from csautomation.store.ledger import effects_per_connector

    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    configs = _configs(settings)
    store = read_store(database_url, data_dir)
    states = breaker_states(store)
    done = effects_per_connector(store)
    dead = dead_letter_counts(store)
    table = Table(
        title="connectors status", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0)
    )
    table.add_column("connector", no_wrap=True)
    table.add_column("type")
    table.add_column("on")
    table.add_column("actions done", justify="right")
    table.add_column("last action (UTC)", no_wrap=True)
    table.add_column("dead letters open/all", justify="right")
    table.add_column("breaker")
    errors: list[Text] = []
    for config in configs.values():
        st = states.get(config.id)
        breaker = st.state if st else "closed"
        colour = {"closed": "green", "open": "red", "half_open": "yellow"}.get(breaker, "white")
        count, last = done.get(config.id, (0, None))
        letters = {kind: n for (c, kind), n in dead.items() if c == config.id}
        table.add_row(
            plain(config.id),
            config.type,
            "yes" if config.enabled else "no",
            str(count),
            f"{last:%Y-%m-%d %H:%M}" if last else "none yet",
            f"{letters.get('open', 0)}/{sum(letters.values())}",
            Text(breaker, colour),
        )
        if st and (st.failures or st.last_error):
            said = f"; last error: {st.last_error}" if st.last_error else ""
            errors.append(plain(f"{config.id}: {st.failures} failure(s) in a row{said}"))
    out.print(table)
    out.print(
        "Counted from the store: actions done are the decision ledger's side effects (one "
        "per action, however often it was retried); dead letters are actions that failed "
        "for good. Each worker's calls and retries are on its /metrics. The breaker is as a "
        "worker last reported a change of it."
    )
    for line in errors:
        out.print(line, soft_wrap=True)


@app.command("sync")
def sync(database_url: DbOpt = None) -> None:
    """One completion-sync pass: tasks completed at the vendors move their playbooks on
    (`csauto dev` runs one a minute)."""
    from csautomation.connectors.loader import build_connectors
    from csautomation.escalation.people import load_people
    from csautomation.ingest.completions import sync_completions

    settings = bootstrap.settings(database_url=database_url)
    store = bootstrap.open_store(settings)
    connectors = build_connectors(_configs(settings), store)

    people = load_people(settings.people_path) if settings.people_path.exists() else None

    async def main() -> int:
        client = await bootstrap.connect(settings)
        return await sync_completions(client, store, connectors, people=people)

    told = asyncio.run(main())
    out.print(f"{told} playbook(s) told of completed tasks")
