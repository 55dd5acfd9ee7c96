"""What the tests build their data and their vendors from: accounts, stores seeded with
them, and the fake vendors over HTTPS with the connectors a CS ops team would write for
them.

Builders take keyword overrides, so that a test names only what it is about:
`account(id="BETA", tier="smb")`. A store is at the schema's head; `where` is a database
URL (the `db_url` fixture's) or a folder for a SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from csautomation.connectors.loader import build_connectors, load_connectors
from csautomation.connectors.registry import Connectors
from csautomation.escalation.people import People
from csautomation.facts.model import Account, Signal
from csautomation.rules import spec
from csautomation.rules.ir import CompiledRule, compile_rule
from csautomation.store.repo import Store
from fakes.vendors import Vendors

ROOT = Path(__file__).parents[1]
TODAY = date(2026, 11, 1)


def account(**overrides: Any) -> Account:
    """Acme, an enterprise account of csm-01 (manager mgr-01) since 2022, renewing on
    2027-01-01; `overrides` replace any field."""
    fields: dict[str, Any] = {
        "id": "ACME",
        "name": "Acme",
        "tier": "enterprise",
        "arr": 1e5,
        "owner": "csm-01",
        "manager": "mgr-01",
        "renewal_date": date(2027, 1, 1),
        "customer_since": date(2022, 1, 1),
    }
    return Account.model_validate(fields | overrides)


def review_account(account_id: str, name: str) -> Account:
    """An account of Cara (csm) and Mia (her manager), the east team of the review app's
    people (tests/api/support.py)."""
    return account(
        id=account_id,
        name=name,
        arr=120_000,
        owner="cara",
        manager="mia",
        renewal_date=date(2026, 9, 30),
        customer_since=date(2023, 1, 15),
    )


def daily_usage(
    account_id: str, today: date, at: time = time(9), fell: bool = True
) -> list[Signal]:
    """91 days of usage up to `today`, one signal a day at `at` UTC: 100 logins a day, down
    to 30 for the last 31 days when `fell`."""
    signals = []
    for back in range(90, -1, -1):
        logins = 30 if back <= 30 and fell else 100
        signals.append(
            Signal(
                type="usage_daily",
                account_id=account_id,
                occurred_at=datetime.combine(today - timedelta(days=back), at, tzinfo=UTC),
                payload={"logins": logins, "active_users": logins // 4},
            )
        )
    return signals


def new_store(where: str | Path, accounts: Iterable[Account] = ()) -> Store:
    store = Store(where if isinstance(where, str) else f"sqlite:///{where}/csauto.db")
    store.create_all()
    store.upsert_accounts(accounts)
    return store


def playbook_store(where: str | Path) -> Store:
    return add_playbook_accounts(new_store(where))


def add_playbook_accounts(store: Store) -> Store:
    """The playbook tests' accounts: ACME, whose logins fell from 100 to 30 a day a month
    before TODAY; BETA, the same, with three support escalations in the last two weeks."""
    names = {"ACME": "Acme Corp", "BETA": "Beta Labs"}
    store.upsert_accounts(
        account(id=i, name=n, arr=2e5, seats=40, renewal_date=date(2027, 2, 1))
        for i, n in names.items()
    )
    escalations = [
        Signal(
            type="support_escalation",
            account_id="BETA",
            occurred_at=datetime.combine(TODAY - timedelta(days=back), time(15), tzinfo=UTC),
            payload={"reason": "outage"},
        )
        for back in (12, 7, 2)
    ]
    store.add_signals([*(s for i in names for s in daily_usage(i, TODAY)), *escalations])
    return store


def scheduler_store(url: str, today: date, falling: tuple[str, ...] = ("ACME", "BETA")) -> Store:
    return add_scheduler_accounts(new_store(url), today, falling)


def add_scheduler_accounts(
    store: Store, today: date, falling: tuple[str, ...] = ("ACME", "BETA")
) -> Store:
    """The scheduler tests' accounts: `falling` ones went from 100 logins a day to 30 a
    month before `today`; STEADY kept 100."""
    ids = (*falling, "STEADY")
    store.upsert_accounts(
        account(id=i, name=f"{i.title()} Corp", arr=2e5, seats=40, renewal_date=date(2030, 2, 1))
        for i in ids
    )
    store.add_signals([s for i in ids for s in daily_usage(i, today, time(0), fell=i in falling)])
    return store


@contextmanager
def fake_vendors(accounts: tuple[str, ...] = ("ACME", "BETA")) -> Iterator[Vendors]:
    """Salesforce, Zendesk, HubSpot and the hooks (Slack, a webhook) over HTTPS on one
    trustme CA, each knowing `accounts`; stopped on exit."""
    vendors = Vendors().start(accounts)
    try:
        yield vendors
    finally:
        vendors.stop()


def vendor_connectors(
    vendors: Vendors,
    store: Store,
    folder: Path,
    env: Mapping[str, str] | None = None,
    on_change: Any = None,
    people: People | None = None,
    **common: Any,
) -> Connectors:
    """The real connectors for the fakes, built as the worker builds them: from the
    connectors/*.yaml written into `folder` (once: a second call reads them again), with
    the fakes' CA trusted. `env`: the credentials, by default the ones the fakes accept;
    `common` (retry, breaker, timeout, ...) goes into every config; task owners resolve
    through `people` after the configs' owners: maps."""
    if not (folder / "connectors").exists():
        vendors.write_configs(folder / "connectors", **common)
    return build_connectors(
        load_connectors([folder / "connectors"]),
        store,
        env=vendors.credentials() if env is None else env,
        verify=vendors.ca_file(folder),
        on_change=on_change,
        people=people,
    )


def compiled_rules(conditions: list[Any]) -> list[CompiledRule]:
    """Rules r0, r1, ... with the given conditions (low priority, on usage_daily),
    compiled."""
    return [
        compile_rule(
            spec.Rule.model_validate(
                {
                    "id": f"r{i}",
                    "name": "n",
                    "owner": "o",
                    "priority": "low",
                    "trigger": {"on": ["usage_daily"]},
                    "conditions": c,
                    "actions": [{"start_playbook": "p"}],
                }
            )
        )
        for i, c in enumerate(conditions)
    ]
