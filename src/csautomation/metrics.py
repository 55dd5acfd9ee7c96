"""Prometheus metrics (all named `csauto_*`), served honestly by separate processes.

Two kinds of series:

- **Process-local**: what a process does and nobody else can see, counted by the
  instruments below on prometheus_client's default registry and served by that process
  (the API's `/metrics`; `--metrics-port` for `worker`, `pipeline` and `scheduler run`).
  They start at zero with the process, as counters do.

      csauto_signals_accepted_total{source,type}      API: items answered 202 (duplicates too)
      csauto_signals_rejected_total{source,reason}    API: items refused or quarantined; a
                                                      body refused whole counts once
      csauto_http_requests_total{method,route,status} API: by route template
      csauto_pipeline_pass_seconds{step}              pipeline: evaluate / dispatch passes
      csauto_pipeline_signals_evaluated_total         pipeline
      csauto_pipeline_firings_dispatched_total        pipeline
      csauto_pipeline_pass_errors_total{step}         pipeline: failed passes (retried)
      csauto_pipeline_signals_held_total{reason}      pipeline: signals held in quarantine
      csauto_connector_call_seconds{connector,operation}  worker: each guarded vendor request
      csauto_connector_errors_total{connector,kind}   worker: unavailable, rate_limited, auth,
                                                      not_found, validation, circuit_open,
                                                      throttled (our own limit), internal
      csauto_connector_breaker_state{connector}       worker: 0 closed, 1 half-open, 2 open
      csauto_owner_unresolved_total{connector,outcome}  worker: tasks whose person has no
                                                      user at the vendor: fallback (given to
                                                      the connector's fallback_owner) or
                                                      refused (a dead letter)
      csauto_dead_letter_redrives_total{connector,outcome}  scheduler (and `dlq retry`):
                                                      redriven, failed, deferred (a wait
                                                      for our own breaker)

- **Shared**: what the database holds, read at scrape time by a few aggregate queries
  (`StoreCollector`), so they are right whichever process did the work and survive
  restarts. Only the API serves them, so that no series is scraped twice.

      csauto_signals_stored_total                     every signal stored
      csauto_signals_pending                          stored, not yet evaluated (indexed)
      csauto_quarantine_items{source,status}          open, reprocessed, discarded
      csauto_rule_firings_total{rule}
      csauto_rule_firings_undispatched                firings whose workflows are not started
      csauto_workflow_runs{kind,status,outcome}       the playbook_runs index
      csauto_dead_letters{status}                     open, redriven, discarded
      csauto_dead_letters_waiting{on}                 the open ones: auto_redrive, person
      csauto_store_up                                 1 when the queries above answered
      csauto_source_enabled{source,kind}              each pull (schedules.yaml) and push
      csauto_source_rows_total{source,kind}           source (sources.yaml): rows brought in,
      csauto_source_rows_held{source,kind}            open quarantine rows, last run (unix
      csauto_source_last_run_timestamp_seconds{...}   seconds), lag since the last good run,
      csauto_source_lag_seconds{source,kind}          1 when the last run failed; the same as
      csauto_source_last_run_failed{source,kind}      `csauto sources status`
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csautomation.errors import (
    CircuitOpenError,
    ConnectorAuthError,
    ConnectorNotFoundError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from csautomation.store.tables import (
    DeadLetterRow,
    PlaybookRunRow,
    QuarantineRow,
    RuleFiringRow,
    SignalRow,
)

if TYPE_CHECKING:
    from csautomation.store.repo import Store

log = logging.getLogger(__name__)

# -- process-local instruments ----------------------------------------------------------------
SIGNALS_ACCEPTED = Counter(
    "csauto_signals_accepted", "Signals answered 202 (new or duplicate)", ["source", "type"]
)
SIGNALS_REJECTED = Counter(
    "csauto_signals_rejected",
    "Signals refused or quarantined, per item (a body refused whole counts once)",
    ["source", "reason"],
)
HTTP_REQUESTS = Counter(
    "csauto_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
PIPELINE_PASS = Histogram(
    "csauto_pipeline_pass_seconds", "Duration of pipeline passes that did work", ["step"]
)
PIPELINE_EVALUATED = Counter("csauto_pipeline_signals_evaluated", "Signals evaluated")
PIPELINE_PARTITIONS = Gauge(
    "csauto_pipeline_partitions_held", "Account partitions this pipeline holds the lease of"
)
PIPELINE_DISPATCHED = Counter(
    "csauto_pipeline_firings_dispatched", "Firings whose workflows were started"
)
PIPELINE_ERRORS = Counter(
    "csauto_pipeline_pass_errors", "Pipeline passes that failed (and are retried)", ["step"]
)
PIPELINE_HELD = Counter(
    "csauto_pipeline_signals_held",
    "Stored signals the pipeline could not evaluate, held in the quarantine",
    ["reason"],
)
CONNECTOR_SECONDS = Histogram(
    "csauto_connector_call_seconds",
    "Duration of each guarded vendor request",
    ["connector", "operation"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONNECTOR_ERRORS = Counter(
    "csauto_connector_errors", "Vendor requests that failed or were not made", ["connector", "kind"]
)
BREAKER_STATE = Gauge(
    "csauto_connector_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open",
    ["connector"],
)
OWNER_UNRESOLVED = Counter(
    "csauto_owner_unresolved",
    "Vendor tasks whose person has no user at the vendor, by outcome: fallback or refused",
    ["connector", "outcome"],
)
BREAKER_CODES = {"closed": 0, "half_open": 1, "open": 2}
REDRIVES = Counter(
    "csauto_dead_letter_redrives",
    "Dead-letter re-drives, automatic or by hand, by outcome",
    ["connector", "outcome"],
)

# the most specific class first: CircuitOpenError is a ConnectorUnavailableError
_ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (CircuitOpenError, "circuit_open"),
    (ConnectorRateLimitedError, "rate_limited"),
    (ConnectorUnavailableError, "unavailable"),
    (ConnectorAuthError, "auth"),
    (ConnectorNotFoundError, "not_found"),
    (ConnectorValidationError, "validation"),
)


def error_kind(exc: BaseException) -> str:
    """A connector error's label: its class in a word; `internal` for our own bugs."""
    return next((kind for cls, kind in _ERROR_KINDS if isinstance(exc, cls)), "internal")


