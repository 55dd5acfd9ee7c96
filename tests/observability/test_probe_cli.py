"""`--metrics-port` (or CSAUTO_METRICS_PORT) on the processes that serve no HTTP of their
own: the real `csauto scheduler run` answers /health/live and /metrics on the port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from csautomation.bootstrap import settings
from csautomation.cli import app
from csautomation.cli.common import probing
from observability.conftest import parse

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["worker"], ["pipeline"], ["scheduler", "run"]])
def test_each_process_command_takes_a_metrics_port(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--metrics-port" in result.output


def test_the_environment_variable_starts_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAUTO_METRICS_PORT", "0")
    monkeypatch.setenv("CSAUTO_METRICS_HOST", "127.0.0.1")
    with probing(settings(), None) as probe:
        assert probe is not None
        assert httpx.get(probe.url + "/health/live", timeout=5).status_code == 200
    monkeypatch.delenv("CSAUTO_METRICS_PORT")
    with probing(settings(), None) as probe:
        assert probe is None  # off unless asked for


def test_the_scheduler_serves_liveness_and_metrics_on_its_port(tmp_path: Path) -> None:
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("completion_sync: {enabled: false}\n")  # no Temporal needed
    env = {
        **os.environ,
        "CSAUTO_DATA_DIR": str(tmp_path / "data"),
        "CSAUTO_METRICS_HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "csautomation", "scheduler", "run"]
    command += ["--schedules", str(schedules), "--metrics-port", "0"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # the process says where it listens once it does
            seen.append(line)
            found = re.search(r"metrics and liveness on (http://\S+)/metrics", line)
            if found:
                url = found.group(1)
                break
        else:
            pytest.fail("the scheduler stopped before serving:\n" + "".join(seen))
        with httpx.Client(base_url=url, timeout=5) as http:
            live = http.get("/health/live")
            assert live.status_code == 200 and live.json() == {"status": "live"}
            scraped = http.get("/metrics")
        assert scraped.status_code == 200
        names, _ = parse(scraped.text)
        assert "csauto_connector_breaker_state" in names
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
