"""durable_rules, driven at its C level: a second streaming evaluator, kept as a peer and a
cross-check of `matcher.StreamingEvaluator` (which the runtime uses: docs/rules-engine.md).

How durable_rules is driven (see ../shared/RULE_ENGINES.md for the measurements):
  * Each evaluation asserts the account's facts as one *fact* (not an event: events are
    consumed by the first matching rule, facts fire every matching rule), drains every
    action, then retracts the fact. So every rule that matches fires; one whose condition
    holds an `any` fires once per branch that holds (durable_rules splits `$or` into
    rules of its own), so the names are de-duplicated before they are returned.
  * Each fact carries a fresh id: durable_rules de-duplicates facts by content.
  * Rulesets hold at most `CHUNK` rules: larger ones overflow a fixed stack in its C rule
    network and silently lose matches.
  * Actions are never callbacks: we read the action queue and record rule names. A rule
    whose condition can match durable_rules' own state object (`$nex` alone) is filtered
    by fact id.
  * One lock per evaluator: the C extension is not safe for concurrent asserts on a session.
  * Reload builds new rulesets under a new generation name, swaps, then deletes the old.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable
from typing import Any

import durable_rules_engine as _dr

from csautomation.errors import RuleEngineError
from csautomation.rules.compile import ruleset_definition
from csautomation.rules.ir import CompiledRule, fact_keys

CHUNK = 40
_generation = itertools.count()


def encode(value: Any) -> str:
    """JSON for durable_rules' parser, which rejects exponents (1e-06)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return format(value, ".6f") if "e" in text else text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    raise TypeError(f"cannot encode {type(value).__name__} for durable_rules")


class _Chunk:
    def __init__(self, name: str, rules: list[CompiledRule], columns: dict[str, str]) -> None:
        self.rule_ids = [r.id for r in rules]
        self.rank = {rule_id: i for i, rule_id in enumerate(self.rule_ids)}
        definition = encode(ruleset_definition(rules, columns))
        try:
            self.handle = _dr.create_ruleset(name, definition)
        except _dr.error as exc:
            raise RuleEngineError(_refusal(name, rules, columns, exc)) from exc


def _refusal(name: str, rules: list[CompiledRule], columns: dict[str, str], exc: Exception) -> str:
    """Why durable_rules refused a ruleset, naming the rules it refuses on their own."""
    refused = []
    for rule in rules:
        try:
            handle = _dr.create_ruleset(
                f"{name}_probe", encode(ruleset_definition([rule], columns))
            )
        except _dr.error:
            refused.append(rule.id)
        else:
            _dr.delete_ruleset(handle)
    if "113" in str(exc) and refused:  # ERR_EXPRESSION_LIMIT_EXCEEDED
        return (
            f"rule {', '.join(refused)}: its condition is too complex for the rule engine "
            "(its negations expand past durable_rules' expression limit); split it into "
            "simpler rules or write the negated parts directly"
        )
    named = f" (rules {', '.join(refused)})" if refused else ""
    return f"durable_rules refused ruleset {name}{named}: {exc}"


class DurableRulesEvaluator:
    """Finds every rule whose condition holds for one record of facts."""

    def __init__(self, rules: Iterable[CompiledRule], chunk: int = CHUNK) -> None:
        rules = list(rules)
        gen = next(_generation)
        self._lock = threading.Lock()
        self._ids = itertools.count()
        keys = list(dict.fromkeys(k for r in rules for k in fact_keys(r.condition)))
        columns = {k: f"f{i}" for i, k in enumerate(keys)}
        self._fields = [(k, f',"{col}":') for k, col in columns.items()]
        self._chunks = [
            _Chunk(f"csauto_g{gen}_c{i}", rules[start : start + chunk], columns)
            for i, start in enumerate(range(0, len(rules), chunk))
        ]

    def matching(self, record: dict[str, Any]) -> list[str]:
        """Rule ids whose conditions hold, each once, in the order the rules were given;
        `record` maps fact keys to normalised values."""
        out: list[str] = []
        with self._lock:
            # One body for every chunk: ids only need to be unique within a ruleset.
            fid = next(self._ids)
            head = f'{{"sid":"0","id":"{fid}"'
            parts = [head]
            for key, prefix in self._fields:
                value = record.get(key)
                if value is not None:
                    parts.append(prefix + _ENCODERS.get(type(value), encode)(value))
            parts.append("}")
            body = "".join(parts)
            marker = f'"id":"{fid}"'
            for chunk in self._chunks:
                names = self._run(chunk.handle, body, head + "}", marker)
                if names:
                    out.extend(sorted(set(names), key=chunk.rank.__getitem__))
        return out

    @staticmethod
    def _run(handle: int, body: str, key: str, marker: str) -> list[str]:
        try:
            result = _dr.assert_fact(handle, body)
            names: list[str] = []
            if result[0] == 0:
                state = result[1]
                action = _dr.start_action_for_state(handle, state)
                message = action[1] if action else None
                while message:
                    if marker in message:
                        names.append(message[2 : message.index('"', 2)])
                    message = _dr.complete_and_start_action(handle, state)
            elif result[0] != 1:  # 1 is "no rule matched"
                raise RuleEngineError(f"durable_rules returned code {result[0]} for a fact")
            # Retracting by sid and id is enough (facts are keyed by id), and parses faster.
            _dr.retract_fact(handle, key)
        except _dr.error as exc:
            raise RuleEngineError(f"durable_rules failed on a fact: {exc}") from exc
        return names

    def pending_facts(self) -> int:
        """Facts left in the engine's session (always 0 between evaluations)."""
        with self._lock:
            facts = [f for c in self._chunks for f in json.loads(_dr.get_facts(c.handle, "0"))]
        return sum(1 for f in facts if "$s" not in f)  # "$s" is durable_rules' own state

    def close(self) -> None:
        with self._lock:
            for chunk in self._chunks:
                _dr.delete_ruleset(chunk.handle)
            self._chunks = []


_ENCODERS: dict[type, Any] = {
    int: str,
    str: lambda v: json.dumps(v, ensure_ascii=False),
    float: encode,
    bool: encode,
}