# the intake's children by labels: a dictionary look-up is a fraction of `labels()`, which
# the hot path (one signal per request, thousands a second) would pay each time
_children: dict[tuple[str, str, str], Any] = {}


def _count(metric: Counter, name: str, source: str, values: Iterable[str]) -> None:
    for value in values:
        child = _children.get((name, source, value))
        if child is None:
            child = _children[(name, source, value)] = metric.labels(source, value)
        child.inc()


def count_accepted(source: str, types: Iterable[str]) -> None:
    _count(SIGNALS_ACCEPTED, "accepted", source, types)


def count_rejected(source: str, reasons: Iterable[str]) -> None:
    _count(SIGNALS_REJECTED, "rejected", source, reasons)


# -- the database's series --------------------------------------------------------------------
class StoreCollector:
    """The shared series, read from the store at each scrape: a handful of `COUNT ...
    GROUP BY` queries, each over an indexed column or a small table (the signals count is
    the one full count, of the table's smallest index). A store that does not answer gives
    `csauto_store_up 0` and no other series, rather than a failed scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        return []  # no collection at registration

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._read()
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer: %s", type(exc).__name__)
            families = []
        yield GaugeMetricFamily(
            "csauto_store_up", "1 when the store answered this scrape", value=int(bool(families))
        )
        yield from families

    def _read(self) -> list[Metric]:
        stored = CounterMetricFamily("csauto_signals_stored", "Signals stored")
        pending = GaugeMetricFamily("csauto_signals_pending", "Signals stored, not yet evaluated")
        quarantine = GaugeMetricFamily(
            "csauto_quarantine_items", "Quarantined items", labels=["source", "status"]
        )
        firings = CounterMetricFamily("csauto_rule_firings", "Rule firings", labels=["rule"])
        undispatched = GaugeMetricFamily(
            "csauto_rule_firings_undispatched", "Firings whose workflows are not started yet"
        )
        runs = GaugeMetricFamily(
            "csauto_workflow_runs",
            "Workflows started from firings, by kind, status and outcome",
            labels=["kind", "status", "outcome"],
        )
        dead = GaugeMetricFamily("csauto_dead_letters", "Dead letters", labels=["status"])
        waits_on = GaugeMetricFamily(
            "csauto_dead_letters_waiting",
            "Open dead letters by what they wait on: the automatic re-drive, or a person",
            labels=["on"],
        )
        with self.store.engine.connect() as conn:

            def groups(*columns: Any) -> list[Any]:
                return list(conn.execute(select(*columns, func.count()).group_by(*columns)))

            def count(model: Any, where: Any = None) -> int:
                q = select(func.count()).select_from(model)
                return int(conn.execute(q if where is None else q.where(where)).scalar_one())

            stored.add_metric([], count(SignalRow))
            pending.add_metric([], count(SignalRow, col(SignalRow.evaluated_at).is_(None)))
            for source, status, n in groups(col(QuarantineRow.source), col(QuarantineRow.status)):
                quarantine.add_metric([source, status], n)
            for rule, n in groups(col(RuleFiringRow.rule_id)):
                firings.add_metric([rule], n)
            waiting = col(RuleFiringRow.dispatched_at).is_(None)
            undispatched.add_metric([], count(RuleFiringRow, waiting))
            for kind, status, outcome, n in groups(
                col(PlaybookRunRow.kind), col(PlaybookRunRow.status), col(PlaybookRunRow.outcome)
            ):
                runs.add_metric([kind, status, outcome], n)
            for status, n in groups(col(DeadLetterRow.status)):
                dead.add_metric([status], n)
            is_open = col(DeadLetterRow.status) == "open"
            due = col(DeadLetterRow.next_redrive_at).is_not(None)
            waits_on.add_metric(["auto_redrive"], count(DeadLetterRow, is_open & due))
            waits_on.add_metric(["person"], count(DeadLetterRow, is_open & ~due))
        return [stored, pending, quarantine, firings, undispatched, runs, dead, waits_on]


class _Forward:
    """Another registry's collectors, served through this one (no name checks twice)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def api_registry(store: Store, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """What the API's /metrics serves: this process's instruments and the store's series
    (with `extra`: the data sources' series, csautomation.scheduling.source_status)."""
    registry = CollectorRegistry()
    registry.register(_Forward(REGISTRY))
    registry.register(StoreCollector(store))
    for collector in extra:
        registry.register(collector)
    return registry


def exposition(registry: Collector, accept: str = "") -> tuple[bytes, str]:
    """The scrape body and its content type, in the format the scraper accepts."""
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


# -- the API's request counts -----------------------------------------------------------------
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts each HTTP request by method, route template (`/api/escalations/{workflow_id}`,
    so ids do not multiply the series) and status. In front of everything, the signal
    intake included: one dictionary look-up and one increment per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._count(scope, status)

    def _count(self, scope: Scope, status: int) -> None:
        route = getattr(scope.get("route"), "path", None)
        if route is None:  # the intake answers before any routing; else no route matched
            route = scope["path"] if scope["path"] == "/v1/signals" else "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_REQUESTS.labels(method, route, str(status))
        child.inc()
