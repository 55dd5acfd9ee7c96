"""bench/rules: the shipped rule shapes scaled to R rules against N account records.

Measures records/s and rule checks/s for csautomation's streaming path (durable_rules:
`engine.StreamingEvaluator.matching`, one record at a time, and `matching_many`, a pipeline
pass's 500 records a call), the rule layer the product calls (`RuleRuntime.evaluate_record`
and, as the pipeline calls it, `evaluate_records`: triggers, match objects, explanations on
demand) and the batch path (numpy over columns, with and without building the columns),
and in the same run the same rules and records through the peers in bench/rule_peers.py:
zen-engine in two layouts, our own bitmask evaluator (bench/bitmask.py: what durable_rules
could be replaced by) and a plain-Python fused function (the per-record ceiling). Every
engine must find the same matches. Times are CPU time of this process (see `interleaved`).

    .venv/bin/python bench/rules.py [--n 100000] [--rules 10,50,200] [--repeat 3]
        [--slow-n 10000]

`--slow-n`: zen-engine's fact-column layout runs on the first records only (it takes
minutes per round at 200 rules); its rate and matches are over those records.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rule_peers
from bitmask import BitmaskEvaluator
from csautomation.errors import ConfigFileError
from csautomation.facts.derived import norm
from csautomation.facts.health import load_health_model
from csautomation.rules import spec
from csautomation.rules.batch import BatchEvaluator, Columns
from csautomation.rules.engine import StreamingEvaluator
from csautomation.rules.ir import CompiledRule, compile_rule
from csautomation.rules.loader import RuleSet
from csautomation.rules.runtime import Evaluation, RuleRuntime, ToEvaluate

TIERS = ["enterprise", "mid_market", "smb"]


def shapes(rnd: random.Random, i: int) -> Any:
    """The eight shipped rule shapes, thresholds varied so each matches ~1-5% of records."""
    k = i % 8
    if k == 0:
        return {
            "all": [
                f"usage.logins_change_30d_pct <= {rnd.randint(-70, -55)}",
                f"health.score < {rnd.randint(40, 70)}",
            ]
        }
    if k == 1:
        return {
            "all": [
                "health.band == red",
                {
                    "any": [
                        f"health.trend_30d <= {rnd.randint(-16, -12)}",
                        f"usage.seat_utilization_pct < {rnd.randint(6, 9)}",
                    ]
                },
            ]
        }
    if k == 2:
        return {
            "all": [
                f"health.trend_30d <= {rnd.randint(-28, -22)}",
                {"fact": "account.tier", "in": rnd.sample(TIERS, 2)},
            ]
        }
    if k == 3:
        return {
            "all": [
                f"support.escalations_30d >= {rnd.randint(2, 3)}",
                f"support.urgent_tickets_30d >= {rnd.randint(2, 5)}",
            ]
        }
    if k == 4:
        lo = rnd.randint(0, 30)
        return {
            "all": [
                {"fact": "contract.days_to_renewal", "between": [lo, lo + 30]},
                f"health.score < {rnd.randint(35, 55)}",
            ]
        }
    if k == 5:
        return {
            "all": [
                "stakeholders.champion_changed == true",
                {"fact": "account.tier", "not_in": [rnd.choice(TIERS)]},
                f"health.score < {rnd.randint(50, 80)}",
            ]
        }
    if k == 6:
        return {
            "all": [
                f"churn.probability >= 0.{rnd.randint(95, 99)}",
                {"not": {"fact": "account.region", "eq": rnd.choice(["emea", "apac"])}},
            ]
        }
    return {
        "all": [
            f"usage.seat_utilization_pct >= {rnd.randint(93, 97)}",
            f"health.score >= {rnd.randint(60, 75)}",
            {"not": f"churn.probability > 0.{rnd.randint(2, 4)}"},
            {"fact": "account.segment", "ne": "retail"},
        ]
    }


def build_rules(r: int, seed: int = 1) -> list[CompiledRule]:
    rnd = random.Random(seed)
    return [
        compile_rule(
            spec.Rule.model_validate(
                {
                    "id": f"r{i:03d}",
                    "name": f"rule {i}",
                    "owner": "bench",
                    "priority": "medium",
                    "trigger": {"on": ["usage_daily"]},
                    "conditions": shapes(rnd, i),
                    "actions": [{"start_playbook": "p"}],
                }
            )
        )
        for i in range(r)
    ]


def build_records(n: int, seed: int = 2) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        score = rnd.uniform(0, 100)
        rec: dict[str, Any] = {
            "account.tier": rnd.choice(TIERS),
            "account.region": rnd.choice(["emea", "amer", "apac"]),
            "account.segment": rnd.choice(["saas", "retail", "fintech"]),
            "health.score": round(score, 2),
            "health.band": "green" if score >= 70 else "yellow" if score >= 45 else "red",
            "health.trend_30d": round(rnd.gauss(0, 10), 2),
            "usage.logins_change_30d_pct": round(rnd.gauss(-5, 25), 2),
            "usage.seat_utilization_pct": round(rnd.uniform(5, 100), 2),
            "support.escalations_30d": rnd.choices([0, 1, 2, 3, 4], [70, 15, 8, 5, 2])[0],
            "support.urgent_tickets_30d": rnd.randint(0, 8),
            "contract.days_to_renewal": rnd.randint(-10, 365),
            "stakeholders.champion_changed": rnd.random() < 0.05,
            "churn.probability": round(rnd.random(), 3),
        }
        for key in list(rec):  # a few percent of facts missing, as with thin history
            if key.startswith(("health.trend", "usage.", "churn.")) and rnd.random() < 0.03:
                del rec[key]
        out.append({k: norm(v) for k, v in rec.items()})
    return out


# ---- measurement --------------------------------------------------------------------------


class _Fixed:
    """A rule source that never changes: the bench's rules, without files."""

    def __init__(self, rules: list[CompiledRule]) -> None:
        self.ruleset = RuleSet(tuple(rules), (), "bench")
        self.last_error: ConfigFileError | None = None

    def reload_if_changed(self, force: bool = False) -> bool:  # noqa: ARG002
        return False


