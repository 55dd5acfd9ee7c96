"""Issue 19's "done when": a playbook edited under a running `csauto dev` changes what the
next firing starts, and the log says which version. A real `csauto dev` (the bundled
Temporal dev server, its worker, pipeline and intake) on copies of the shipped rules and
playbooks: a champion leaves one account, the playbook's first task subject is edited, a
champion leaves another account; the first run keeps the version it started with, the
second starts the edited one, and the process log names the reload and both versions."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from csautomation.playbooks.loader import load_playbooks
from stress import csauto
from test_your_own_data import ROOT, environment, run

T = TypeVar("T")
TOKEN = "reload-test-token-0123456789"
SOURCES = """\
sources:
  test:
    auth: token
    secret_env: CSAUTO_SOURCE_TEST_TOKEN
"""
ACCOUNTS = """\
id,name,tier,owner
ACME-001,Acme Corp,mid_market,csm-01
INITECH-003,Initech,mid_market,csm-02
"""
OLD_SUBJECT = "Champion left {{ account.name }}: map the new stakeholders"
NEW_SUBJECT = "New champion needed at {{ account.name }}: map who decides now"


@dataclass
class Dev:
    """A running `csauto dev`, its output read as it comes (never left to fill a pipe)."""

    proc: subprocess.Popen[str]
    port: int
    db: Path
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def tasks(self) -> dict[str, str]:
        """Task subjects by account, from the built-in CRM's table."""
        if not self.db.exists():
            return {}
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            try:
                rows = conn.execute(
                    "select account_id, subject from local_tasks where kind = 'task'"
                ).fetchall()
            except sqlite3.OperationalError:  # the schema is not there yet
                return {}
        return dict(rows)

    def runs(self) -> dict[str, str]:
        """champion-change's version by account, from the runs index."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "select account_id, playbook_version from playbook_runs "
                "where kind = 'playbook' and playbook_id = 'champion-change'"
            ).fetchall()
        return dict(rows)


def until(check: Callable[[], T], what: str, dev: Dev, limit: float = 120.0) -> T:
    """Poll `check` until it is truthy; fail with the process's output at the deadline or
    when the process ends."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert dev.proc.poll() is None, f"csauto dev ended early:\n{dev.output}"
        assert time.monotonic() < deadline, f"no {what} within {limit:g} s:\n{dev.output}"
        time.sleep(0.1)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    """`csauto dev` on copies of rules/ and workflows/, two accounts imported, the intake
    open to one token source; stopped with SIGTERM, which it must survive with exit 0."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    (tmp_path / "sources.yaml").write_text(SOURCES, encoding="utf-8")
    (tmp_path / "accounts.csv").write_text(ACCOUNTS, encoding="utf-8")
    env = environment(tmp_path) | {
        "CSAUTO_RULES_PATH": str(tmp_path / "rules"),
        "CSAUTO_PLAYBOOKS_PATH": str(tmp_path / "workflows"),
        "CSAUTO_SOURCES_PATH": str(tmp_path / "sources.yaml"),
        "CSAUTO_SOURCE_TEST_TOKEN": TOKEN,
    }
    imported = run(["csauto", "accounts", "import", "accounts.csv"], tmp_path, env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    proc = subprocess.Popen(
        [csauto(), "dev"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Dev(proc, int(env["CSAUTO_DEV_PORT"]), tmp_path / ".csauto" / "csauto.db")
    reader = threading.Thread(target=running.read, daemon=True)
    reader.start()
    try:
        until(lambda: live(running.port), "review page", running)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 0, running.output


def live(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def champion_left(port: int, account_id: str) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT09:30:00Z")
    body = {
        "type": "stakeholder_change",
        "account_id": account_id,
        "occurred_at": yesterday,
        "payload": {"role": "champion", "change": "left", "person": "Dana Reyes"},
        "idempotency_key": f"reload-test:{account_id}",
    }
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/signals",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert response.status_code < 300, response.text


def test_a_playbook_edited_under_csauto_dev_changes_what_the_next_firing_starts(
    dev: Dev, tmp_path: Path
) -> None:
    workflows = tmp_path / "workflows"
    old = load_playbooks([workflows])["champion-change"].version
    champion_left(dev.port, "ACME-001")
    first = until(lambda: dev.tasks().get("ACME-001"), "task for ACME-001", dev)
    assert first == "Champion left Acme Corp: map the new stakeholders"

    path = workflows / "champion-change.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(OLD_SUBJECT) == 1
    path.write_text(text.replace(OLD_SUBJECT, NEW_SUBJECT), encoding="utf-8")
    new = load_playbooks([workflows])["champion-change"].version
    assert new != old
    line = f"reloaded playbooks: champion-change version {new} (was {old})"
    until(lambda: line in dev.output, "reload line", dev)

    champion_left(dev.port, "INITECH-003")
    second = until(lambda: dev.tasks().get("INITECH-003"), "task for INITECH-003", dev)
    assert second == "New champion needed at Initech: map who decides now"
    assert dev.tasks()["ACME-001"] == "Champion left Acme Corp: map the new stakeholders"
    assert dev.runs() == {"ACME-001": old, "INITECH-003": new}
    assert "do not validate" not in dev.output
