"""The push sources' tally: counts noted on the event loop are written off it, at once
after a quiet spell and at most once per interval under load, and added up, never lost
when a write fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from csautomation.store.source_tallies import SourceTallies, tallies
from factories import new_store


async def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "the tally was never written"
        await asyncio.sleep(0.01)  # the write runs on a worker thread: look again
    return found


@pytest.mark.asyncio
async def test_counts_are_written_off_the_loop_and_added_up(db_url: str) -> None:
    store = new_store(db_url)
    tally = SourceTallies(store.engine, every=0.2)
    tally.note("product-analytics", 3)
    tally.note("product-analytics", 0)  # nothing new: nothing noted
    first = await until(lambda: tallies(store.engine).get("product-analytics"))
    assert first.received == 3
    tally.note("product-analytics", 2)
    tally.note("support-desk", 1)
    await until(lambda: tallies(store.engine).get("support-desk"))
    counted = tallies(store.engine)
    assert (counted["product-analytics"].received, counted["support-desk"].received) == (5, 1)
    assert counted["product-analytics"].last_at >= first.last_at


@pytest.mark.asyncio
async def test_a_failed_write_keeps_its_counts_for_the_next(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(db_url)
    tally = SourceTallies(store.engine, every=0.05)
    from csautomation.store import source_tallies

    real = source_tallies.add_counts
    failures = [RuntimeError("the database went away")]

    def flaky(engine: Any, counts: Any) -> None:
        if failures:
            raise failures.pop()
        real(engine, counts)

    monkeypatch.setattr(source_tallies, "add_counts", flaky)
    tally.note("product-analytics", 4)
    await until(lambda: not failures)
    tally.note("product-analytics", 1)

    def five() -> bool:
        row = tallies(store.engine).get("product-analytics")
        return row is not None and row.received == 5

    await until(five)  # 4 kept from the failed write, and 1
    assert tallies(store.engine)["product-analytics"].received == 5
