"""Vectorised evaluation over columns: scheduled sweeps and backtests.

Compiled from the same condition trees as the streaming path, with the same meaning:
numbers are float64 with NaN for missing; strings are dictionary codes with -1 for
missing; booleans are float64 1/0/NaN; lists stay Python tuples (only `contains` reads them,
once per distinct constant). Identical leaves across rules are computed once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from csautomation.facts.catalog import FactType
from csautomation.facts.derived import norm
from csautomation.rules.ir import And, CompiledRule, Leaf, Node, Not, Or, fact_keys, fact_type

BoolArray = npt.NDArray[np.bool_]


@dataclass
class Columns:
    """A batch of records, one array per fact key."""

    size: int
    numbers: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    strings: dict[str, tuple[npt.NDArray[np.int32], dict[str, int]]] = field(default_factory=dict)
    lists: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], keys: Iterable[str]) -> Columns:
        """Columns for `keys`, each value normalised as `norm` does (vectorised for
        numbers: norm per value was most of a batch's cost)."""
        cols = cls(len(records))
        for key in keys:
            kind = fact_type(key)
            if kind in (FactType.number, FactType.boolean):
                cols.numbers[key] = _numbers(records, key)
                continue
            values = list(map(dict.get, records, repeat(key)))
            if kind == FactType.string:
                cols.strings[key] = _codes(values)
            else:
                cols.add(key, [norm(v) for v in values])
        return cols

    def add(self, key: str, values: Sequence[Any] | npt.NDArray[Any]) -> None:
        kind = fact_type(key)
        if kind in (FactType.number, FactType.boolean):
            if isinstance(values, np.ndarray) and values.dtype.kind == "f":
                self.numbers[key] = values.astype(np.float64, copy=False)
            else:
                self.numbers[key] = np.array(
                    [np.nan if v is None else float(v) for v in values], dtype=np.float64
                )
        elif kind == FactType.string:
            if isinstance(values, tuple) and len(values) == 2 and isinstance(values[1], dict):
                self.strings[key] = values  # already (codes, dictionary)
                return
            self.strings[key] = _codes(values)
        else:
            self.lists[key] = [tuple(v) if v else None for v in values]


def _codes(
    values: Sequence[Any] | npt.NDArray[Any],
) -> tuple[npt.NDArray[np.int32], dict[str, int]]:
    """Dictionary codes, in first-seen order, -1 for missing. Each distinct value is
    normalised once and the codes are looked up in C: a generator per value cost twice."""
    dictionary: dict[Any, int] = {}
    lookup: dict[Any, int] = {None: -1}
    for raw in dict.fromkeys(values):
        value = raw if raw is None or type(raw) is str else norm(raw)
        lookup[raw] = -1 if value is None else dictionary.setdefault(value, len(dictionary))
    codes = np.fromiter(map(lookup.__getitem__, values), dtype=np.int32, count=len(values))
    return codes, dictionary


EXACT = 1e9  # below it, a float equal to numpy's rounding to 6 decimals is norm's too


def _numbers(records: Sequence[dict[str, Any]], key: str) -> npt.NDArray[np.float64]:
    """A number (or boolean) column, as `norm` then float() per value would give it.

    Read straight into the array (a missing key reads as NaN, a boolean as 1.0 or 0.0);
    a None, text or list in the column takes the slower path through a list. numpy's
    rounding (scale, rint, unscale) can differ from Python's correctly rounded
    `round(v, 6)`; where it leaves a value unchanged and the value is below EXACT, the
    value is within half an ulp of a 6-decimal number and Python agrees. Values it would
    change (not yet normalised) and large ones go through norm itself.
    """
    n = len(records)
    try:
        x = np.fromiter(
            map(dict.get, records, repeat(key), repeat(np.nan)), dtype=np.float64, count=n
        )
    except (TypeError, ValueError):
        x = _numbers_from(list(map(dict.get, records, repeat(key))))
    with np.errstate(invalid="ignore", over="ignore"):
        x[np.isinf(x)] = np.nan  # norm makes infinities missing
        rounded = np.round(x, 6)
        suspect = ~((rounded == x) | np.isnan(x)) | (np.abs(x) >= EXACT)
    for i in np.flatnonzero(suspect).tolist():
        x[i] = _float(norm(records[i].get(key)))
    return x


def _numbers_from(values: list[Any]) -> npt.NDArray[np.float64]:
    try:
        x = np.array(values, dtype=np.float64)  # None becomes NaN
    except (TypeError, ValueError):
        x = np.empty(0)
    if x.shape != (len(values),):  # not all numbers: norm and float() say what is wrong
        x = np.array([_float(norm(v)) for v in values], dtype=np.float64)
    return x


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


class BatchEvaluator:
    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules = list(rules)
        self.keys = list(dict.fromkeys(k for r in self.rules for k in fact_keys(r.condition)))

    def evaluate(self, cols: Columns) -> dict[str, BoolArray]:
        """rule id -> boolean mask over the batch."""
        cache: dict[Leaf, BoolArray] = {}
        return {r.id: self._node(r.condition, cols, cache) for r in self.rules}

    def _node(self, node: Node, cols: Columns, cache: dict[Leaf, BoolArray]) -> BoolArray:
        if isinstance(node, Leaf):
            hit = cache.get(node)
            if hit is None:
                hit = cache[node] = _leaf(node, cols)
            return hit
        if isinstance(node, Not):
            return ~self._node(node.item, cols, cache)
        parts = [self._node(i, cols, cache) for i in node.items]
        out = parts[0].copy()
        for p in parts[1:]:
            if isinstance(node, And):
                out &= p
            else:
                assert isinstance(node, Or)
                out |= p
        return out


def _leaf(leaf: Leaf, cols: Columns) -> BoolArray:
    op, value = leaf.op, leaf.value
    if leaf.key in cols.strings:
        codes, dictionary = cols.strings[leaf.key]
        present = codes >= 0
        if op == "exists":
            return present
        wanted = [
            dictionary[v]
            for v in (value if op in ("in", "not_in") else (value,))
            if v in dictionary
        ]
        hit = np.isin(codes, wanted) if wanted else np.zeros(cols.size, dtype=bool)
        return hit if op in ("eq", "in") else (~hit & present)
    if leaf.key in cols.lists:
        items = cols.lists[leaf.key]
        if op == "exists":
            return np.fromiter((v is not None for v in items), dtype=bool, count=cols.size)
        return np.fromiter(
            (v is not None and value in v for v in items), dtype=bool, count=cols.size
        )
    x = cols.numbers.get(leaf.key)
    if x is None:  # no column: every record lacks the fact
        return np.zeros(cols.size, dtype=bool)
    if op == "exists":
        return ~np.isnan(x)
    if op == "between":
        return np.asarray((x >= value[0]) & (x <= value[1]), dtype=bool)
    if op in ("in", "not_in"):
        hit = np.isin(x, np.array(value, dtype=np.float64))
        return hit if op == "in" else ~hit & ~np.isnan(x)
    v = float(value)  # booleans are stored as 1.0 / 0.0
    if op == "lt":
        return x < v
    if op == "lte":
        return x <= v
    if op == "gt":
        return x > v
    if op == "gte":
        return x >= v
    if op == "eq":
        return np.equal(x, v)
    if op == "ne":
        return np.not_equal(x, v) & ~np.isnan(x)
    raise ValueError(f"unknown operator {op}")