AT = datetime(2026, 12, 1, tzinfo=UTC)
PASS = 500  # records per call of the batched rows: the pipeline's pass (Pipeline.batch)


def runtime_evaluator(rules: list[CompiledRule]) -> tuple[RuleRuntime, Callable[..., Evaluation]]:
    """`RuleRuntime.evaluate_record` as it is called for one record, cooldowns aside (every
    record would be a new account)."""
    runtime = RuleRuntime([Path("rules")], load_health_model(), source=_Fixed(rules))
    return runtime, lambda record: runtime.evaluate_record(
        "a", record, AT, "usage_daily", apply_cooldown=False
    )


def runtime_batches(runtime: RuleRuntime) -> Callable[[list[Any]], list[Evaluation | Exception]]:
    """`RuleRuntime.evaluate_records` as the pipeline's pass calls it (records of new
    accounts, signalled by usage), cooldowns aside."""

    def go(records: list[dict[str, Any]]) -> list[Evaluation | Exception]:
        items = [ToEvaluate("a", record, AT, {"usage_daily"}) for record in records]
        return runtime.evaluate_records(items, apply_cooldown=False)

    return go


# called with keep=True (returns what it found) or False, and the part of the records to
# run on (of PARTS); a task over all records at once runs at part 0 and skips the others
Task = Callable[[bool, int], Any]
PARTS = 20


