"""What the scheduler keeps between sweeps, so that the daily sweep of every account reads
only what changed since the last one.

It holds every account (its stored JSON text and the validated Account: a page of
accounts is re-validated only where the text changed) and every account's signal history
as columns (store/columnar.py: the rows added since are read, nothing else). A sweep's
facts are then derived straight from the columns (facts/columnar.py feeding derive_many's
grid), equal to derive's. An account with a row the columns cannot hold is derived by the
FactsReader from Signal objects, alone, so that it gets derive's own record or error.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Text, cast, select

from csautomation.facts.columnar import gather_columns
from csautomation.facts.days import AsOf
from csautomation.facts.derive_many import records_of
from csautomation.facts.derived import DerivedFact, SignalsFact
from csautomation.facts.health import HealthModel
from csautomation.facts.model import Account
from csautomation.store.columnar import ColumnarHistories
from csautomation.store.engine import table
from csautomation.store.facts import FactsReader
from csautomation.store.repo import Store
from csautomation.store.tables import AccountRow

log = logging.getLogger(__name__)


class SweepFacts:
    """Accounts and their facts for sweeps. Sweeps of several rules may run at once: the
    refresh is serialised, and a sweep reads arrays that are replaced, never changed."""

    def __init__(
        self, store: Store, model: HealthModel, fallback: FactsReader | None = None
    ) -> None:
        self.store = store
        self.model = model
        self.columns = ColumnarHistories(store)
        self.fallback = fallback or FactsReader(store, model)
        self._accounts: dict[str, tuple[str, Account]] = {}
        self._lock = threading.Lock()
        self.derived_from_columns = 0  # accounts, since this was made (for the benchmark)
        self.derived_from_signals = 0

    def pages(self, chunk: int) -> Iterator[list[Account]]:
        """Every account, in id order, `chunk` at a time, with the signal histories
        brought up to date first (a sweep reads one moment's data throughout)."""
        with self._lock:
            self.columns.refresh()
            accounts = self.accounts()
        for start in range(0, len(accounts), chunk):
            yield accounts[start : start + chunk]

    def accounts(self) -> list[Account]:
        """Every account in id order; only those whose stored data changed are validated."""
        t = table(AccountRow)
        held, fresh = self._accounts, {}
        # the stored text, not the parsed JSON: an unchanged account costs a comparison
        q = select(t.c.id, cast(t.c.data, Text)).order_by(t.c.id)
        with self.store.engine.connect() as conn:
            for account_id, text in conn.execute(q):
                kept = held.get(account_id)
                if kept is None or kept[0] != text:
                    kept = (text, Account.model_validate(json.loads(text)))
                fresh[account_id] = kept
        self._accounts = fresh
        return [account for _, account in fresh.values()]

    def records_or_errors(
        self, wanted: Sequence[tuple[Account, AsOf]], derived: Sequence[DerivedFact] = ()
    ) -> list[dict[str, Any] | Exception]:
        """FactsReader.records_or_errors, from the columns held (read at the last `pages`)."""
        out: list[dict[str, Any] | Exception | None] = [None] * len(wanted)
        by_day: dict[date, list[int]] = defaultdict(list)
        rest: list[int] = []
        irregular = self.columns.irregular
        for i, (account, as_of) in enumerate(wanted):
            if isinstance(as_of, datetime) or account.id in irregular:
                rest.append(i)  # an instant reads part of a day: the reference path
            else:
                by_day[as_of].append(i)
        count_types = {t for f in derived if isinstance(f, SignalsFact) for t in f.types}
        for day, idx in by_day.items():
            accounts = [wanted[i][0] for i in idx]
            try:
                updates = gather_columns(
                    [self.columns.history(a.id) for a in accounts], day, count_types
                )
                records = records_of(updates, accounts, day, self.model, derived)
            except Exception:  # derived again below, where failures are isolated per account
                log.warning("sweep facts: a batch of %d from columns failed", len(idx))
                rest.extend(idx)
                continue
            for i, record in zip(idx, records, strict=True):
                out[i] = record
            self.derived_from_columns += len(idx)
        for i in sorted(rest):
            # one at a time: derive's own verdict on each, whatever else is in the batch
            # (a grid of many accounts reads some bad values that derive rejects)
            out[i] = self.fallback.record_or_error(*wanted[i], derived)
            self.derived_from_signals += 1
        return [r for r in out if r is not None]
