"""Every `csauto` command that touches Temporal, run N times on a busy machine: how each ended.

The measurement behind "commands never abort" (csautomation.runner): a small demo builds a
data folder (playbooks, escalations, tasks); `csauto dev` serves it as the backdrop; then
each command runs N times in its own process while `--load` processes spin on the CPU, and
the exit codes, hangs and times are printed per command. Long-running commands (dev, worker,
pipeline, scheduler, serve) get SIGTERM once they say they are up, and must stop with 0.

    .venv/bin/python tests/exit_loops.py [-n 100] [--load 2] [--only replay-file,worker]

Exit status 0 when every run of every command ended with an expected code.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stress import Tally, busy, csauto, loop


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    ok: frozenset[int] = frozenset({0})
    ready: str | None = None  # long-running: SIGTERM once the output matches


def _first(db: Path, sql: str) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute(sql).fetchone()
    if row is None:
        raise SystemExit(f"the demo left nothing for: {sql}")
    return str(row[0])


def _backdrop(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`csauto dev` on the demo's folder, and its Temporal address once it is up."""
    proc = subprocess.Popen(
        [csauto(), "dev", "--data-dir", str(folder), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = b""
    for line in iter(proc.stdout.readline, b""):
        seen += line
        found = re.search(rb"^Temporal (127\.0\.0\.1:\d+)", seen, re.M)
        if found and b"signals in: POST" in seen:
            # drain the rest of its output so that it never blocks on a full pipe
            subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
            return proc, found.group(1).decode()
    raise SystemExit("csauto dev stopped before it was up:\n" + seen.decode(errors="replace"))


def cases(work: Path, address: str) -> list[Case]:
    demo = work / "demo"
    db = demo / "csauto.db"
    url = f"sqlite:///{db}"
    playbook = _first(
        db, "select workflow_id from playbook_runs where kind = 'playbook' order by started_at"
    )
    escalation = _first(db, "select workflow_id from escalations order by opened_at")
    task = _first(db, "select id from local_tasks where kind = 'task' order by id")
    exported = work / "exported"
    subprocess.run(
        [csauto(), "history", "export", playbook, "--out", str(exported)],
        check=True,
        capture_output=True,
        env={**os.environ, "CSAUTO_TEMPORAL_ADDRESS": address},
    )
    [history] = exported.glob("*.json")
    # refusals a user may meet: acknowledging what is acknowledged, completing what is done,
    # retrying when no dead letter is open
    refused = frozenset({0, 1})
    return [
        Case("replay-file", ["replay", "--file", str(history)]),
        Case("replay", ["replay", playbook, "--database-url", url]),
        Case("history-export", ["history", "export", playbook, "--out", str(work / "x")]),
        Case("escalations-ack", ["escalations", "ack", escalation, "--by", "mgr-01"], refused),
        Case("tasks-complete", ["tasks", "complete", task, "--database-url", url], refused),
        Case("connectors-sync", ["connectors", "sync", "--database-url", url]),
        Case("dlq-retry", ["dlq", "retry", "--all", "--database-url", url], refused),
        Case("runs-list", ["runs", "list", "--database-url", url]),
        Case("worker", ["worker"], ready=r"worker on "),
        Case("pipeline", ["pipeline", "--database-url", url], ready=r"pipeline: "),
        Case("scheduler", ["scheduler", "run", "--database-url", url], ready=r"scheduler on "),
        Case("serve", ["serve", "--port", "0", "--database-url", url], ready=r"review page on "),
        Case("browse", ["browse", "--data-dir", str(demo), "--port", "0"], ready=r"Temporal UI: "),
        Case(
            "dev",
            ["dev", "--data-dir", str(work / "dev"), "--port", "0"],
            ready=r"signals in: POST",
        ),
        Case(
            "demo",
            ["demo", "--data-dir", str(work / "demo-loop"), "--accounts", "30", "--port", "0"]
            + ["--day-seconds", "0.05"],
        ),
    ]


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="runs of each command (default 100)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--deadline", type=float, default=180.0)
    opts = parser.parse_args(args)
    with tempfile.TemporaryDirectory(prefix="csauto-exit-") as tmp:
        work = Path(tmp)
        subprocess.run(
            [csauto(), "demo", "--data-dir", str(work / "demo"), "--accounts", "40"]
            + ["--day-seconds", "0.05", "--port", "0"],
            check=True,
            capture_output=True,
        )
        backdrop, address = _backdrop(work / "demo")
        os.environ["CSAUTO_TEMPORAL_ADDRESS"] = address
        os.environ["CSAUTO_DATABASE_URL"] = f"sqlite:///{work / 'demo' / 'csauto.db'}"
        chosen = set(opts.only.split(",")) if opts.only else None
        results: list[tuple[Case, Tally]] = []
        keep = Path(".stress") / time.strftime("exit-%Y%m%dT%H%M%S")
        try:
            with busy(opts.load):
                for case in cases(work, address):
                    if chosen is not None and case.name not in chosen:
                        continue
                    tally = loop(
                        [csauto(), *case.argv],
                        opts.n,
                        deadline=opts.deadline,
                        ok=case.ok,
                        ready=case.ready,
                        keep=keep / case.name,
                    )
                    results.append((case, tally))
                    print(f"{case.name:16} {tally.summary()}", flush=True)
        finally:
            backdrop.send_signal(signal.SIGTERM)
            backdrop.wait(timeout=120)
    failed = [c.name for c, t in results if t.passes != t.runs]
    print(f"{len(results)} commands, {opts.n} runs each, {opts.load} spinning processes: ", end="")
    print(
        f"every run ended as expected; backdrop exit {backdrop.returncode}"
        if not failed
        else f"unexpected endings in {', '.join(failed)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