def interleaved(tasks: dict[str, Task], repeat: int) -> dict[str, tuple[float, list[Any]]]:
    """Median CPU seconds of this process (all its threads) for each task over `repeat`
    rounds after a warm-up round, and what the warm-up found: the machine is shared, and
    wall time under load measures the other processes too. The tasks take turns on each
    part of the records (a twentieth) within each round: what load still costs (shared
    caches, a slower clock) then falls on every engine alike, so the ratios of one run
    compare.
    Timed rounds keep nothing (the pipeline keeps no evaluation either: 100,000 kept
    results made the collector's full passes cost the engines that allocate more) and
    each starts after a collection."""
    times: dict[str, list[float]] = {name: [] for name in tasks}
    found = {name: [fn(True, part) for part in range(PARTS)] for name, fn in tasks.items()}
    for _ in range(repeat):
        spent = dict.fromkeys(tasks, 0.0)
        for part in range(PARTS):
            for name, fn in tasks.items():
                gc.collect()
                t = time.process_time()
                fn(False, part)
                spent[name] += time.process_time() - t
        for name in tasks:
            times[name].append(spent[name])
    return {name: (statistics.median(times[name]), found[name]) for name in tasks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rules", default="10,50,200")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--slow-n", type=int, default=10_000)
    args = ap.parse_args()
    # the collector as the long-running commands set it (cli/common.py `run`), for every
    # engine alike: the product's rule layer runs in those processes
    gc.set_threshold(10_000, 10, 10)
    records = build_records(args.n)
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}; N = {args.n:,} records, median CPU time of {args.repeat} "
        f"interleaved rounds after warm-up; load average {os.getloadavg()[0]:.2f}"
    )
    for r in [int(x) for x in args.rules.split(",")]:
        measure(r, records, args.repeat, min(args.slow_n, args.n))


ROWS = [
    ("stream", "csautomation streaming (durable_rules)"),
    ("stream_many", "csautomation streaming, batches"),
    ("runtime", "csautomation evaluate_record"),
    ("runtime_many", "csautomation evaluate_records"),
    ("batch", "csautomation batch (numpy)"),
    ("batch_cols", "csautomation batch incl. columns"),
    ("zen", "zen-engine expression table"),
    ("zen_cols", "zen-engine fact columns (old)"),
    ("bitmask", "bitmask evaluator (replacement)"),
    ("fused", "plain Python fused (ceiling)"),
]


def _over(run: Callable[[dict[str, Any]], Any], records: list[dict[str, Any]]) -> Task:
    """`run` on each record of a part, one at a time."""
    parts = _parts(records)

    def go(keep: bool, part: int) -> Any:
        if keep:
            return [run(x) for x in parts[part]]
        for x in parts[part]:
            run(x)
        return None

    return go


def _in_passes(run: Callable[[list[Any]], list[Any]], records: list[dict[str, Any]]) -> Task:
    """`run` on the records of a part, PASS records a call."""
    parts = _parts(records)

    def go(keep: bool, part: int) -> Any:
        found = []
        records = parts[part]
        for start in range(0, len(records), PASS):
            done = run(records[start : start + PASS])
            if keep:
                found.extend(done)
        return found if keep else None

    return go


def _whole(run: Callable[[], Any]) -> Task:
    return lambda _keep, part: run() if part == 0 else None


