"""The `csauto` process ends with its command's exit code, never an abort.

A process that used the Temporal SDK could abort at interpreter exit after doing its work
(SIGABRT, "PyGILState_Release: thread state ... must be current", temporalio/sdk-python
issue 300). Here the real commands run many times in their own processes while another one
keeps the cores busy; any abort, hang or exit code other than the command's own fails.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from csautomation.audit.replay import file_name
from csautomation.runner import exit_code
from stress import busy, csauto, loop

HISTORY = Path(__file__).parent / "workflows" / "histories" / "usage-recovery.json"
RUNS = 20


@pytest.mark.parametrize(
    ("code", "expected"), [(None, 0), (0, 0), (3, 3), (True, 1), (256 + 7, 7), ("bad", 1)]
)
def test_exit_codes_are_read_as_the_interpreter_reads_them(code: object, expected: int) -> None:
    assert exit_code(code) == expected


def test_the_exit_flushes_output_and_runs_the_exit_hooks() -> None:
    script = (
        "import atexit, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from csautomation.runner import run_and_exit\n"
        "atexit.register(lambda: print('exit hook ran'))\n"
        "pool = ThreadPoolExecutor(2)\n"  # idle worker threads, never shut down by the command
        "pool.submit(print, 'pool ran').result()\n"
        "def command():\n"
        "    print('done', end='')\n"  # no newline: only a flush writes it
        "    print('to stderr', file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "run_and_exit(command)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "pool ran\ndoneexit hook ran\n"
    assert done.stderr == "to stderr\n"


def test_an_unexpected_error_is_shown_and_exits_1() -> None:
    script = (
        "from csautomation.runner import run_and_exit\n"
        "def command():\n"
        "    raise RuntimeError('boom')\n"
        "run_and_exit(command)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr and "Fatal Python error" not in done.stderr


@pytest.mark.slow
@pytest.mark.asyncio
async def test_temporal_commands_exit_cleanly_again_and_again_on_a_busy_machine(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a replayer in a process of its own (offline), and a client's (history from the server)
    workflow_id = "playbook:recorded:ACME:usage-recovery"
    history = tmp_path / file_name(workflow_id)
    shutil.copy(HISTORY, history)
    probe = await client.start_workflow(
        "ExitLoopProbe", id=f"exit-loop-{uuid.uuid4()}", task_queue=f"nobody-{uuid.uuid4()}"
    )
    monkeypatch.setenv("CSAUTO_TEMPORAL_NAMESPACE", client.namespace)  # the commands' too
    address = client.service_client.config.target_host
    # the code alone: the history's playbook is an older version of the shipped one, and
    # replay reports a changed playbook as a difference (exit 1), as it should
    replay = [csauto(), "replay", "--file", str(history), "--code-only"]
    export = [csauto(), "history", "export", probe.id, "--out", str(tmp_path / "out")]
    export += ["--temporal-address", address]
    try:
        with busy(1):  # with the two loops, both cores busy
            replayed, exported = await asyncio.gather(
                asyncio.to_thread(loop, replay, RUNS, deadline=120, keep=tmp_path / "replay"),
                asyncio.to_thread(loop, export, RUNS, deadline=120, keep=tmp_path / "export"),
            )
    finally:
        await probe.terminate("exit loop over")
    for what, tally in (("replay --file", replayed), ("history export", exported)):
        kept = "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in tally.kept[:3])
        assert tally.passes == RUNS, f"csauto {what}: {tally.summary()}{kept}"
