"""The composition root: one Settings in, the parts of a running csautomation out.

Every process (the `csauto` commands, `csauto dev`, the tests that run the whole thing)
builds its parts here, so there is one answer to "where does the worker get its
connectors". Builders raise the project's errors (errors.py); the process edge (cli/) turns
them into a message and an exit code. Heavy modules are imported inside the builders, so a
command pays only for the parts it builds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csautomation.errors import ConfigFileError, NoStoreError
from csautomation.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from temporalio.client import Client

    from csautomation.activities.escalation import EscalationActivities
    from csautomation.activities.playbook import PlaybookActivities
    from csautomation.connectors.registry import Connectors
    from csautomation.facts.health import HealthModel
    from csautomation.live import LiveConfiguration
    from csautomation.playbooks.loader import Playbooks
    from csautomation.references import Known
    from csautomation.rules.loader import RuleSet
    from csautomation.scheduling.config import Schedules
    from csautomation.store.facts import FactsReader
    from csautomation.store.repo import Store

__all__ = [
    "Configuration",
    "apply_intake",
    "build_connectors",
    "build_escalations",
    "build_review_app",
    "connect",
    "known_names",
    "live_configuration",
    "load_configuration",
    "masked",
    "open_store",
    "load_schedules",
    "read_store",
    "data_dirs_with",
    "default_store",
    "where_else",
    "settings",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Configuration:
    """What CS ops edit, loaded and validated together: the health model, the playbooks
    (workflows/) and the rules (rules/), every playbook a rule starts present."""

    model: HealthModel
    playbooks: Playbooks
    ruleset: RuleSet


def settings(
    data_dir: Path | None = None,
    database_url: str | None = None,
    temporal_address: str | None = None,
) -> Settings:
    """CSAUTO_* variables, overridden by the options a command was given (and the intake's
    time window set from them: `apply_intake`)."""
    given: dict[str, Any] = {}
    if data_dir is not None:
        given["data_dir"] = data_dir
    if database_url is not None:
        given["database_url"] = database_url
    if temporal_address is not None:
        given["temporal_address"] = temporal_address
    built = Settings(**given)
    apply_intake(built)
    return built


def apply_intake(settings: Settings) -> None:
    """The signal intake's time window (facts/canonical.py) from CSAUTO_SIGNAL_EARLIEST and
    CSAUTO_SIGNAL_MAX_AHEAD, for every check in this process."""
    from csautomation.facts.canonical import TimeWindow, set_window

    set_window(TimeWindow(settings.signal_earliest, settings.signal_max_ahead))


def known_names(settings: Settings) -> Known:
    """The names rules and playbooks may use, from the files that define them: connector
    ids (connectors/), severities (escalation_matrix.yaml), person ids (people.yaml). A
    file that is not there is not checked against; one that is broken is an error."""
    from csautomation.connectors.loader import load_connectors
    from csautomation.escalation.matrix import load_matrix
    from csautomation.escalation.people import load_people
    from csautomation.references import Known

    connectors = None
    if settings.connectors_path.exists():
        configs = load_connectors([settings.connectors_path])
        connectors = {cid: str(c.type) for cid, c in configs.items()}
    people = load_people(settings.people_path) if settings.people_path.exists() else None
    severities = None
    if settings.escalation_matrix_path.exists():
        severities = set(load_matrix(settings.escalation_matrix_path, people).severities)
    ids = {p.id for p in people.people} if people else None
    return Known(connectors=connectors, severities=severities, people=ids)


def load_configuration(settings: Settings) -> Configuration:
    from csautomation.facts.health import load_health_model
    from csautomation.live import configuration_problems
    from csautomation.playbooks.loader import load_playbooks
    from csautomation.rules.loader import load_rules

    path = settings.health_model_path
    if path is None and Path("health_model.yaml").exists():
        path = Path("health_model.yaml")
    model = load_health_model(path)
    playbooks = load_playbooks([settings.playbooks_path])
    ruleset = load_rules([settings.rules_path])
    problems = configuration_problems(ruleset, playbooks, known_names(settings))
    if problems:
        raise ConfigFileError(problems)
    return Configuration(model, playbooks, ruleset)


def live_configuration(settings: Settings, config: Configuration) -> LiveConfiguration:
    """The rules and playbooks of `config`, followed as their files change and checked at
    each reload as at start (live.py)."""
    from csautomation.live import LiveConfiguration

    return LiveConfiguration(
        [settings.rules_path],
        [settings.playbooks_path],
        config.ruleset,
        config.playbooks,
        known=known_names(settings),
    )


def load_schedules(settings: Settings, path: Path | None = None) -> Schedules:
    """The schedules of `path` (required to exist), else of CSAUTO_SCHEDULES_PATH (default
    schedules.yaml; the defaults when it is missing)."""
    from csautomation.scheduling.config import load_schedules as load

    return load(path or settings.schedules_path, required=path is not None, pull_options=True)


def open_store(settings: Settings) -> Store:
    """The store, migrated (or refused when its schema is newer than this code)."""
    from csautomation.store.repo import Store

    store = Store(settings.database_url)
    store.create_all()
    return store


def read_store(settings: Settings) -> Store:
    """The store as it is, for a command that only looks: read-only, nothing created or
    migrated. `NoStoreError` when there is none, naming the data folders nearby that have
    one; `SchemaError` when its schema is not the code's (`csauto db upgrade`)."""
    from csautomation.store.repo import Store

    try:
        return Store.existing(settings.database_url)
    except NoStoreError as exc:
        raise NoStoreError(exc.where, where_else(settings)) from exc


