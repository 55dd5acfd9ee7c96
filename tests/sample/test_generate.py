"""The sample data set is deterministic and has every archetype the shipped rules look for."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from csautomation.sample.generate import generate, read_accounts, read_signals, write_sample

END = date(2026, 11, 1)


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    a = write_sample(tmp_path / "a", n_accounts=40, days=60)
    b = write_sample(tmp_path / "b", n_accounts=40, days=60)
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()
    assert read_accounts(a[0]) == generate(40, 60)[0]
    assert len(read_signals(a[1])) == len(generate(40, 60)[1])


def test_shape_of_the_default_data_set() -> None:
    accounts, signals = generate()
    assert len(accounts) == 500 and accounts[0].id == "ACME"
    start = END - timedelta(days=179)
    assert all(start <= s.day <= END for s in signals)
    usage = Counter(s.account_id for s in signals if s.type == "usage_daily")
    assert set(usage.values()) == {180}
    kinds = Counter(s.type.value for s in signals)
    for kind in (
        "support_escalation",
        "stakeholder_change",
        "expansion_interest",
        "meeting",
        "churn_prediction",
        "nps_response",
        "outcome_review",
        "contract_update",
    ):
        assert kinds[kind] > 0, kind
    tiers = Counter(a.tier.value for a in accounts)
    assert tiers["enterprise"] > 30 and tiers["smb"] > 150
