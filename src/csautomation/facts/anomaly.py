"""Anomalies in an account's own usage and health: a rolling median and MAD on weekly aggregates.

Method. Each day's value is compared with the account's own recent past by the modified
z-score of Iglewicz and Hoaglin, z = 0.6745 * (x - median) / MAD, where median and MAD
(median absolute deviation) are taken over a trailing baseline. Median and MAD are robust:
one odd week (a holiday, a feed outage) in the baseline moves neither, where a mean and a
standard deviation would be dragged towards it. |z| > 3.5 is their recommended cut-off.

Weekly seasonality. Product usage swings between weekdays and weekends (often 2-3x). We
compare trailing 7-day aggregates, not single days: every 7-day window holds each weekday
exactly once, so any weekly pattern cancels whatever its shape, and the sum of seven days
also averages out day-to-day noise. Usage is the 7-day sum of logins; health the 7-day mean
of the daily score, whose inputs carry a weekly ripple too (days since the last login rises
over every weekend). The alternative, each day against the same weekday in
previous weeks, reacts on the first day but has only one point per week in its baseline (8
for two months, too few for a steady MAD) and raises a false alarm for every public holiday.
The price is a few days' delay: a cliff that takes 60-90% of usage is flagged four to six
days after it (once half a usual week is missing), still weeks before a 30-day decline shows.

Baseline. The 7-day aggregates ending 7 to 62 days before the day: eight weeks of them,
none overlapping the current week, so a drop that began this week is not already part of
the "normal" it is compared with. With fewer than 28 of them (four weeks) the score is
missing, never made up.

Flat baselines. When MAD is 0 (more than half the baseline is one value) the mean absolute
deviation from the median, times 1.2533 (sqrt(pi/2): for normal data the standard deviation
is 1.2533 times the mean absolute deviation), replaces MAD/0.6745. When that is 0 too the
baseline is a single repeated value: the score is 0 if today equals it and missing otherwise
(there is no spread to measure against, so no honest number), and the anomaly flag then
rests on materiality alone.

Direction and materiality. Only drops are anomalies for customer success: `anomaly` is true
when z < -3.5 and the drop is material (see `drop_flags`); a spike up gives a large positive
score but no flag. Rules that care about spikes can read the signed score. Materiality is
needed for two reasons. Eight weeks is only eight independent weekly values, so the median and
MAD are rough and the score is heavier-tailed than a normal z: on pure noise |z| > 3.5 on
about 1% of days (2% with a four-week baseline), not the 0.05% a normal tail would give, so
a noisy account would alert every few months by chance. And a very steady account can
score -5 on a dip too small to matter to anyone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
NAN = float("nan")

WEEK = 7  # days per aggregate: a whole week, so weekly seasonality cancels
GAP = 7  # the latest baseline aggregate ends a week before today: no overlap with today's week
BASELINE = 56  # aggregates in the baseline: eight weeks of them
MIN_BASELINE = 28  # four weeks of baseline, else the score is missing
THRESHOLD = 3.5  # Iglewicz and Hoaglin's cut-off for the modified z-score
MAD_K = 0.6745  # the 0.75 quantile of the standard normal: MAD / 0.6745 estimates sigma
MEAN_AD_K = 1.253314  # sqrt(pi / 2): 1.2533 * mean absolute deviation estimates sigma


def trailing_sum(x: F, valid_from: int = 0) -> F:
    """Sum over the last 7 days including today; missing if any of them is missing or
    before `valid_from`."""
    n = len(x)
    out = np.full(n, NAN)
    start = valid_from + WEEK - 1
    if n > start:
        gap = np.isnan(x)
        cs = np.concatenate(([0.0], np.cumsum(np.where(gap, 0.0, x))))
        holes = np.concatenate(([0], np.cumsum(gap)))
        total = cs[start + 1 :] - cs[start + 1 - WEEK : n + 1 - WEEK]
        missing = holes[start + 1 :] - holes[start + 1 - WEEK : n + 1 - WEEK]
        out[start:] = np.where(missing > 0, NAN, total)
    return out


def trailing_mean(x: F, valid_from: int = 0) -> F:
    """Mean over the last 7 days including today; missing as for `trailing_sum`."""
    return trailing_sum(x, valid_from) / WEEK


def robust_z(x: F, from_index: int = 0) -> tuple[F, F]:
    """The modified z-score of each day's value against its baseline, and the baseline median.

    Days before `from_index` are not computed (missing): callers that only read the last
    days skip the cost of the rest.
    """
    n = len(x)
    z, median = np.full(n, NAN), np.full(n, NAN)
    lo = max(from_index, GAP + MIN_BASELINE - 1)
    if n <= lo:
        return z, median
    # Day i's baseline is x[i - GAP - BASELINE + 1 .. i - GAP]; before day 0 is missing.
    padded = np.concatenate((np.full(BASELINE - 1, NAN), x))
    days = np.arange(lo, n)
    rows = padded[(days - GAP)[:, None] + np.arange(BASELINE)]
    today = x[lo:]
    count = np.count_nonzero(~np.isnan(rows), axis=1)
    keep = (count >= MIN_BASELINE) & ~np.isnan(today)
    if not keep.any():
        return z, median
    rows, today, count = rows[keep], today[keep], count[keep]
    med = sorted_median(np.sort(rows, axis=1), count)
    dev = np.abs(rows - med[:, None])
    mad = sorted_median(np.sort(dev, axis=1), count)
    diff = today - med
    with np.errstate(divide="ignore", invalid="ignore"):
        score = MAD_K * diff / mad
        flat = mad == 0
        if flat.any():  # rare: compute the fallback only where it is needed
            mean_ad = np.nansum(dev[flat], axis=1) / count[flat]
            d = diff[flat]
            score[flat] = np.where(
                mean_ad > 0, d / (MEAN_AD_K * mean_ad), np.where(d == 0, 0.0, NAN)
            )
    idx = days[keep]
    z[idx], median[idx] = score, med
    return z, median


def sorted_median(s: F, count: npt.NDArray[np.intp]) -> F:
    """Row medians of `s`, sorted with its missing values last, `count` present per row."""
    rows = np.arange(len(s))
    return np.asarray((s[rows, (count - 1) // 2] + s[rows, count // 2]) / 2.0, dtype=np.float64)


def drop_flags(x: F, z: F, median: F, material: F) -> F:
    """1.0 where the day is an anomalous and material drop, 0.0 where it is not, NaN unknown.

    `material` is the smallest drop below the baseline median that counts (per day, in the
    series' units). A flat baseline (score missing although the median is known) flags on
    materiality alone: any move off a constant is unusual.
    """
    with np.errstate(invalid="ignore"):
        unusual = np.where(np.isnan(z), x < median, z < -THRESHOLD)
        flag = (unusual & (median - x >= material)).astype(np.float64)
    flag[np.isnan(median) | np.isnan(x)] = NAN
    return flag