def default_store(settings: Settings) -> bool:
    """Whether the store is the data folder's (no database URL was given)."""
    return settings.database_url == f"sqlite:///{settings.data_dir}/csauto.db"


def data_dirs_with(settings: Settings, name: str) -> list[Path]:
    """The data folders that hold the file `name` (csauto.db, temporal.db): .csauto/ and
    the data folder, and the folders directly inside them (the demo's .csauto/demo/)."""
    found: list[Path] = []
    for root in dict.fromkeys([Path(".csauto"), settings.data_dir]):
        with contextlib.suppress(OSError):  # a folder that is not there, or not ours to read
            inside = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            for folder in (root, *inside):
                held = folder / name
                if held.is_file() and held.stat().st_size > 0 and folder not in found:
                    found.append(folder)
    return found


def where_else(settings: Settings, name: str = "csauto.db") -> str:
    """What to say after "no store at ...": the other data folders holding `name`, as the
    option that names them, or how to name one."""
    looked = settings.data_dir / name
    if name == "csauto.db" and not default_store(settings):
        looked = Path(settings.database_url.removeprefix("sqlite:///"))
    folders = [
        f for f in data_dirs_with(settings, name) if (f / name).resolve() != looked.resolve()
    ][:3]
    if folders and name == "csauto.db" and not default_store(settings):
        return (
            "did you mean "
            + " or ".join(f"--database-url sqlite:///{f / name}" for f in folders)
            + "?"
        )
    if folders:
        return "did you mean " + " or ".join(f"--data-dir {f}" for f in folders) + "?"
    return (
        "nothing was created. Name a data folder with --data-dir (CSAUTO_DATA_DIR), or a "
        "database with --database-url (CSAUTO_DATABASE_URL); `csauto dev` and `csauto demo` "
        "make one"
    )


def build_connectors(settings: Settings, store: Store) -> Connectors:
    """The configured connectors (connectors/), each breaker reporting to the store, task
    owners resolved through people.yaml (when there is one)."""
    from csautomation.connectors.loader import build_connectors as build
    from csautomation.connectors.loader import load_connectors
    from csautomation.connectors.resilience import BreakerState
    from csautomation.escalation.people import load_people
    from csautomation.store.deadletters import save_breaker

    configs = load_connectors([settings.connectors_path])
    people = load_people(settings.people_path) if settings.people_path.exists() else None

    def report(state: BreakerState) -> None:
        save_breaker(store, state.connector, state.state, state.failures, state.last_error)

    return build(configs, store, on_change=report, people=people)


def build_escalations(
    settings: Settings, actions: PlaybookActivities, page_url: str = ""
) -> EscalationActivities:
    """The escalation workflow's activities over escalation_matrix.yaml and people.yaml."""
    from csautomation.activities.escalation import EscalationActivities
    from csautomation.escalation.matrix import load_escalation_config

    matrix, people = load_escalation_config(settings.escalation_matrix_path, settings.people_path)
    return EscalationActivities(actions, matrix, people, page_url=page_url)


def build_review_app(
    settings: Settings,
    store: Store,
    client: Client,
    facts: FactsReader | None = None,
    on_stored: Callable[[], None] | None = None,
    rules: Callable[[], RuleSet | None] | None = None,
) -> FastAPI:
    """The manager's review page, its API and the signal intake (sources.yaml) over the
    store and the escalation workflows; the rules pages describe `rules()` (default: the
    rule files as they are at start)."""
    from csautomation.api.actions import TemporalActions
    from csautomation.api.app import create_app
    from csautomation.escalation.people import load_people
    from csautomation.ingest.sources import load_sources

    people = load_people(settings.people_path)
    sources = load_sources(settings.sources_path)
    for name, variable in sources.missing_secrets().items():
        log.warning("source %s refuses every signal until %s is set", name, variable)
    return create_app(
        store,
        people,
        TemporalActions(client),
        facts=facts,
        sources=sources,
        on_stored=on_stored,
        temporal=client,
        rules=rules or _rules_at_start(settings),
        source_files=(settings.schedules_path, settings.sources_path),
    )


def _rules_at_start(settings: Settings) -> Callable[[], RuleSet | None]:
    """The rule files as they load now; when they do not, the rules pages show the rules
    that fired as the store keeps them, and the server still starts."""
    from csautomation.rules.loader import load_rules

    try:
        ruleset: RuleSet | None = load_rules([settings.rules_path])
    except ConfigFileError as exc:
        log.warning("the rules pages show no rule files: %s", exc)
        ruleset = None
    return lambda: ruleset


async def connect(settings: Settings, lazy: bool = False) -> Client:
    """The Temporal client of settings, traced when CSAUTO_OTEL is on."""
    from csautomation.runtime.server import connect as connect_to
    from csautomation.runtime.server import tracing_interceptors

    return await connect_to(
        settings.temporal_address,
        settings.temporal_namespace,
        lazy=lazy,
        interceptors=tracing_interceptors(settings.otel),
    )


def masked(settings: Settings) -> str:
    """The database URL without its password, for a start-up line."""
    from csautomation.store.migrate import masked as mask

    return mask(settings.database_url)
