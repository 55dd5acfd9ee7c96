"""Streaming evaluation on durable_rules, driven at its C level (docs/rules-engine.md).

How durable_rules is driven (see ../shared/RULE_ENGINES.md for the measurements):
  * Each evaluation asserts the account's facts as one *fact* (not an event: events are
    consumed by the first matching rule, facts fire every matching rule), drains every
    action, then retracts the fact. So every rule that matches fires; one whose condition
    holds an `any` fires once per branch that holds (durable_rules splits `$or` into
    rules of its own), so the names are de-duplicated before they are returned.
  * Each fact carries a fresh id: durable_rules de-duplicates facts by content.
  * `matching_many` asserts up to `BATCH` facts in one call (a JSON array), reads each
    rule's matches from one action (its `cap`) and attributes them by fact id, then
    retracts them in one call: the C work per fact is the same, the calls and the Python
    around them are per batch.
  * Rulesets hold at most `CHUNK` rules: larger ones overflow a fixed stack in its C rule
    network and lose matches. Rules are chunked by a caller's group (the runtime's: the
    signal types that wake them), so an evaluation asserts only into the rulesets that
    hold a rule it asks about.
  * Actions are never callbacks: we read the action queue and record rule names. A rule
    whose condition can match durable_rules' own state object (`$nex` alone) is filtered
    by fact id.
  * One lock per evaluator: the C extension is not safe for concurrent asserts on a session.
  * Reload builds new rulesets under a new generation name, swaps, then deletes the old.
"""

from __future__ import annotations

import itertools
import json
import json.encoder
import re
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import durable_rules_engine as _dr

from csautomation.errors import RuleEngineError
from csautomation.rules.compile import ruleset_definition
from csautomation.rules.explain import explain
from csautomation.rules.ir import CompiledRule, fact_keys

CHUNK = 100  # the most per ruleset measured to lose no fact (../shared/RULE_ENGINES.md)
BATCH = 250  # facts asserted in one call by `matching_many`, and so each rule's `cap`
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
    def __init__(
        self, name: str, rules: list[CompiledRule], columns: dict[str, str], span: list[int]
    ) -> None:
        self.index = {r.id: i for r, i in zip(rules, span, strict=True)}  # name -> position
        self.mask = sum(1 << i for i in span)
        rulesets = ruleset_definition(rules, columns)
        for rule in rulesets.values():  # an action holds up to BATCH matches of its rule
            rule["cap"] = BATCH
        definition = encode(rulesets)
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


