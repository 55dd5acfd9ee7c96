"""bench/bitmask: our own bitmask evaluator, what durable_rules could be replaced by.

A measured ceiling peer, not the product's engine (durable_rules is: rules/engine.py); its
matches are checked against the fused reference on every bench run.

Each rule becomes bits in a Python int. A condition is split into the parts that read one
fact each (a comparison, or any all/any/not tree over one fact) and the parts that read
several. For one fact, the truth of all its one-fact parts is constant between two
consecutive constants the rules compare it with, and at each constant. So each fact's
answers are computed once, when the rules are loaded, for every interval and constant
(plus "missing"), by evaluating the parts with `explain.leaf_holds` on a representative
value: the meaning is the reference's by construction. Evaluating a record is then, per fact,
one lookup (bisect for numbers, a dictionary for strings and booleans) and one AND of the
masks; a rule matches when its bit survives, and its several-fact remainder then runs as a
small closure tree over the same bits. Nearly flat in the number of rules, where
durable_rules pays per assert and per ruleset (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from csautomation.rules.explain import leaf_holds
from csautomation.rules.ir import And, CompiledRule, Leaf, Node, Not, Or, leaves

MEMO_LIMIT = 4096  # distinct strings remembered per fact; past it, answers are recomputed

Remainder = Callable[[int], bool]


def truth(node: Node, value: Any) -> bool:
    """A one-fact tree's truth for one value of its fact, with explain's meaning."""
    if isinstance(node, Leaf):
        return leaf_holds(node.op, value, node.value)
    if isinstance(node, Not):
        return not truth(node.item, value)
    if isinstance(node, And):
        return all(truth(i, value) for i in node.items)
    return any(truth(i, value) for i in node.items)


def _one_fact(node: Node) -> str | None:
    """The fact a tree reads, when it reads only one."""
    keys = {leaf.key for leaf in leaves(node)}
    return keys.pop() if len(keys) == 1 else None


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, And):
        return [part for item in node.items for part in _conjuncts(item)]
    return [node]


class _Fact:
    """Every one-fact part over one fact, as (bit, tree), and its answers per value."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.parts: list[tuple[int, Node]] = []

    def build(self, full: int) -> None:
        own = 0
        for bit, _ in self.parts:
            own |= bit
        self.base = full & ~own  # bits of parts on other facts stay set
        self.none = self.answer(None)
        self.memo: dict[Any, int] = {}
        self.bounds, self.masks = self._numbers()

    def answer(self, value: Any) -> int:
        mask = self.base
        for bit, node in self.parts:
            if truth(node, value):
                mask |= bit
        return mask

    def _numbers(self) -> tuple[list[int | float], list[int]]:
        """Answers for numbers: masks[i + j] for bisect_left i and bisect_right j, i.e.
        index 2k for the open interval below bounds[k] and 2k+1 for bounds[k] itself."""
        bounds = sorted(
            {
                c
                for _, node in self.parts
                for leaf in leaves(node)
                for c in (leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))
                if type(c) in (int, float) and not math.isnan(c)
            }
        )
        reps: list[float] = [-math.inf]
        for low, high in zip(bounds, bounds[1:], strict=False):
            reps += [low, low + (high - low) / 2]
        reps += [bounds[-1], math.inf] if bounds else []
        try:
            return bounds, [self.answer(rep) for rep in reps]
        except TypeError:  # a part cannot read a number (contains, or < "text"): no table
            return bounds, []


def _remainder(node: Node, facts: dict[str, _Fact], next_bit: Callable[[], int]) -> Remainder:
    """A test of the accumulated bits for a several-fact tree. Its one-fact subtrees get
    bits of their own, and an all/any over such subtrees is one mask test, not a call per
    item: `any` of two facts (the shipped shape) costs one AND."""
    if isinstance(node, Not):
        inner = _remainder(node.item, facts, next_bit)
        return lambda acc: not inner(acc)
    assert isinstance(node, And | Or)
    mask = 0
    nested: list[Remainder] = []
    for item in node.items:
        key = _one_fact(item)
        if key is None:
            nested.append(_remainder(item, facts, next_bit))
        else:
            bit = next_bit()
            facts.setdefault(key, _Fact(key)).parts.append((bit, item))
            mask |= bit
    if isinstance(node, And):
        if not nested:
            return lambda acc: acc & mask == mask
        return lambda acc: acc & mask == mask and all(f(acc) for f in nested)
    if not nested:
        return lambda acc: acc & mask != 0
    return lambda acc: acc & mask != 0 or any(f(acc) for f in nested)


class BitmaskEvaluator:
    """Finds every rule whose condition holds for one record of facts. Safe to share
    between threads: it keeps no state but a cache of answers for strings."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules = tuple(rules)
        self.rule_ids = tuple(r.id for r in self.rules)
        count = len(self.rules)
        bits = iter(range(count, 1 << 62))
        facts: dict[str, _Fact] = {}
        rests: list[Remainder | None] = []
        for i, rule in enumerate(self.rules):
            several: list[Node] = []
            by_fact: dict[str, list[Node]] = {}
            for part in _conjuncts(rule.condition):
                key = _one_fact(part)
                if key is None:
                    several.append(part)
                else:
                    by_fact.setdefault(key, []).append(part)
            for key, parts in by_fact.items():
                node = parts[0] if len(parts) == 1 else And(tuple(parts))
                facts.setdefault(key, _Fact(key)).parts.append((1 << i, node))
            rest = None
            if several:
                tree = several[0] if len(several) == 1 else And(tuple(several))
                rest = _remainder(tree, facts, lambda: 1 << next(bits))
            rests.append(rest)
        width = next(bits)
        full = (1 << width) - 1
        for fact in facts.values():
            fact.build(full)
        self._full = full
        self._rule_bits = (1 << count) - 1
        self._rests = rests
        # plain tuples: attribute reads are a measurable share of a pass
        self._table = [(f.key, f.none, f.bounds, f.masks, f) for f in facts.values()]

    def matching(self, record: Mapping[str, Any]) -> list[str]:
        """Rule ids whose conditions hold, each once, in the order the rules were given;
        `record` maps fact keys to normalised values."""
        ids = self.rule_ids
        return [ids[i] for i in self._hits(record, self._rule_bits)]

    def _hits(self, record: Mapping[str, Any], among: int) -> list[int]:
        get = record.get
        acc = self._full
        for key, none, bounds, masks, fact in self._table:
            value = get(key)
            if value is None:
                acc &= none
                continue
            kind = type(value)
            if masks and (kind is int or (kind is float and value == value)):
                acc &= masks[bisect_left(bounds, value) + bisect_right(bounds, value)]
            elif kind is str or kind is bool:
                mask = fact.memo.get(value)
                if mask is None:
                    mask = fact.answer(value)
                    if len(fact.memo) < MEMO_LIMIT:
                        fact.memo[value] = mask
                acc &= mask
            else:  # lists, and numbers a fact's parts cannot table
                acc &= fact.answer(value)
        hits = acc & among & self._rule_bits
        out: list[int] = []
        rests = self._rests
        while hits:
            low = hits & -hits
            hits ^= low
            i = low.bit_length() - 1
            rest = rests[i]
            if rest is None or rest(acc):
                out.append(i)
        return out
