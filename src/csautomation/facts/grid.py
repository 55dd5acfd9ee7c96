"""derive_many's grid: derive's daily arrays for many accounts at once, one column per
account and one row per day, the last row being as_of; built from one pass over the signals
of all the accounts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date
from typing import Any

import numpy as np
import numpy.typing as npt

from csautomation.facts.days import utc_day
from csautomation.facts.derive import MAX_LOOKBACK
from csautomation.facts.model import Signal, SignalType
from csautomation.facts.numeric import NAN, B, F, I


@dataclass
class Daily:
    """derive's daily arrays, one column per account, the last row being as_of."""

    logins: F
    users: F
    features: F
    seen_usage: B
    attended: F
    missed: F
    tickets: F
    urgent: F
    escalations: F
    interest: F
    nps: F
    goals: F
    churn: F
    renewal: F  # days from as_of to the renewal date
    arr: F
    seats: F
    champion_left: B
    sponsor_left: B
    counts: dict[str, F]  # signals per type, for the types that signal-count facts read


@dataclass
class Updates:
    """derive's loop over signals as data: for each daily array (a Daily field), where
    (account * MAX_LOOKBACK + day, day MAX_LOOKBACK - 1 being as_of) and by how much."""

    days: list[int]  # the length of derive's arrays, per account
    added: dict[str, tuple[I, F | None]]  # derive's `+=`, in signal order (None: += 1)
    assigned: dict[str, tuple[I, F]]  # derive's `=` (the last signal of a day's value)
    flagged: dict[str, I]  # derive's `= True`

    def grid(self, members: list[int]) -> tuple[Daily, I]:
        """The daily arrays of these accounts, as long as the longest history among them,
        and the row each account's history starts on."""
        n, m = max(self.days[j] for j in members), len(members)
        column = np.full(len(self.days), -1, dtype=np.intp)
        column[members] = np.arange(m)

        def place(at: I) -> tuple[I, B | None]:
            account, day = np.divmod(at, MAX_LOOKBACK)
            flat = (day - (MAX_LOOKBACK - n)) * m + column[account]
            if m == len(self.days):
                return flat, None
            keep = column[account] >= 0
            return flat[keep], keep

        def add(at: I, weights: F | None) -> F:
            flat, keep = place(at)
            if weights is not None and keep is not None:
                weights = weights[keep]
            out = np.bincount(flat, weights, minlength=n * m)
            return out.astype(np.float64, copy=False).reshape(n, m)

        def assign(at: I, values: F) -> F:
            flat, keep = place(at)
            out = np.full(n * m, NAN)
            out[flat] = values if keep is None else values[keep]
            return out.reshape(n, m)

        def flag(at: I) -> B:
            out = np.zeros(n * m, dtype=bool)
            out[place(at)[0]] = True
            return out.reshape(n, m)

        arrays: dict[str, npt.NDArray[Any]] = {k: add(*v) for k, v in self.added.items()}
        arrays |= {k: assign(*v) for k, v in self.assigned.items()}
        arrays |= {k: flag(v) for k, v in self.flagged.items()}
        counts = {k.removeprefix("count:"): v for k, v in arrays.items() if k.startswith("count:")}
        named = {f.name: arrays[f.name] for f in fields(Daily) if f.name != "counts"}
        start = np.array([n - self.days[j] for j in members], dtype=np.intp)
        return Daily(**named, counts=counts), start


def gather(histories: list[Sequence[Signal]], as_of: date, count_types: set[str]) -> Updates:
    """derive's loop over signals, for all accounts in one pass (so each signal is read once)."""
    last = as_of.toordinal()
    first = last - MAX_LOOKBACK + 1
    found = _Collected({t: [] for t in count_types})
    days: list[int] = []
    for account, signals in enumerate(histories):
        earliest = found.read(signals, account * MAX_LOOKBACK - first, first, last)
        # No signal: derive still makes MAX_LOOKBACK days (all of them missing or zero).
        days.append(last - earliest + 1 if earliest <= last else MAX_LOOKBACK)
    return found.updates(days)


