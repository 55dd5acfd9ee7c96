"""derive's array helpers, down each column (account) of derive_many's grid; `start` is each
account's first row. Each does derive's (or anomaly's) floating-point operations in its order,
masked against the column's own start, so a column gives the numbers of the account's own
array."""

from __future__ import annotations

import numpy as np

from csautomation.facts import anomaly
from csautomation.facts.anomaly import BASELINE, GAP, MIN_BASELINE, WEEK
from csautomation.facts.numeric import NAN, B, F, I

# Grids and anomaly baselines are cut to about this many cells (a few MB an array): the
# per-call overhead is long paid off by then, and memory stays bounded for any batch.
MAX_CELLS = 2**18


def before(start: I, n: int, days: int = 0) -> B:
    """True where an account has fewer than `days` days of its own history behind the row."""
    return np.asarray(np.arange(n)[:, None] < start + days)


def running(x: F) -> F:
    """Running sums down the columns, after a row of zeros."""
    cs = np.zeros((x.shape[0] + 1, x.shape[1]))
    np.cumsum(x, axis=0, out=cs[1:])
    return cs


def roll(cs: F, w: int, start: I) -> F:
    """derive._roll, from the running sums `cs`: NaN until `w` days of history exist."""
    n = cs.shape[0] - 1
    out = np.full((n, cs.shape[1]), NAN)
    if n >= w:
        out[w - 1 :] = cs[w:] - cs[: n - w + 1]
    out[before(start, n, w - 1)] = NAN
    return out


def lag(x: F, w: int, start: I) -> F:
    out = np.full(x.shape, NAN)
    if x.shape[0] > w:
        out[w:] = x[:-w]
    out[before(start, x.shape[0], w)] = NAN
    return out


def ffill(values: F) -> F:
    idx = np.where(np.isnan(values), 0, np.arange(values.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.take_along_axis(values, idx, axis=0)


def days_since(mask: B) -> F:
    day = np.arange(mask.shape[0])[:, None]
    idx = np.where(mask, day, -1)
    np.maximum.accumulate(idx, axis=0, out=idx)
    return np.where(idx >= 0, day - idx, NAN).astype(np.float64)


def window_sum(x: F, w: int) -> F:
    """Sum over the last `w` days, fewer at the top of the grid."""
    cs = running(x)
    n = x.shape[0]
    return cs[1:] - cs[np.maximum(np.arange(n) + 1 - w, 0)]


def trailing_sum(x: F, valid_from: I) -> F:
    """anomaly.trailing_sum per account, `valid_from` a row per account.

    The running sum starts at the account's start as anomaly's does on the account's own
    array (NaN before the start adds zeros), so the float differences are the same.
    """
    n = x.shape[0]
    out = np.full(x.shape, NAN)
    if n >= WEEK:
        gap = np.isnan(x)
        cs = running(np.where(gap, 0.0, x))
        holes = np.zeros((n + 1, x.shape[1]), dtype=np.intp)
        np.cumsum(gap, axis=0, out=holes[1:])
        total = cs[WEEK:] - cs[: n + 1 - WEEK]
        missing = holes[WEEK:] - holes[: n + 1 - WEEK]
        out[WEEK - 1 :] = np.where(missing > 0, NAN, total)
    out[before(valid_from, n, WEEK - 1)] = NAN
    return out


def robust_z(x: F, lo: I, first: int) -> tuple[F, F]:
    """anomaly.robust_z per account, for the days from `first` (derive's from_index) on; an
    account's days before its own `lo` are missing too."""
    n, m = x.shape
    z, median = np.full(x.shape, NAN), np.full(x.shape, NAN)
    first = max(first, int(lo.min()))
    if n <= first:
        return z, median
    padded = np.concatenate((np.full((BASELINE - 1, m), NAN), x)).T
    days = np.arange(first, n)
    index = (days - GAP)[:, None] + np.arange(BASELINE)  # each day's baseline, in `padded`
    step = max(1, MAX_CELLS // (len(days) * BASELINE))
    for a in range(0, m, step):
        window = padded[a : a + step, index]  # accounts x days x baseline
        today = x[first:, a : a + step].T
        count = np.count_nonzero(~np.isnan(window), axis=2)
        keep = (days >= lo[a : a + step, None]) & (count >= MIN_BASELINE) & ~np.isnan(today)
        if keep.any():
            account, day = np.nonzero(keep)
            at = (day + first, account + a)
            z[at], median[at] = modified_z(window[keep], today[keep], count[keep])
    return z, median


def modified_z(base: F, today: F, count: I) -> tuple[F, F]:
    """anomaly.robust_z's score and median, one baseline a row (its very lines)."""
    med = anomaly.sorted_median(np.sort(base, axis=1), count)
    dev = np.abs(base - med[:, None])
    mad = anomaly.sorted_median(np.sort(dev, axis=1), count)
    diff = today - med
    with np.errstate(divide="ignore", invalid="ignore"):
        score = anomaly.MAD_K * diff / mad
        flat = mad == 0
        if flat.any():
            mean_ad = np.nansum(dev[flat], axis=1) / count[flat]
            d = diff[flat]
            score[flat] = np.where(
                mean_ad > 0, d / (anomaly.MEAN_AD_K * mean_ad), np.where(d == 0, 0.0, NAN)
            )
    return score, med
