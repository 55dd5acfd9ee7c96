"""CSAUTO_LOG_FORMAT=json: one JSON object per line, with the activity's workflow and the
account when known, and no secret in any field (message, extras, traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SECRET = "sk-live-observability-0123456789"

SCRIPT = textwrap.dedent(
    """
    import dataclasses, logging, os
    from temporalio import activity
    from temporalio.testing import ActivityEnvironment
    from csautomation import logs

    logs.setup(logging.INFO)
    logs.register(os.environ["OBS_SECRET"])  # as connectors.config.secret does
    log = logging.getLogger("csautomation.test")

    @activity.defn(name="create_crm_task")
    def create_crm_task(account: str) -> None:
        secret = os.environ["OBS_SECRET"]
        log.info("calling the CRM with %s", secret, extra={"account_id": account})
        try:
            raise RuntimeError(f"refused token {secret}")
        except RuntimeError:
            log.exception("vendor failed", extra={"account_id": account, "note": secret})

    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, activity_type="create_crm_task", workflow_id="playbook:r1:pb:ACME:7"
    )
    env.run(create_crm_task, "ACME")
    log.warning("outside any activity", extra={"account_id": "BETA"})
    """
)


def run_logged() -> list[str]:
    env = {**os.environ, "CSAUTO_LOG_FORMAT": "json", "OBS_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_json_lines_carry_the_context_and_never_a_secret() -> None:
    lines = run_logged()
    assert lines and all(SECRET not in line for line in lines)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    ours = [r for r in records if r["logger"] == "csautomation.test"]
    assert [r["level"] for r in ours] == ["INFO", "ERROR", "WARNING"]
    for r in ours:
        assert {"time", "level", "logger", "message", "account_id"} <= set(r)
    call, failure, outside = ours
    assert call["message"] == "calling the CRM with ***"
    assert call["account_id"] == "ACME"
    # from the activity's context (as ActivityEnvironment sets it up)
    assert call["workflow_id"] == failure["workflow_id"] == "playbook:r1:pb:ACME:7"
    assert call["run_id"] and call["activity"] == "create_crm_task"
    assert "refused token ***" in failure["exception"]
    assert failure["note"] == "***"
    assert outside["account_id"] == "BETA" and "workflow_id" not in outside
