"""The rules and playbooks a running process serves, followed as CS ops edit them.

Rules and playbooks reload together because each names the other: a rule starts a
playbook by id, so a new pair is swapped in only once both sides load and pass the checks
made at start (`configuration_problems`: every playbook a rule starts is there, every name
resolves, every template renders). Until then the last good pair serves, and a WARNING
says why, once per broken state. New firings start the playbook versions served when they
are dispatched; running workflows keep the definition they were started with (it is in
their input).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from csautomation.config.reload import Watch, version_changes
from csautomation.errors import ConfigFileError, Problem
from csautomation.playbooks.loader import Playbooks, load_playbooks
from csautomation.playbooks.spec import Playbook
from csautomation.references import Known, reference_problems, template_problems
from csautomation.rules.loader import RuleSet, load_rules
from csautomation.rules.runtime import log_rule_changes

__all__ = ["LiveConfiguration", "Served", "configuration_problems"]

log = logging.getLogger(__name__)


def configuration_problems(
    ruleset: RuleSet, playbooks: Mapping[str, Playbook], known: Known | None = None
) -> list[Problem]:
    """What keeps a pair, each side valid alone, from serving: a name that does not resolve
    (a playbook a rule starts; with `known`, connectors, severities and people) and a
    template that does not render for a sample account. At start and at every reload."""
    return reference_problems(ruleset, playbooks, known) + template_problems(ruleset, playbooks)


@dataclass(frozen=True)
class Served:
    """One consistent pair: every playbook the rules start is among the playbooks."""

    ruleset: RuleSet
    playbooks: Playbooks


class LiveConfiguration:
    """The rules under `rule_paths` and the playbooks under `playbook_paths`, reloaded
    when their files change (looked at at most every `reload_interval` seconds), and
    checked against the names of `known` (from files that are not reloaded).

    Thread-safe: `reload_if_changed` may be called from any thread (one reloads, the others
    go on with the pair served), and the pair is swapped in one assignment, so a reader of
    `served` never sees the rules of one version with the playbooks of another.
    """

    def __init__(
        self,
        rule_paths: Sequence[Path],
        playbook_paths: Sequence[Path],
        ruleset: RuleSet,
        playbooks: Playbooks,
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        known: Known | None = None,
    ) -> None:
        self.rule_paths = list(rule_paths)
        self.playbook_paths = list(playbook_paths)
        self.known = known
        self.served = Served(ruleset, playbooks)
        self._watch = Watch(
            [self.rule_paths, self.playbook_paths],
            (ruleset.fingerprint, playbooks.fingerprint),
            reload_interval,
            clock,
        )

    @classmethod
    def load(
        cls,
        rule_paths: Sequence[Path],
        playbook_paths: Sequence[Path],
        reload_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        known: Known | None = None,
    ) -> LiveConfiguration:
        """Load both from their files; raise ConfigFileError when they are not a valid pair."""
        ruleset, playbooks = load_rules(rule_paths), load_playbooks(playbook_paths)
        problems = configuration_problems(ruleset, playbooks, known)
        if problems:
            raise ConfigFileError(problems)
        return cls(rule_paths, playbook_paths, ruleset, playbooks, reload_interval, clock, known)

    @property
    def ruleset(self) -> RuleSet:
        return self.served.ruleset

    @property
    def playbooks(self) -> Playbooks:
        return self.served.playbooks

    @property
    def last_error(self) -> ConfigFileError | None:
        """Why the files as they are now are not served (None when they are)."""
        return self._watch.last_error

    def reload_if_changed(self, force: bool = False) -> bool:
        """Load the side whose files changed (both when forced), check the pair, and swap
        it in; True when a new pair is served."""
        if not self._watch.due(force):
            return False
        with self._watch.look(force) as found:
            if found is None:
                return False
            old = self.served
            try:
                new = self._load(old, found, force)
            except ConfigFileError as exc:
                self._watch.refused(
                    log,
                    exc,
                    "rule or playbook files changed but do not validate; "
                    "the last good rules and playbooks serve",
                )
                return False
            self.served = new
            recovered = self._watch.accepted()
        self._log(old, new, recovered)
        return True

    def _load(self, old: Served, found: tuple[str, ...], force: bool) -> Served:
        rules_seen, playbooks_seen = found
        ruleset = old.ruleset
        if force or rules_seen != ruleset.fingerprint:
            ruleset = load_rules(self.rule_paths)
        playbooks = old.playbooks
        if force or playbooks_seen != playbooks.fingerprint:
            playbooks = load_playbooks(self.playbook_paths)
        problems = configuration_problems(ruleset, playbooks, self.known)
        if problems:
            raise ConfigFileError(problems)
        return Served(ruleset, playbooks)

    @staticmethod
    def _log(old: Served, new: Served, recovered: bool) -> None:
        if new.ruleset is not old.ruleset:
            log_rule_changes(old.ruleset, new.ruleset)
        if new.playbooks is not old.playbooks:
            changes = version_changes(
                {k: p.version for k, p in old.playbooks.items()},
                {k: p.version for k, p in new.playbooks.items()},
            )
            if changes:
                log.info(
                    "reloaded playbooks: %s",
                    ", ".join(changes),
                    extra={"reloaded": "playbooks", "playbooks": len(new.playbooks)},
                )
            else:
                log.info("playbook files reloaded; no playbook changed (%d)", len(new.playbooks))
        if recovered:
            log.info("rule and playbook files validate again; serving them")
