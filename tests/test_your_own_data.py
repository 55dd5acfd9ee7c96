"""The README's "Your own data": its two CSV files and exactly its commands, run as a user
runs them (real `csauto` processes, the bundled Temporal dev server), reach a rule firing
and a created task. Only the signal's date is moved to yesterday, as the README asks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from csautomation.runtime.server import free_port
from stress import csauto

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Your own data", 1)[1].split("\n## ", 1)[0]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", SECTION, re.S)


def commands() -> list[list[str]]:
    (shell,) = blocks("sh")
    return [line.split("#")[0].split() for line in shell.splitlines() if line.strip()]


def environment(tmp_path: Path) -> dict[str, str]:
    """The shipped configuration, a data folder of this test's own, a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSAUTO_")}
    env.pop("COLUMNS", None)
    return env | {
        "CSAUTO_DATA_DIR": str(tmp_path / ".csauto"),
        "CSAUTO_DEV_PORT": str(free_port()),
        "CSAUTO_RULES_PATH": str(ROOT / "rules"),
        "CSAUTO_PLAYBOOKS_PATH": str(ROOT / "workflows"),
        "CSAUTO_CONNECTORS_PATH": str(ROOT / "connectors"),
        "CSAUTO_ESCALATION_MATRIX_PATH": str(ROOT / "escalation_matrix.yaml"),
        "CSAUTO_PEOPLE_PATH": str(ROOT / "people.yaml"),
        "CSAUTO_SOURCES_PATH": str(ROOT / "sources.yaml"),
        "CSAUTO_SCHEDULES_PATH": str(ROOT / "schedules.yaml"),
        "CSAUTO_HEALTH_MODEL_PATH": str(ROOT / "health_model.yaml"),
        "COLUMNS": "250",
    }


def run(argv: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [csauto(), *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_readme_reaches_a_task_in_four_commands(tmp_path: Path) -> None:
    accounts, signals = blocks("csv")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT09:30:00Z")
    (tmp_path / "accounts.csv").write_text(accounts, encoding="utf-8")
    dated = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", yesterday, signals)
    (tmp_path / "signals.csv").write_text(dated, encoding="utf-8")
    env = environment(tmp_path)
    steps = commands()
    assert [s[:2] for s in steps] == [
        ["csauto", "accounts"],
        ["csauto", "ingest"],
        ["csauto", "dev"],
        ["csauto", "tasks"],
    ]
    imported = run(steps[0], tmp_path, env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "2 accepted (2 new" in imported.stdout
    ingested = run(steps[1], tmp_path, env)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    assert "1 accepted" in ingested.stdout
    dev = subprocess.Popen(
        [csauto(), *steps[2][1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            listed = run(steps[3], tmp_path, env)
            if "Champion left Acme Corp" in listed.stdout:
                break
            assert dev.poll() is None, "csauto dev ended early"
            assert time.monotonic() < deadline, "no task within 120 s:\n" + listed.stdout
    finally:
        dev.send_signal(signal.SIGTERM)
        output = dev.communicate(timeout=90)[0].decode()
    assert dev.returncode == 0, output
    row = next(line for line in listed.stdout.splitlines() if "Champion left" in line)
    assert "csm-01" in row and "ACME-001" in row and "None" not in row