@dataclass
class _Collected:
    """derive's `+=`, `=` and `= True` of each signal, as lists of places and values."""

    counts: dict[str, list[int]]  # signals per type, for the types that count facts read
    usage_at: list[int] = field(default_factory=list)
    logins: list[Any] = field(default_factory=list)
    features: list[Any] = field(default_factory=list)
    users: dict[int, Any] = field(default_factory=dict)
    attended: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    tickets: list[int] = field(default_factory=list)
    urgent: list[int] = field(default_factory=list)
    escalations: list[int] = field(default_factory=list)
    interest: list[int] = field(default_factory=list)
    champion: list[int] = field(default_factory=list)
    sponsor: list[int] = field(default_factory=list)
    nps: dict[int, Any] = field(default_factory=dict)
    goals: dict[int, Any] = field(default_factory=dict)
    churn: dict[int, Any] = field(default_factory=dict)
    renewal: dict[int, Any] = field(default_factory=dict)
    arr: dict[int, Any] = field(default_factory=dict)
    seats: dict[int, Any] = field(default_factory=dict)

    def read(self, signals: Sequence[Signal], shift: int, first: int, last: int) -> int:
        """One account's signals, in order (`shift` places its days); returns the ordinal
        of its earliest day, or `last` + 1 when it has none."""
        counts = self.counts
        usage, meeting = SignalType.usage_daily, SignalType.meeting
        earliest = last + 1
        for s in signals:
            at = s.occurred_at
            # Signal.day's ordinal, without building the date when the moment is in UTC
            o = at.toordinal() if at.tzinfo is UTC else utc_day(at).toordinal()
            if o < first or o > last:
                continue
            if o < earliest:
                earliest = o
            k = shift + o
            t, p = s.type, s.payload
            if counts and t in counts:
                counts[t].append(k)
            if t is usage:
                self.usage_at.append(k)
                self.logins.append(p["logins"])
                self.users[k] = p["active_users"]
                self.features.append(p.get("feature_events", 0))
            elif t is meeting:
                (self.attended if p["status"] == "attended" else self.missed).append(k)
            elif t is SignalType.nps_response:
                self.nps[k] = p["score"]
            elif t is SignalType.support_ticket:
                self.tickets.append(k)
                if p["priority"] in ("urgent", "high"):
                    self.urgent.append(k)
            elif t is SignalType.support_escalation:
                self.escalations.append(k)
            elif t is SignalType.outcome_review:
                self.goals[k] = p["goals_met_pct"]
            elif t is SignalType.stakeholder_change and p["change"] == "left":
                if p["role"] == "champion":
                    self.champion.append(k)
                elif p["role"] == "exec_sponsor":
                    self.sponsor.append(k)
            elif t is SignalType.churn_prediction:
                self.churn[k] = p["probability"]
            elif t is SignalType.contract_update:
                if p.get("renewal_date"):
                    self.renewal[k] = date.fromisoformat(str(p["renewal_date"])).toordinal() - last
                if p.get("arr") is not None:
                    self.arr[k] = p["arr"]
                if p.get("seats") is not None:
                    self.seats[k] = p["seats"]
            elif t is SignalType.expansion_interest:
                self.interest.append(k)
        return earliest

    def updates(self, days: list[int]) -> Updates:
        def at(indices: Iterable[int]) -> I:
            return np.fromiter(indices, dtype=np.intp)

        def values(v: Iterable[Any]) -> F:
            return np.asarray(list(v), dtype=np.float64)

        usage_idx = at(self.usage_at)
        added: dict[str, tuple[I, F | None]] = {
            "logins": (usage_idx, values(self.logins)),
            "features": (usage_idx, values(self.features)),
        }
        for name, ks in (
            ("attended", self.attended),
            ("missed", self.missed),
            ("tickets", self.tickets),
            ("urgent", self.urgent),
            ("escalations", self.escalations),
            ("interest", self.interest),
        ):
            added[name] = (at(ks), None)
        for kind, ks in self.counts.items():
            added[f"count:{kind}"] = (at(ks), None)
        assigned = {
            name: (at(d), values(d.values()))
            for name, d in (
                ("users", self.users),
                ("nps", self.nps),
                ("goals", self.goals),
                ("churn", self.churn),
                ("renewal", self.renewal),
                ("arr", self.arr),
                ("seats", self.seats),
            )
        }
        flagged = {
            "seen_usage": usage_idx,
            "champion_left": at(self.champion),
            "sponsor_left": at(self.sponsor),
        }
        return Updates(days, added, assigned, flagged)
