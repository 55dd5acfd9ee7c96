"""SlackNotifier and WebhookNotifier against a fake receiver over real HTTPS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from csautomation.connectors.base import NotifyRequest
from csautomation.connectors.config import SlackConfig, WebhookConfig
from csautomation.connectors.slack import SlackNotifier
from csautomation.connectors.webhook import WebhookNotifier, sign, verify_signature
from csautomation.errors import (
    ConnectorAuthError,
    ConnectorNotFoundError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
    ConnectorValidationError,
)
from factories import account
from fakes.hooks import FakeHooks
from fakes.server import Faults

NOW = 1_900_000_000


def note(
    key: str = "playbook:r1:ACME:2030-03:alert", text: str = "Acme is at risk"
) -> NotifyRequest:
    return NotifyRequest(key, "playbook:r1:ACME:2030-03", "alert", account(), "#cs-alerts", text)


@pytest.fixture
def fake() -> Iterator[FakeHooks]:
    server = FakeHooks()
    with server:
        yield server


@pytest.fixture
def slack(fake: FakeHooks, tmp_path: Path) -> Iterator[Any]:
    made: list[SlackNotifier] = []

    def build(url: str | None = None, env: dict[str, str] | None = None) -> SlackNotifier:
        cfg = SlackConfig.model_validate(
            {
                "id": "slack",
                "type": "slack",
                "webhook_url_env": "SLACK_WEBHOOK_URL",
                "timeout": "0.5s",
            }
        )
        env = {"SLACK_WEBHOOK_URL": url or fake.slack_url()} if env is None else env
        notifier = SlackNotifier(cfg, env, fake.ca_file(tmp_path))
        made.append(notifier)
        return notifier

    yield build
    for notifier in made:
        notifier.close()


@pytest.fixture
def hook(fake: FakeHooks, tmp_path: Path) -> Iterator[Any]:
    made: list[WebhookNotifier] = []

    def build(key: str | None = None, env: dict[str, str] | None = None) -> WebhookNotifier:
        cfg = WebhookConfig.model_validate(
            {
                "id": "ops-hook",
                "type": "webhook",
                "url": f"{fake.url}/hook",
                "secret_env": "HOOK_SECRET",
                "timeout": "0.5s",
            }
        )
        env = {"HOOK_SECRET": key or fake.secret} if env is None else env
        notifier = WebhookNotifier(cfg, env, fake.ca_file(tmp_path))
        made.append(notifier)
        return notifier

    yield build
    for notifier in made:
        notifier.close()


# -- Slack ----------------------------------------------------------------------------------
def test_slack_posts_the_text(fake: FakeHooks, slack: Any) -> None:
    receipt = slack().notify(note())
    assert receipt.record_id == "playbook:r1:ACME:2030-03:alert" and receipt.created
    assert fake.slack_messages == [{"text": "Acme is at risk"}]
    [call] = fake.requests
    assert call.headers["content-type"] == "application/json"


def test_slack_invalid_payload_is_a_validation_error(fake: FakeHooks, slack: Any) -> None:
    with pytest.raises(ConnectorValidationError, match="invalid_payload") as caught:
        slack().notify(note(text=""))
    assert caught.value.status == 400 and not caught.value.retryable
    assert fake.slack_messages == []


def test_slack_errors_never_show_the_webhook_url(fake: FakeHooks, slack: Any) -> None:
    url = fake.slack_url("T0001/B0001/revokedrevokedrevokedrevo")
    with pytest.raises(ConnectorNotFoundError, match="no_service") as caught:
        slack(url).notify(note())
    assert "revokedrevoked" not in str(caught.value) and url not in str(caught.value)
    fake.faults = Faults(1.0, ("reset",))
    with pytest.raises(ConnectorUnavailableError) as reset:
        slack(url).notify(note())
    assert "revokedrevoked" not in str(reset.value)


def test_slack_429_waits_for_retry_after(fake: FakeHooks, slack: Any) -> None:
    fake.faults = Faults(1.0, ("429",))
    with pytest.raises(ConnectorRateLimitedError) as caught:
        slack().notify(note())
    assert caught.value.retry_after == 1.0


def test_slack_check_verifies_the_variable_without_posting(fake: FakeHooks, slack: Any) -> None:
    assert "SLACK_WEBHOOK_URL" in slack().check()
    assert fake.requests == []
    with pytest.raises(ConnectorAuthError, match="SLACK_WEBHOOK_URL is not set") as missing:
        slack(env={}).check()
    assert not missing.value.retryable
    plain = "http://hooks.example.com/services/T0/B0/plaintextsecret"
    with pytest.raises(ConnectorAuthError, match="https webhook URL") as insecure:
        slack(plain).notify(note())
    assert "plaintextsecret" not in str(insecure.value) and fake.requests == []


# -- signed webhook ---------------------------------------------------------------------------
def test_the_webhook_delivers_a_signed_body_the_receiver_verifies(
    fake: FakeHooks, hook: Any
) -> None:
    receipt = hook().notify(note())
    assert receipt.record_id == "playbook:r1:ACME:2030-03:alert"
    assert fake.deliveries == {
        "playbook:r1:ACME:2030-03:alert": {
            "idempotency_key": "playbook:r1:ACME:2030-03:alert",
            "workflow_id": "playbook:r1:ACME:2030-03",
            "step_id": "alert",
            "account_id": "ACME",
            "channel": "#cs-alerts",
            "text": "Acme is at risk",
        }
    }
    [call] = fake.requests
    assert call.headers["x-csauto-signature"] == sign(
        fake.secret, call.headers["x-csauto-timestamp"], call.body
    )
    hook().notify(note())  # a retry: the receiver deduplicates on Idempotency-Key
    assert len(fake.deliveries) == 1 and fake.repeats == 1


def test_a_wrong_secret_is_refused_and_never_shown(fake: FakeHooks, hook: Any) -> None:
    wrong = "whsec-wrong-9876543210"
    with pytest.raises(ConnectorAuthError) as caught:
        hook(wrong).notify(note())
    assert caught.value.status == 401 and wrong not in str(caught.value)
    assert fake.deliveries == {}


def test_the_webhook_check_needs_the_secret(hook: Any) -> None:
    assert "HOOK_SECRET" in hook().check()
    with pytest.raises(ConnectorAuthError, match="HOOK_SECRET is not set"):
        hook(env={}).check()


def test_verify_signature_rejects_tampering_staleness_and_garbage() -> None:
    body = json.dumps({"text": "Acme is at risk"}).encode()
    good = sign("s3cret-key", NOW, body)
    assert verify_signature("s3cret-key", str(NOW), body, good, now=NOW + 10)
    assert verify_signature("s3cret-key", NOW, body.decode(), good, now=NOW)
    assert not verify_signature("s3cret-key", NOW, body.replace(b"risk", b"ease"), good, now=NOW)
    assert not verify_signature("other-key", NOW, body, good, now=NOW)
    assert not verify_signature("s3cret-key", NOW, body, good, now=NOW + 301)
    assert not verify_signature("s3cret-key", NOW, body, good, now=NOW - 301)
    assert not verify_signature("s3cret-key", "yesterday", body, good, now=NOW)
    assert not verify_signature("s3cret-key", NOW, body, good.upper(), now=NOW)
