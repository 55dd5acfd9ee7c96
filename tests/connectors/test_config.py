"""connectors/*.yaml, `csauto connectors` and `csauto dlq`: clear verdicts, located errors
that never repeat a secret, and re-drives that create each record once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.connectors.loader import build_connectors, load_connectors
from csautomation.errors import ConfigFileError
from csautomation.store.deadletters import DeadLetter, dead_letters, record_dead_letter
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.types import EscalationNotice
from factories import playbook_store

ROOT = Path(__file__).parents[2]
runner = CliRunner()


def test_every_shipped_connector_validates_and_only_local_is_enabled() -> None:
    configs = load_connectors([ROOT / "connectors"])
    assert set(configs) == {"local", "salesforce", "zendesk", "hubspot", "slack", "webhook"}
    assert [c.id for c in configs.values() if c.enabled] == ["local"]
    assert configs["salesforce"].timeout == timedelta(seconds=10)


def test_a_broken_file_is_located_and_a_secret_in_it_is_never_repeated(tmp_path: Path) -> None:
    (tmp_path / "sf.yaml").write_text(
        "connector:\n"
        "  id: sf\n"
        "  type: salesforce\n"
        "  auth:\n"
        "    method: password\n"
        "    password_env: 'hunter2-Secret!'\n"
        "  timeout: 10 seconds\n"
    )
    with pytest.raises(ConfigFileError) as caught:
        load_connectors([tmp_path])
    text = str(caught.value)
    assert f"{tmp_path / 'sf.yaml'}:6:5: connector.auth.password_env: must be the NAME" in text
    assert ":7:3: connector.timeout: expected a duration such as 500ms" in text
    assert "hunter2" not in text


def test_two_defaults_for_one_capability_are_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            f"connector: {{id: {name}, type: local, default_for: [tasks]}}\n"
        )
    with pytest.raises(ConfigFileError, match="'tasks' has two default connectors: a, b"):
        load_connectors([tmp_path])


def test_without_vendors_every_capability_is_served_locally(db_url: str) -> None:
    store = playbook_store(db_url)
    connectors = build_connectors(load_connectors([ROOT / "connectors"]), store, env={})
    assert connectors.tasks(None).name == "local"
    assert connectors.notifier("slack").name == "local"  # disabled: the local fallback


@pytest.mark.usefixtures("store")  # status reads a store, and never makes one
def test_check_and_status_give_a_verdict_for_every_shipped_connector(db_url: str) -> None:
    env = {"CSAUTO_DATABASE_URL": db_url}
    checked = runner.invoke(app, ["connectors", "check"], env=env, terminal_width=200)
    assert checked.exit_code == 0, checked.output
    for name in ("salesforce", "zendesk", "hubspot", "slack", "webhook"):
        line = next(x for x in checked.output.splitlines() if f" {name} " in x)
        assert "disabled" in line
    for variable in ("SF_USERNAME", "SF_CLIENT_SECRET", "ZENDESK_API_TOKEN", "HUBSPOT_TOKEN"):
        assert variable in checked.output  # what to set, never a value
    status = runner.invoke(app, ["connectors", "status"], env=env, terminal_width=200)
    assert status.exit_code == 0, status.output
    assert all(f" {n} " in status.output for n in ("local", "salesforce", "zendesk"))


def dead_task(store: Store, workflow_id: str) -> None:
    now = datetime(2026, 11, 1, 9, tzinfo=UTC)
    record_dead_letter(
        store,
        DeadLetter(
            idempotency_key=f"{workflow_id}:call",
            workflow_id=workflow_id,
            step_id="call",
            action="create_task",
            connector="local",
            account_id="ACME",
            payload={
                "idempotency_key": f"{workflow_id}:call",
                "workflow_id": workflow_id,
                "step_id": "call",
                "account_id": "ACME",
                "connector": None,
                "assignee": "owner",
                "subject": "Call {{ account.name }}",
                "description": "",
                "due_at": now.isoformat(),
                "priority": "high",
                "context": {},
            },
            errors=[{"type": "ConnectorUnavailableError", "message": "HTTP 503"}],
            attempts=8,
            first_failure=now,
            last_failure=now,
        ),
    )


def test_dlq_retry_redrives_each_once_and_discard_closes(db_url: str) -> None:
    store = playbook_store(db_url)
    for wf in ("playbook:a", "playbook:b", "playbook:c"):
        dead_task(store, wf)
    dead_task(store, "playbook:a")  # recorded twice: still one entry
    env = {
        "CSAUTO_DATABASE_URL": db_url,
        "CSAUTO_TEMPORAL_ADDRESS": "127.0.0.1:1",  # nothing listens: playbooks not told
    }
    listed = runner.invoke(app, ["dlq", "list"], env=env, terminal_width=200)
    assert "3 dead letter(s)" in listed.output
    discard = runner.invoke(app, ["dlq", "discard", "3"], env=env)
    assert discard.exit_code == 0, discard.output
    retried = runner.invoke(app, ["dlq", "retry", "--all"], env=env, terminal_width=200)
    assert retried.exit_code == 0, retried.output
    assert "2 re-driven, 0 still failing" in retried.output
    assert "playbooks were not told" in retried.output
    tasks = local_tasks(store)
    assert sorted(t.workflow_id for t in tasks) == ["playbook:a", "playbook:b"]
    assert tasks[0].subject == "Call Acme Corp"
    again = runner.invoke(app, ["dlq", "retry", "--all"], env=env)
    assert again.exit_code == 0 and "no open dead letter" in again.output  # nothing to do
    assert len(local_tasks(store)) == 2
    assert [d.status for d in dead_letters(store, None)] == ["redriven", "redriven", "discarded"]
    shown = runner.invoke(app, ["dlq", "show", "1"], env=env)
    assert '"record_id": "1"' in shown.output or '"record_id": "2"' in shown.output


def test_dlq_retry_redrives_an_escalation_notice_once(db_url: str) -> None:
    store = playbook_store(db_url)
    wid = "escalation:r1:ACME:7"
    now = datetime(2026, 11, 1, 9, tzinfo=UTC)
    notice = EscalationNotice(
        idempotency_key=f"{wid}:L1.0:local:csm-01",
        workflow_id=wid,
        step_id="L1.0:local:csm-01",
        account_id="ACME",
        severity="high",
        reason="usage fell",
        level=1,
        channel="local",
        person_id="csm-01",
        ack_by=now,
    )
    record_dead_letter(
        store,
        DeadLetter(
            idempotency_key=notice.idempotency_key,
            workflow_id=wid,
            step_id=notice.step_id,
            action="notify_escalation",
            connector="local",
            account_id="ACME",
            payload=notice.model_dump(mode="json"),
            errors=[{"type": "ConnectorUnavailableError", "message": "HTTP 503"}],
            attempts=8,
            first_failure=now,
            last_failure=now,
        ),
    )
    env = {
        "CSAUTO_DATABASE_URL": db_url,
        "CSAUTO_TEMPORAL_ADDRESS": "127.0.0.1:1",
    }
    for _ in range(2):  # the second finds nothing open
        runner.invoke(app, ["dlq", "retry", "--all"], env=env, terminal_width=200)
    [task] = local_tasks(store, wid)
    assert (task.assignee, task.step_id) == ("csm-01", "L1.0:local:csm-01")
    assert dead_letters(store) == []


def test_a_ca_bundle_is_found_beside_its_file_and_a_missing_one_is_located(
    tmp_path: Path,
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "proxy-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "hs.yaml").write_text(
        "connector:\n"
        "  id: hs\n"
        "  type: hubspot\n"
        "  auth: {token_env: HUBSPOT_TOKEN}\n"
        "  ca_bundle: certs/proxy-ca.pem\n"
    )
    found = load_connectors([tmp_path])["hs"]
    assert found.ca_bundle == str((tmp_path / "certs" / "proxy-ca.pem").resolve())
    (tmp_path / "hs.yaml").write_text(
        (tmp_path / "hs.yaml").read_text().replace("certs/proxy-ca.pem", "certs/nope.pem")
    )
    with pytest.raises(ConfigFileError) as caught:
        load_connectors([tmp_path])
    said = str(caught.value)
    assert f"{tmp_path / 'hs.yaml'}:5:3: connector.ca_bundle: no CA bundle at " in said
    assert str(tmp_path / "certs" / "nope.pem") in said


def test_limits_out_of_range_are_located(tmp_path: Path) -> None:
    (tmp_path / "sf.yaml").write_text(
        "connector:\n"
        "  id: sf\n"
        "  type: salesforce\n"
        "  auth: {method: session}\n"
        "  daily_api: {stop_at: 1.5}\n"
    )
    (tmp_path / "hs.yaml").write_text(
        "connector:\n"
        "  id: hs\n"
        "  type: hubspot\n"
        "  auth: {token_env: HUBSPOT_TOKEN}\n"
        "  search_rate_limit: {per_second: 0}\n"
        "  index_wait: {attempts: 50}\n"
    )
    (tmp_path / "zd.yaml").write_text(
        "connector:\n"
        "  id: zd\n"
        "  type: zendesk\n"
        "  subdomain: acme\n"
        "  auth: {email_env: ZD_EMAIL, token_env: ZD_TOKEN}\n"
        "  plan: gold\n"
    )
    with pytest.raises(ConfigFileError) as caught:
        load_connectors([tmp_path])
    text = str(caught.value)
    assert (
        f"{tmp_path / 'sf.yaml'}:5:15: connector.daily_api.stop_at: must be less than or " in text
    )
    assert f"{tmp_path / 'hs.yaml'}:5:23: connector.search_rate_limit.per_second: must be " in text
    assert f"{tmp_path / 'hs.yaml'}:6:16: connector.index_wait.attempts: must be less " in text
    assert f"{tmp_path / 'zd.yaml'}:6:3: connector.plan: expected one of 'team', " in text