class StreamingEvaluator:
    """Finds every rule whose condition holds for one record of facts."""

    def __init__(
        self,
        rules: Iterable[CompiledRule],
        chunk: int = CHUNK,
        group: Callable[[CompiledRule], Hashable] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.rule_ids = tuple(r.id for r in self.rules)
        gen = next(_generation)
        self._lock = threading.Lock()
        self._next = 0  # the next fact id
        keys = list(dict.fromkeys(k for r in self.rules for k in fact_keys(r.condition)))
        columns = {k: f"f{i}" for i, k in enumerate(keys)}
        self._columns = list(columns.items())
        groups: dict[Hashable, list[int]] = {}
        for i, rule in enumerate(self.rules):
            groups.setdefault(None if group is None else group(rule), []).append(i)
        spans = [g[s : s + chunk] for g in groups.values() for s in range(0, len(g), chunk)]
        self._chunks = [
            _Chunk(f"csauto_g{gen}_c{n}", [self.rules[i] for i in span], columns, span)
            for n, span in enumerate(spans)
        ]
        # a rule that holds with every fact missing (`$nex` alone) also matches the
        # session's state object, which carries none of our columns
        self._state_matches = any(explain(r, {}).matched for r in self.rules)
        # chunks of one group keep the given order, so with one group so do the answers
        self._ordered = len(groups) <= 1
        self._all = (1 << len(self.rules)) - 1

    def matching(self, record: Mapping[str, Any]) -> list[str]:
        """Rule ids whose conditions hold, each once, in the order the rules were given;
        `record` maps fact keys to normalised values."""
        ids = self.rule_ids
        return [ids[i] for i in self._hits(record, self._all)]

    def matched(self, record: Mapping[str, Any], among: int) -> list[CompiledRule]:
        """The rules among `among` (bits from `mask()`) whose conditions hold, in the order
        the rules were given; rulesets holding none of them are not asked."""
        rules = self.rules
        return [rules[i] for i in self._hits(record, among)]

    def mask(self, rule_ids: Iterable[str]) -> int:
        """The bits of these rules, for `matched`."""
        wanted = set(rule_ids)
        return sum(1 << i for i, rule_id in enumerate(self.rule_ids) if rule_id in wanted)

    def matching_many(self, records: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        """`matching` for each record, asserted into durable_rules many at a time."""
        ids = self.rule_ids
        hits = self._hits_many(records, [self._all] * len(records))
        return [[ids[i] for i in found] for found in hits]

    def matched_many(
        self, records: Sequence[Mapping[str, Any]], among: Sequence[int]
    ) -> list[list[CompiledRule]]:
        """`matched` for each record with its own `among`, asserted many at a time."""
        rules = self.rules
        return [[rules[i] for i in found] for found in self._hits_many(records, among)]

    def _hits(self, record: Mapping[str, Any], among: int) -> list[int]:
        chunks = self._chunks if among == self._all else [c for c in self._chunks if c.mask & among]
        if not chunks:
            return []
        out: list[int] = []
        get = record.get
        with self._lock:
            fid = self._next
            self._next += 1
            # One body for every chunk (ids only need to be unique within a ruleset), in
            # one call to json's C encoder; no sid: durable_rules' default session ("0")
            fact = {c: v for k, c in self._columns if (v := get(k)) is not None}
            fact["id"] = fid
            body = _body(fact)
            key = f'{{"id":{fid}}}'
            # its last key: a whole number, then the fact's end; only asked for when a rule
            # can match durable_rules' own state object
            marker = f'"id":{fid}}}' if self._state_matches else ""
            for chunk in chunks:
                handle = chunk.handle
                try:
                    code, state = _dr.assert_fact(handle, body)
                    names: list[str] = []
                    if code == 0:
                        action = _dr.start_action_for_state(handle, state)
                        message = action[1] if action else None
                        while message:
                            if marker in message:
                                names.append(message[2 : message.index('"', 2)])
                            message = _dr.complete_and_start_action(handle, state)
                    elif code != 1:  # 1 is "no rule matched"
                        raise RuleEngineError(f"durable_rules returned code {code} for a fact")
                    # Retracting by id is enough (facts are keyed by id), and parses faster.
                    _dr.retract_fact(handle, key)
                except _dr.error as exc:
                    raise RuleEngineError(f"durable_rules failed on a fact: {exc}") from exc
                if not names:
                    continue
                index = chunk.index
                if len(names) == 1:
                    hits = [index[names[0]]]
                else:
                    hits = sorted({index[name] for name in names})  # `any`: once per branch
                if among & chunk.mask != chunk.mask:
                    hits = [i for i in hits if among >> i & 1]
                out.extend(hits)
        if not self._ordered:
            out.sort()
        return out

    def _hits_many(
        self, records: Sequence[Mapping[str, Any]], among: Sequence[int]
    ) -> list[list[int]]:
        found: list[list[int]] = [[] for _ in records]
        cols = self._columns
        with self._lock:
            for start in range(0, len(records), BATCH):
                base = self._next
                part = records[start : start + BATCH]
                self._next += len(part)
                facts = [{c: v for k, c in cols if (v := rec.get(k)) is not None} for rec in part]
                for n, fact in enumerate(facts):
                    fact["id"] = base + n
                wants = among[start : start + BATCH]
                body = keys = ""  # of every fact of the part, made once
                for chunk in self._chunks:
                    mask = chunk.mask
                    chosen = [n for n, a in enumerate(wants) if a & mask]
                    if len(chosen) == len(facts):
                        body = body or _body(facts)
                        keys = keys or _keys(base, range(len(facts)))
                        self._run_many(chunk, body, keys, found, start - base, None)
                    elif chosen:
                        self._run_many(
                            chunk,
                            _body([facts[n] for n in chosen]),
                            _keys(base, chosen),
                            found,
                            start - base,
                            None if all(wants[n] & mask == mask for n in chosen) else among,
                        )
        # ascending within a ruleset, except a rule whose `any` held on several branches
        for n, hits in enumerate(found):
            if len(hits) > 1 and not all(a < b for a, b in itertools.pairwise(hits)):
                found[n] = sorted(set(hits))
        return found

    @staticmethod
    def _run_many(
        chunk: _Chunk,
        body: str,
        keys: str,
        found: list[list[int]],
        offset: int,
        among: Sequence[int] | None,
    ) -> None:
        """Adds each match of the facts in `body` (a JSON array) to `found`, at its fact id
        plus `offset`; each action holds one rule's matches, up to `BATCH` of them (its
        `cap`). With `among`, only the rules among each record's."""
        handle, index, size = chunk.handle, chunk.index, len(found)
        try:
            try:
                # its code is 1 ("no rule matched") when any fact matched nothing, so the
                # actions are read whatever it is
                state = _dr.assert_facts(handle, body)[1]
                action = _dr.start_action_for_state(handle, state)
                message = action[1] if action else None
                while message:
                    i = index[message[2 : message.index('"', 2)]]
                    for fid in _IDS.findall(message):
                        n = int(fid) + offset
                        if 0 <= n < size and (among is None or among[n] >> i & 1):
                            found[n].append(i)
                    message = _dr.complete_and_start_action(handle, state)
            finally:  # a fact that failed leaves the others asserted before it
                _dr.retract_facts(handle, keys)
        except _dr.error as exc:
            raise RuleEngineError(f"durable_rules failed on a batch of facts: {exc}") from exc

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


def _c_dumps() -> Callable[[dict[str, Any]], str]:
    """json's C encoder made once: `json.dumps` makes one per call, a third of its time."""
    make = getattr(json.encoder, "c_make_encoder", None)  # not in the typing stubs
    if make is None:  # a Python built without _json
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    # allow_nan False: NaN and infinities raise, and `encode` writes them
    chunks = make(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return lambda fact: "".join(chunks(fact, 0))


def _refuse(value: Any) -> Any:
    raise TypeError(f"cannot encode {type(value).__name__} for durable_rules")


_dumps = _c_dumps()
_IDS = re.compile(r'"id":(\d+)}')  # the fact ids in an action (strings escape their quotes)


def _keys(base: int, numbers: Iterable[int]) -> str:
    """The facts `base + n` as durable_rules' retract_facts reads them."""
    return "[" + ",".join([f'{{"id":{base + n}}}' for n in numbers]) + "]"


def _body(facts: Any) -> str:
    """JSON for durable_rules in one call to json's C encoder; the rare body it writes as
    durable_rules cannot read (an exponent) is written again by `encode`."""
    try:
        body = _dumps(facts)
    except ValueError:  # NaN or an infinity
        return encode(facts)
    if "e-" in body or "e+" in body:
        return encode(facts)  # its exponents, or a text that looks like one
    return body
