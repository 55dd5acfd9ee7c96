"""A deterministic sample data set: accounts with realistic archetypes and daily signals.

The same arguments always give byte-identical files (one seeded `random.Random`, no clock).
Archetypes: healthy, usage decline, champion left, support storm, renewal risk, expansion
and predicted churn, so every shipped rule has accounts to fire on. A few healthy accounts
(about 3% of all) also have a usage cliff: logins fall by 60-90% overnight, some days to ten
weeks before the end (an integration broke, a team moved to a competitor), for the anomaly
rules. The cliff is drawn from its own generator, so every other account is byte-identical
to what the data set held before cliffs were added.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from csautomation.datafiles import read_jsonl
from csautomation.facts.model import Account, Signal, SignalType

ARCHETYPES = [  # (name, share)
    ("healthy", 0.55),
    ("usage_decline", 0.12),
    ("champion_left", 0.06),
    ("support_storm", 0.08),
    ("renewal_risk", 0.08),
    ("expansion", 0.06),
    ("churn", 0.05),
]
CLIFF_SHARE = 0.06  # of healthy accounts: about 3% of all
_FIRST = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
    "Massive",
]
_SECOND = [
    "Corp",
    "Labs",
    "Systems",
    "Holdings",
    "Analytics",
    "Health",
    "Retail",
    "Foods",
    "Logistics",
    "Capital",
    "Media",
    "Energy",
]
_SEGMENTS = ["saas", "fintech", "healthcare", "retail", "manufacturing"]
_TIERS = [
    ("enterprise", 0.15, 150_000, 600_000, 80, 400),
    ("mid_market", 0.35, 30_000, 150_000, 20, 80),
    ("smb", 0.50, 3_000, 30_000, 3, 20),
]


def _pick(rnd: random.Random, weighted: list[tuple[str, float]]) -> str:
    x, acc = rnd.random(), 0.0
    for name, share in weighted:
        acc += share
        if x < acc:
            return name
    return weighted[-1][0]


def _account(i: int, rnd: random.Random, end: date, archetype: str) -> Account:
    tier = _pick(rnd, [(t[0], t[1]) for t in _TIERS])
    _, _, arr_lo, arr_hi, seat_lo, seat_hi = next(t for t in _TIERS if t[0] == tier)
    csm = rnd.randint(1, 12)
    renewal_in = rnd.randint(10, 85) if archetype == "renewal_risk" else rnd.randint(1, 365)
    tags = tuple(t for t in ("strategic", "reference", "at-risk-last-year") if rnd.random() < 0.1)
    return Account(
        id="ACME" if i == 0 else f"ACC-{i:05d}",
        name="Acme Corp" if i == 0 else f"{rnd.choice(_FIRST)} {rnd.choice(_SECOND)} {i}",
        tier=tier,
        segment=rnd.choice(_SEGMENTS),
        region=rnd.choice(["emea", "amer", "apac"]),
        arr=float(round(rnd.uniform(arr_lo, arr_hi), -2)),
        seats=rnd.randint(seat_lo, seat_hi),
        owner=f"csm-{csm:02d}",
        manager=f"mgr-{(csm - 1) // 4 + 1:02d}",
        renewal_date=end + timedelta(days=renewal_in),
        customer_since=end - timedelta(days=rnd.randint(365, 6 * 365)),
        tenant="default" if rnd.random() < 0.8 else "emea-partners",
        tags=tags,
        crm_ids={
            "salesforce": f"001{i:015d}",
            "zendesk": str(360000 + i),
            "hubspot": str(9_000_000 + i),
        },
    )


def _cliff(archetype: str, seed: int, i: int) -> tuple[int, float] | None:
    """(days ago it began, share of usage lost) for the few healthy accounts with a cliff."""
    side = random.Random(seed * 1_000_003 + i)
    if archetype != "healthy" or side.random() >= CLIFF_SHARE:
        return None
    return side.randint(3, 70), side.uniform(0.6, 0.9)


class _Feed:
    """One account's signals as the import format's records, each at a random working hour
    of its day."""

    def __init__(self, a: Account, rnd: random.Random, end: date) -> None:
        self.a, self.rnd, self.end = a, rnd, end
        self.out: list[dict[str, Any]] = []

    def add(self, kind: SignalType, back: int, payload: dict[str, Any]) -> None:
        day = self.end - timedelta(days=back)
        rnd = self.rnd
        at = datetime.combine(day, time(9 + rnd.randint(0, 8), rnd.randint(0, 59)), tzinfo=UTC)
        self.out.append(
            {
                "type": kind.value,
                "account_id": self.a.id,
                "occurred_at": at.isoformat(),
                "payload": payload,
                "idempotency_key": f"{self.a.id}:{kind.value}:{day}:{len(self.out)}",
            }
        )


def _signals(
    a: Account,
    archetype: str,
    rnd: random.Random,
    end: date,
    days: int,
    cliff: tuple[int, float] | None = None,
) -> list[dict[str, Any]]:
    feed = _Feed(a, rnd, end)
    _usage(feed, archetype, days, cliff)
    _engagement(feed, archetype, days)
    _events(feed, archetype, days)
    return feed.out


def _usage(feed: _Feed, archetype: str, days: int, cliff: tuple[int, float] | None) -> None:
    """The contract, then a usage signal a day, shaped by the archetype."""
    a, rnd, end = feed.a, feed.rnd, feed.end
    use = rnd.uniform(0.35, 0.8) if archetype != "expansion" else rnd.uniform(0.8, 0.95)
    decline_start = rnd.randint(20, 60)
    decline = rnd.uniform(0.3, 0.7)
    feed.add(
        SignalType.contract_update,
        days - 1,
        {"renewal_date": str(a.renewal_date), "arr": a.arr, "seats": a.seats},
    )
    for back in range(days - 1, -1, -1):
        level = use
        if archetype == "usage_decline" and back < decline_start:
            level *= 1 - decline * (decline_start - back) / decline_start
        elif archetype in ("renewal_risk", "churn"):
            level *= 0.5
        elif archetype == "champion_left" and back < 30:
            level *= 0.75
        elif archetype == "expansion":
            level *= 1 + 0.25 * (days - back) / days
        if cliff is not None and back < cliff[0]:
            level *= 1 - cliff[1]
        weekday = (end - timedelta(days=back)).weekday()
        level *= 0.4 if weekday >= 5 else 1.0
        users = max(0, round(a.seats * level * rnd.uniform(0.9, 1.1)))
        feed.add(
            SignalType.usage_daily,
            back,
            {
                "logins": users * rnd.randint(1, 3),
                "active_users": users,
                "feature_events": users * rnd.randint(2, 6),
            },
        )


def _engagement(feed: _Feed, archetype: str, days: int) -> None:
    """Meetings, NPS and outcome reviews, and the weekly churn prediction."""
    rnd = feed.rnd
    unhealthy = archetype != "healthy" and archetype != "expansion"
    for back in range(days - rnd.randint(1, 20), 0, -rnd.randint(14, 28)):
        miss = 0.5 if unhealthy else 0.1
        feed.add(
            SignalType.meeting, back, {"status": "missed" if rnd.random() < miss else "attended"}
        )
    for back in range(days - rnd.randint(1, 60), 0, -90):
        feed.add(
            SignalType.nps_response,
            back,
            {"score": rnd.randint(2, 6) if unhealthy else rnd.randint(7, 10)},
        )
        feed.add(
            SignalType.outcome_review,
            back,
            {"goals_met_pct": rnd.randint(10, 45) if unhealthy else rnd.randint(60, 100)},
        )
    for back in range(days - 1, -1, -7):
        p = rnd.uniform(0.03, 0.2)
        if archetype == "churn":
            p = min(0.9, 0.2 + 0.7 * (days - back) / days)
        elif archetype == "renewal_risk":
            p = rnd.uniform(0.25, 0.5)
        feed.add(SignalType.churn_prediction, back, {"probability": round(p, 3)})


def _events(feed: _Feed, archetype: str, days: int) -> None:
    """Support tickets and escalations, a champion leaving, interest in expanding."""
    rnd = feed.rnd
    for _ in range(rnd.randint(0, 3)):
        feed.add(
            SignalType.support_ticket,
            rnd.randint(0, days - 1),
            {"priority": rnd.choice(["low", "normal", "normal", "high"])},
        )
    if archetype == "support_storm":
        for _ in range(rnd.randint(3, 6)):
            feed.add(
                SignalType.support_ticket,
                rnd.randint(0, 25),
                {"priority": rnd.choice(["urgent", "high", "normal"])},
            )
        for _ in range(rnd.randint(1, 3)):
            feed.add(SignalType.support_escalation, rnd.randint(0, 25), {"reason": "outage"})
    if archetype == "champion_left":
        feed.add(
            SignalType.stakeholder_change,
            rnd.randint(5, 80),
            {"role": "champion", "change": "left", "person": "champion"},
        )
    if archetype == "expansion":
        for _ in range(rnd.randint(1, 2)):
            feed.add(SignalType.expansion_interest, rnd.randint(0, 80), {"source": "sales"})


def _raw(
    n_accounts: int, days: int, seed: int, end: date
) -> tuple[list[Account], list[dict[str, Any]]]:
    rnd = random.Random(seed)
    accounts, signals = [], []
    for i in range(n_accounts):
        archetype = "usage_decline" if i == 0 else _pick(rnd, ARCHETYPES)
        account = _account(i, rnd, end, archetype)
        accounts.append(account)
        cliff = _cliff(archetype, seed, i)
        signals.extend(_signals(account, archetype, rnd, end, days, cliff))
    signals.sort(key=lambda s: (s["occurred_at"], s["account_id"], s["idempotency_key"]))
    return accounts, signals


def generate(
    n_accounts: int = 500, days: int = 180, seed: int = 7, end: date = date(2026, 11, 1)
) -> tuple[list[Account], list[Signal]]:
    accounts, raw = _raw(n_accounts, days, seed, end)
    return accounts, [Signal.model_validate(s) for s in raw]


def write_sample(
    directory: Path,
    n_accounts: int = 500,
    days: int = 180,
    seed: int = 7,
    end: date = date(2026, 11, 1),
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    accounts, raw = _raw(n_accounts, days, seed, end)
    acc_path, sig_path = directory / "accounts.jsonl", directory / "signals.jsonl"
    acc_path.write_text("".join(a.model_dump_json() + "\n" for a in accounts), encoding="utf-8")
    sig_path.write_text(
        "".join(json.dumps(s, sort_keys=True) + "\n" for s in raw), encoding="utf-8"
    )
    return acc_path, sig_path


def read_accounts(path: Path) -> list[Account]:
    return read_jsonl(path, Account)


def read_signals(path: Path) -> list[Signal]:
    return read_jsonl(path, Signal)