def _parts(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    n = len(records)
    return [records[n * i // PARTS : n * (i + 1) // PARTS] for i in range(PARTS)]


def measure(r: int, records: list[dict[str, Any]], repeat: int, slow_n: int) -> None:
    """Time every engine on R rules and check that they find the same matches."""
    n = len(records)
    rules = build_rules(r)
    order = {rule.id: i for i, rule in enumerate(rules)}
    priority = {rule.id: (rule.rank, rule.id) for rule in rules}
    batch = BatchEvaluator(rules)
    cols = Columns.from_records(records, batch.keys)
    stream = StreamingEvaluator(rules)
    runtime, evaluate_record = runtime_evaluator(rules)
    runs: dict[str, Callable[[dict[str, Any]], Any]] = {
        "stream": stream.matching,
        "runtime": evaluate_record,
        "zen": rule_peers.zen_expression_table(rules),
        "zen_cols": rule_peers.zen_fact_columns(rules),
        "bitmask": BitmaskEvaluator(rules).matching,
        "fused": rule_peers.fused(rules),
    }
    tasks: dict[str, Task] = {
        name: _over(run, records[:slow_n] if name == "zen_cols" else records)
        for name, run in runs.items()
    }
    tasks["stream_many"] = _in_passes(stream.matching_many, records)
    tasks["runtime_many"] = _in_passes(runtime_batches(runtime), records)
    tasks["batch"] = _whole(lambda: batch.evaluate(cols))
    tasks["batch_cols"] = _whole(lambda: batch.evaluate(Columns.from_records(records, batch.keys)))
    timings = {
        name: (t, got[0] if name in ("batch", "batch_cols") else [x for p in got for x in p])
        for name, (t, got) in interleaved(tasks, repeat).items()
    }
    stream.close()
    runtime.close()
    seconds = {name: t / (slow_n if name == "zen_cols" else n) for name, (t, _) in timings.items()}
    fired = {
        name: [[m.rule_id for m in e.fired] for e in timings[name][1]]
        for name in ("runtime", "runtime_many")
    }
    found = {
        name: [set(m) for m in timings[name][1]]
        for name in [*runs, "stream_many"]
        if name not in fired
    }
    for name, lists in fired.items():
        found[name] = [set(m) for m in lists]
        # each rule once, in priority order once fired
        assert all(m == sorted(m, key=priority.__getitem__) for m in lists)
    # each rule once, in the rules' order from matching() and matching_many()
    for name in ("stream", "stream_many"):
        assert all(m == sorted(m, key=order.__getitem__) for m in timings[name][1])
    found["batch"] = [set() for _ in records]
    for rule_id, mask in timings["batch"][1].items():
        for i in mask.nonzero()[0]:
            found["batch"][i].add(rule_id)
    reference = found["fused"]
    mismatches = {
        name: sum(1 for a, b in zip(m, reference, strict=False) if a != b)
        for name, m in found.items()
    }
    matched = sum(len(m) for m in reference)
    print(
        f"\nR = {r}: {matched:,} matches ({matched / n / r:.1%} of rule checks); records "
        f"differing from the fused reference: {sum(mismatches.values())} "
        f"(zen-engine fact columns on the first {slow_n:,} records)"
    )
    print(
        f"{'R':>4} {'engine':<36} {'records/s':>11} {'checks/s':>13} {'vs zen':>8} "
        f"{'vs zen old':>10} {'vs bitmask':>10} {'vs fused':>8}"
    )
    for key, label in ROWS:
        rate = 1 / seconds[key]
        ratios = [seconds[peer] / seconds[key] for peer in ("zen", "zen_cols", "bitmask", "fused")]
        print(
            f"{r:>4} {label:<36} {rate:>11,.0f} {rate * r:>13,.0f} {ratios[0]:>7.2f}x "
            f"{ratios[1]:>9.2f}x {ratios[2]:>9.2f}x {ratios[3]:>7.2f}x"
        )
    goals(r, seconds)
    assert not any(mismatches.values()), f"engines disagree: {mismatches}"


def goals(r: int, seconds: dict[str, float]) -> None:
    def line(goal: str, met: bool, figure: str) -> None:
        print(f"goal {goal}: {'met' if met else 'NOT met'} ({figure})")

    ratio = seconds["stream"] / seconds["runtime"]
    line(f"evaluate_record >= 0.8x matching() at R={r}", ratio >= 0.8, f"{ratio:.2f}x")
    ratio = seconds["stream_many"] / seconds["runtime_many"]
    line(f"evaluate_records >= 0.8x matching_many() at R={r}", ratio >= 0.8, f"{ratio:.2f}x")
    if r in (50, 200):
        for key, how in (("stream", "matching()"), ("stream_many", "matching_many()")):
            ratio = seconds["zen"] / seconds[key]
            goal = f"streaming {how} >= 2x zen-engine expression table at R={r}"
            line(goal, ratio >= 2, f"{ratio:.2f}x")
        ratio = seconds["zen"] / seconds["bitmask"]
        line(f"(bitmask evaluator, a replacement) >= 2x zen at R={r}", ratio >= 2, f"{ratio:.2f}x")
    if r == 200:
        rate = 1 / seconds["batch"]
        line("batch >= 1,000,000 records/s at R=200", rate >= 1e6, f"{rate:,.0f}")
        rate = 1 / seconds["batch_cols"]
        line("batch incl. columns >= 500,000 records/s at R=200", rate >= 5e5, f"{rate:,.0f}")


if __name__ == "__main__":
    main()
