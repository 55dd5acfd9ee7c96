"""How the playbook a run executed differs from the one the files hold now, in the
playbook's words: steps added, removed and reordered, and each changed field with its value
before and after ("step 'outreach' (create_task): subject was '...', now '...'").

Both sides are compared as plain data, every field present except the unset ones, so a
field left at its default on both sides is equal, and one set to its default on one side
only shows as changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from csautomation.playbooks.spec import Playbook, Step

__all__ = [
    "Difference",
    "canonical",
    "changed_leaves",
    "playbook_differences",
    "show",
    "step_kinds",
    "version_of",
]


@dataclass(frozen=True)
class Difference:
    """One reason a replay is not "same", in the playbook's words; `detail` holds the
    SDK's own message for a divergence."""

    kind: str  # step_added, step_removed, step_changed, steps_reordered, playbook_changed,
    # playbook_removed, input, activity, nondeterministic, fails
    message: str
    step_id: str = ""
    step_kind: str = ""
    field: str = ""
    before: Any = None
    after: Any = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical(playbook: Playbook | Mapping[str, Any]) -> dict[str, Any]:
    """A playbook as plain data (the language's own dump when it still validates, so that
    a recorded dump and a file compare field by field)."""
    if not isinstance(playbook, Playbook):
        try:
            playbook = Playbook.model_validate(dict(playbook))
        except ValidationError:  # recorded by an older language: compare what was recorded
            return dict(_unset_dropped(dict(playbook)))
    return playbook.model_dump(mode="json", by_alias=True, exclude_none=True)


def version_of(recorded: Mapping[str, Any]) -> str:
    """A recorded definition's version as computed today; "" when it no longer validates."""
    try:
        return Playbook.model_validate(dict(recorded)).version
    except ValidationError:
        return ""


def step_kinds(playbook: Mapping[str, Any]) -> dict[str, str]:
    """Each step's id and kind, from a canonical playbook."""
    return {str(s.get("id")): _kind(s) for s in _steps(playbook)}


def playbook_differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Difference]:
    """Step by step, what changed from `before` (the run's) to `after` (the file's)."""
    old = {str(s.get("id")): s for s in _steps(before)}
    new = {str(s.get("id")): s for s in _steps(after)}
    order = [str(s.get("id")) for s in _steps(after)]
    out = [
        _field_change("playbook_changed", "playbook", "", "", path, was, now)
        for path, was, now in changed_leaves(_without(before, "steps"), _without(after, "steps"))
    ]
    for step_id, step in old.items():
        if step_id not in new:
            out.append(
                Difference(
                    "step_removed",
                    f"step '{step_id}' ({_kind(step)}) removed",
                    step_id,
                    _kind(step),
                    before=step,
                )
            )
    for i, step_id in enumerate(order):
        step = new[step_id]
        if step_id in old:
            out += _step_changes(step_id, old[step_id], step)
            continue
        where = f"after '{order[i - 1]}'" if i else "as the first step"
        out.append(
            Difference(
                "step_added",
                f"step '{step_id}' ({_kind(step)}) added, {where}",
                step_id,
                _kind(step),
                after=step,
            )
        )
    kept_before = [i for i in old if i in new]
    kept_after = [i for i in order if i in old]
    if kept_before != kept_after:
        out.append(
            Difference(
                "steps_reordered",
                f"steps reordered: were {', '.join(kept_before)}; now {', '.join(kept_after)}",
                before=kept_before,
                after=kept_after,
            )
        )
    return out


def _step_changes(step_id: str, was: Mapping[str, Any], now: Mapping[str, Any]) -> list[Difference]:
    kind, old_kind = _kind(now), _kind(was)
    if kind != old_kind:
        return [
            Difference(
                "step_changed",
                f"step '{step_id}' ({kind}): was a {old_kind} step",
                step_id,
                kind,
                "kind",
                dict(was),
                dict(now),
            )
        ]
    where = f"step '{step_id}' ({kind})"
    return [
        _field_change("step_changed", where, step_id, kind, _field(path, kind), before, after)
        for path, before, after in changed_leaves(_without(was, "id"), _without(now, "id"))
    ]


def _field_change(
    kind: str, where: str, step_id: str, step_kind: str, path: str, before: Any, after: Any
) -> Difference:
    message = f"{where}: {path} was {show(before)}, now {show(after)}"
    return Difference(kind, message, step_id, step_kind, path, before, after)


def changed_leaves(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Each value that differs: its dotted path, its value before and after (None: unset).
    A part present on one side only is one difference, not one per leaf under it."""
    if not (isinstance(before, Mapping) and isinstance(after, Mapping) and before and after):
        return [] if before == after else [(prefix, before, after)]
    out: list[tuple[str, Any, Any]] = []
    for key in [*before, *(k for k in after if k not in before)]:
        path = f"{prefix}.{key}" if prefix else str(key)
        if key in before and key in after:
            out += changed_leaves(before[key], after[key], path)
        elif before.get(key) != after.get(key):
            out.append((path, before.get(key), after.get(key)))
    return out


def _field(path: str, kind: str) -> str:
    """A step field's name as the file spells it under the step's kind."""
    return path.removeprefix(f"{kind}.")


def _steps(playbook: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    steps = playbook.get("steps")
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []


def _kind(step: Mapping[str, Any]) -> str:
    known = Step.model_fields.keys() - {"id", "on_failure"}
    return next((k for k in step if k in known and step[k] is not None), "?")


def _without(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _unset_dropped(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unset_dropped(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_unset_dropped(v) for v in value]
    return value


def show(value: Any, limit: int = 120) -> str:
    """A value as the message shows it: text in quotes, unset as such, others as JSON."""
    if value is None:
        return "unset"
    text = repr(value) if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
