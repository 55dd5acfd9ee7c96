"""Where each data source stands: every pull of schedules.yaml and every push source of
sources.yaml, from what the scheduler and the intake already record. `csauto sources
status` prints it; `/metrics` serves it (`SourcesCollector`).

    pulls   the scheduler's runs of `pull:<name>` (scheduler_runs): the last run, its
            outcome and error, the rows its done runs brought in (signals stored and
            accounts written, as every kind's PullResult says); lag is the time since
            the last run that finished well
    push    the intake's per-source tally (source_tallies): signals brought in and when
            the last came; lag is the time since then
    held    open quarantine rows of the source: a push source's name; for a pull
            `<kind>:<cursor name>` (pulls.mapping.held_source), `<kind>:<pull name>`,
            `pull:<pull name>` or the pull's name, whichever the kind holds under

Nothing here knows a kind: a pull kind added later is shown by the same rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from csautomation.config import load_file
from csautomation.errors import CsAutomationError
from csautomation.ingest.sources import SourcesFile, SourceSpec, load_sources
from csautomation.scheduling import runs
from csautomation.scheduling.config import Pull, Schedules, load_schedules
from csautomation.store.engine import aware, table
from csautomation.store.repo import Store
from csautomation.store.source_tallies import SourceTallyRow, tallies
from csautomation.store.tables import QuarantineRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: str  # the pull's kind, or "push (token)" / "push (hmac)"
    enabled: bool
    last_run: datetime | None  # a pull's last run; a push source's last signal
    outcome: str  # done, failed, running; received; or "never"
    brought: int  # rows brought in: signals stored and accounts written
    held: int  # open quarantine rows
    lag: timedelta | None  # since the last run that finished well (the last signal)
    last_error: str  # "" when none
    errored_at: datetime | None = None


def push_specs(path: Path) -> dict[str, SourceSpec]:
    """Every source of sources.yaml, the disabled ones too (checked as the API checks)."""
    load_sources(path, env={})  # located problems, if any
    if not path.exists():
        return {}
    data = load_file(path).data
    return dict(SourcesFile.model_validate(data).sources) if data else {}


def source_statuses(
    store: Store, schedules: Schedules, push: Mapping[str, SourceSpec], now: datetime
) -> list[SourceStatus]:
    held = _open_held(store)
    out = [_pull(store, name, pull, held, now) for name, pull in sorted(schedules.pulls.items())]
    counted = tallies(store.engine) if _has_tallies(store) else {}
    for name, spec in sorted(push.items()):
        tally = counted.get(name)
        error, errored = _last_held_error(store, name)
        out.append(
            SourceStatus(
                name=name,
                kind=f"push ({spec.auth})",
                enabled=spec.enabled,
                last_run=tally.last_at if tally else None,
                outcome="received" if tally else "never",
                brought=tally.received if tally else 0,
                held=held.get(name, 0),
                lag=now - tally.last_at if tally else None,
                last_error=error,
                errored_at=errored,
            )
        )
    return out


def _pull(
    store: Store, name: str, pull: Pull, held: Mapping[str, int], now: datetime
) -> SourceStatus:
    history = runs.runs(store.engine, f"pull:{name}")
    done = [r for r in history if r.status == "done"]
    failed = [r for r in history if r.status == "failed"]
    last = max(history, key=lambda r: r.fire_time, default=None)
    good = max(done, key=lambda r: r.finished_at or r.claimed_at, default=None)
    bad = max(failed, key=lambda r: r.fire_time, default=None)
    brought = sum(_count(r.result, "stored") + _count(r.result, "accounts") for r in done)
    return SourceStatus(
        name=name,
        kind=pull.kind,
        enabled=pull.enabled,
        last_run=last.fire_time if last else None,
        outcome=last.status if last else "never",
        brought=brought,
        held=sum(held.get(s, 0) for s in _held_names(name, pull)),
        lag=now - (good.finished_at or good.claimed_at) if good else None,
        last_error=str(bad.result.get("error") or "failed") if bad else "",
        errored_at=bad.fire_time if bad else None,
    )


def _count(result: Mapping[str, Any], key: str) -> int:
    value = result.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _held_names(name: str, pull: Pull) -> set[str]:
    names = {name, f"pull:{name}", f"{pull.kind}:{name}"[:64]}
    try:
        from csautomation.ingest.pulls.run import PULL_KINDS

        model = PULL_KINDS.get(pull.kind)
        if model is not None:
            opts = model.model_validate(dict(pull.options))
            names.add(f"{pull.kind}:{opts.cursor_name()}"[:64])  # type: ignore[attr-defined]
    except (ValueError, CsAutomationError):  # options the pull itself will refuse
        pass
    return names


def _open_held(store: Store) -> dict[str, int]:
    t = table(QuarantineRow)
    q = select(t.c.source, func.count()).where(t.c.status == "open").group_by(t.c.source)
    with store.engine.connect() as conn:
        return {str(source): int(n) for source, n in conn.execute(q)}


def _last_held_error(store: Store, source: str) -> tuple[str, datetime | None]:
    t = table(QuarantineRow)
    q = (
        select(t.c.errors, t.c.last_seen_at)
        .where(t.c.source == source)
        .order_by(t.c.last_seen_at.desc(), t.c.id.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    if row is None:
        return "", None
    first = (row.errors or [{}])[0]
    said = f"{first.get('field', 'item')}: {first.get('message', 'held')}"
    return f"held: {said}", aware(row.last_seen_at)


def _has_tallies(store: Store) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(store.engine).has_table(SourceTallyRow.__tablename__))


# -- /metrics --------------------------------------------------------------------------------
class SourcesCollector:
    """The same per source, read at each scrape (schedules.yaml and sources.yaml as they
    are then). A file or store that does not answer gives no source series, not a failed
    scrape."""

    def __init__(
        self, store: Store, schedules_path: Path, sources_path: Path, clock: Any = None
    ) -> None:
        self.store = store
        self.schedules_path, self.sources_path = schedules_path, sources_path
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from datetime import UTC

        now = self.clock() if self.clock else datetime.now(UTC)
        try:
            statuses = source_statuses(
                self.store,
                load_schedules(self.schedules_path),
                push_specs(self.sources_path),
                now,
            )
        except (CsAutomationError, SQLAlchemyError, OSError) as exc:
            log.warning("metrics: the sources' status could not be read: %s", exc)
            return
        yield from source_metrics(statuses)


def source_metrics(statuses: Iterable[SourceStatus]) -> list[Metric]:
    labels = ["source", "kind"]
    enabled = GaugeMetricFamily(
        "csauto_source_enabled", "1 when the source is enabled", labels=labels
    )
    rows = CounterMetricFamily("csauto_source_rows", "Rows the source brought in", labels=labels)
    held = GaugeMetricFamily(
        "csauto_source_rows_held", "Open quarantine rows of the source", labels=labels
    )
    last = GaugeMetricFamily(
        "csauto_source_last_run_timestamp_seconds",
        "A pull's last run, a push source's last signal (unix seconds)",
        labels=labels,
    )
    lag = GaugeMetricFamily(
        "csauto_source_lag_seconds",
        "Seconds since the last run that finished well (a push source: its last signal)",
        labels=labels,
    )
    failing = GaugeMetricFamily(
        "csauto_source_last_run_failed", "1 when a pull's last run failed", labels=labels
    )
    for s in statuses:
        key = [s.name, s.kind]
        enabled.add_metric(key, int(s.enabled))
        rows.add_metric(key, s.brought)
        held.add_metric(key, s.held)
        failing.add_metric(key, int(s.outcome == "failed"))
        if s.last_run is not None:
            last.add_metric(key, s.last_run.timestamp())
        if s.lag is not None:
            lag.add_metric(key, s.lag.total_seconds())
    return [enabled, rows, held, last, lag, failing]
