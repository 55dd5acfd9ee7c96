"""Array helpers that derive (one account) and derive_many (a grid of accounts) share, so
that both compute a fact with the very same floating-point operations."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from csautomation.facts.health import COMPONENTS, HealthModel

F = npt.NDArray[np.float64]
I = npt.NDArray[np.intp]  # noqa: E741
B = npt.NDArray[np.bool_]
NAN = float("nan")


def pct_change(now: F, before: F) -> F:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, (now - before) / before * 100.0, NAN)


_quiet_lock = threading.Lock()
_quiet: list[Any] = []  # the one catch_warnings context while any thread is quiet


@contextmanager
def quiet() -> Iterator[None]:
    """np.nanmax warns on all-NaN windows; those are simply missing facts.

    `warnings.catch_warnings` saves and restores the process's filter list, so two threads
    each in their own would restore each other's: a thread that leaves first takes the
    filter away from one still deriving (activity threads derive facts side by side, and
    under pytest the warning became an error). One context is kept while any thread is in."""
    with _quiet_lock:
        if not _quiet:
            ctx = warnings.catch_warnings()
            ctx.__enter__()
            warnings.simplefilter("ignore", RuntimeWarning)
            _quiet.append(ctx)
        else:
            _quiet.append(_quiet[0])
    try:
        yield
    finally:
        with _quiet_lock:
            ctx = _quiet.pop()
            if not _quiet:
                ctx.__exit__(None, None, None)


def health_scores(out: dict[str, F], model: HealthModel, n: int) -> tuple[F, dict[str, F]]:
    """The health score and its components (rounded to 2 decimals), elementwise over the
    metrics in `out`, each array of length `n`."""
    parts: dict[str, F] = {}
    total, weight_sum = np.zeros(n), np.zeros(n)
    weights = model.weights.model_dump()
    for comp in COMPONENTS:
        acc, wsum = np.zeros(n), np.zeros(n)
        for m in model.components.get(comp, []):
            values = out.get(m.metric)
            if values is None:
                continue
            scaled = np.clip((values - m.bad) / (m.good - m.bad), 0.0, 1.0) * 100.0
            present = ~np.isnan(scaled)
            acc += np.where(present, scaled * m.weight, 0.0)
            wsum += np.where(present, m.weight, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            comp_score = np.where(wsum > 0, acc / wsum, NAN)
        parts[f"health.{comp}"] = comp_score
        present = ~np.isnan(comp_score)
        total += np.where(present, comp_score * weights[comp], 0.0)
        weight_sum += np.where(present, weights[comp], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(weight_sum > 0, total / weight_sum, NAN)
    rounded = {k: np.round(v, 2).astype(np.float64) for k, v in parts.items()}
    return np.round(score, 2).astype(np.float64), rounded


def days_between(start: date, end: date | None) -> float:
    """Days from `start` to `end`; NaN when `end` is not known (an account's missing
    renewal or start date): the facts it feeds are then missing."""
    return NAN if end is None else float((end - start).days)
