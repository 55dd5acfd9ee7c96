"""/metrics on the API: every series is there, the intake's counters move per item, and
the store's series follow the rows, whoever wrote them."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from csautomation.store.engine import make_engine
from csautomation.store.repo import Store
from csautomation.store.tables import DeadLetterRow, PlaybookRunRow, RuleFiringRow
from observability.conftest import AUTH, scrape, value

SERIES = {
    # process-local
    "csauto_signals_accepted_total",
    "csauto_signals_rejected_total",
    "csauto_http_requests_total",
    "csauto_pipeline_pass_seconds",
    "csauto_pipeline_signals_evaluated_total",
    "csauto_pipeline_firings_dispatched_total",
    "csauto_pipeline_pass_errors_total",
    "csauto_connector_call_seconds",
    "csauto_connector_errors_total",
    "csauto_connector_breaker_state",
    # from the store
    "csauto_store_up",
    "csauto_signals_stored_total",
    "csauto_signals_pending",
    "csauto_quarantine_items",
    "csauto_rule_firings_total",
    "csauto_rule_firings_undispatched",
    "csauto_workflow_runs",
    "csauto_dead_letters",
    "csauto_dead_letters_waiting",
}


def usage(key: str, logins: object = 40) -> dict[str, object]:
    return {
        "type": "usage_daily",
        "account_id": "acme",
        "occurred_at": "2026-03-01T00:00:00Z",
        "payload": {"logins": logins, "active_users": 5},
        "idempotency_key": key,
    }


def test_metrics_serves_every_series_without_authentication(http: httpx.Client) -> None:
    names, samples = scrape(http)
    assert not SERIES - names, sorted(SERIES - names)
    assert value(samples, "csauto_store_up") == 1
    # the store as `populate` left it: one firing, dispatched by nobody, one escalation run
    assert value(samples, "csauto_rule_firings_total", rule="usage-drop") == 1
    assert value(samples, "csauto_rule_firings_undispatched") == 1
    assert value(samples, "csauto_workflow_runs", kind="escalation", status="running", outcome="")
    assert value(samples, "csauto_dead_letters", status="open") == 0


def test_accepted_and_rejected_signals_move_their_counters(http: httpx.Client) -> None:
    _, before = scrape(http)
    assert http.post("/v1/signals", json=usage("obs:1"), headers=AUTH).status_code == 202
    assert http.post("/v1/signals", json=usage("obs:1"), headers=AUTH).status_code == 202
    bad = [usage("obs:2", logins="many"), {**usage("obs:3"), "account_id": "nobody"}]
    assert http.post("/v1/signals", json=bad, headers=AUTH).status_code == 422
    assert http.post("/v1/signals", content=b"{not json", headers=AUTH).status_code == 422
    assert http.post("/v1/signals", json=usage("obs:4")).status_code == 401
    _, after = scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    accepted = "csauto_signals_accepted_total"
    rejected = "csauto_signals_rejected_total"
    assert moved(accepted, source="analytics", type="usage_daily") == 2  # a duplicate too
    assert moved(rejected, source="analytics", reason="invalid") == 1
    assert moved(rejected, source="analytics", reason="unknown_account") == 1
    assert moved(rejected, source="analytics", reason="unreadable") == 1
    assert moved(rejected, source="", reason="unauthenticated") == 1
    # the store's view: one new signal, waiting for a pipeline; three items quarantined
    assert moved("csauto_signals_stored_total") == 1
    assert moved("csauto_signals_pending") == 1
    assert moved("csauto_quarantine_items", source="analytics", status="open") == 3
    requests = "csauto_http_requests_total"
    assert moved(requests, method="POST", route="/v1/signals", status="202") == 2
    assert moved(requests, method="POST", route="/v1/signals", status="401") == 1
    assert moved(requests, method="GET", route="/metrics", status="200") == 1


def test_requests_are_counted_by_route_template(http: httpx.Client) -> None:
    _, before = scrape(http)
    for wid in ("escalation:a:1", "escalation:b:2"):
        assert http.get(f"/api/escalations/{wid}").status_code == 401
    assert http.get("/no/such/page").status_code in (401, 404)
    _, after = scrape(http)
    route = "/api/escalations/{workflow_id}"
    key = {"method": "GET", "route": route, "status": "401"}
    name = "csauto_http_requests_total"
    assert value(after, name, **key) - value(before, name, **key) == 2
    assert not any("escalation:a:1" in str(labels) for _, labels in after)


def test_the_store_series_follow_the_rows(http: httpx.Client, store: Store) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with store.session() as s:
        s.add(
            RuleFiringRow(
                rule_id="obs-rule",
                rule_version="v1",
                account_id="beta",
                window=7,
                priority="high",
                fired_at=at,
                explain={},
                dispatched_at=at,
            )
        )
        s.add(
            PlaybookRunRow(
                workflow_id="playbook:obs-rule:save:beta:7",
                rule_id="obs-rule",
                account_id="beta",
                status="completed",
                outcome="goal_met",
                closed_at=at,
            )
        )
        s.add(
            DeadLetterRow(
                idempotency_key="playbook:obs-rule:save:beta:7:notify",
                workflow_id="playbook:obs-rule:save:beta:7",
                step_id="notify",
                action="notify",
                connector="slack",
                account_id="beta",
                payload={"text": "hello"},
            )
        )
        s.commit()
    _, samples = scrape(http)
    assert value(samples, "csauto_rule_firings_total", rule="obs-rule") == 1
    assert value(samples, "csauto_rule_firings_undispatched") == 1  # populate's, still
    runs = {"kind": "playbook", "status": "completed", "outcome": "goal_met"}
    assert value(samples, "csauto_workflow_runs", **runs) == 1
    assert value(samples, "csauto_dead_letters", status="open") == 1
    assert value(samples, "csauto_dead_letters_waiting", on="person") == 1  # none due
    assert value(samples, "csauto_dead_letters_waiting", on="auto_redrive") == 0


def test_a_store_that_does_not_answer_is_a_series_not_a_failed_scrape(
    http: httpx.Client, store: Store
) -> None:
    working = store.engine
    store.engine = make_engine("sqlite:////nonexistent-folder/for/sure/csauto.db")
    try:
        names, samples = scrape(http)
    finally:
        store.engine.dispose()
        store.engine = working
    assert value(samples, "csauto_store_up") == 0
    assert "csauto_signals_stored_total" not in names
    assert "csauto_signals_accepted_total" in names  # this process's own still served
