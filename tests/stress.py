"""Run a test, or a command, many times on a busy machine, and count how each run ended.

A test that touches Temporal, processes or time can pass alone on a quiet machine and fail
one run in ten on CI; a command can do its work and then abort at exit. Both show up only
when repeated while the cores are busy. This runs the same thing N times while `--load`
other processes spin on the CPU, gives each run a deadline (a run past it is a hang: its
whole process group is killed), keeps the output of every run that did not pass under
`.stress/`, and prints passes, failures and hangs.

    make stress TEST=tests/audit N=50            # a test file, node id or folder, N times
    make stress CMD="replay --file h.json" N=100  # a csauto command, N times
    .venv/bin/python tests/stress.py pytest tests/workflows/test_playbook_runtime.py -n 50
    .venv/bin/python tests/stress.py command -n 100 -- csauto history export ID --out /tmp/x
    .venv/bin/python tests/stress.py command -n 20 --ready 'scheduler on' -- csauto scheduler run

`--ready REGEX`: a long-running command is sent SIGTERM once its output matches, and must
then stop by itself. `--ok 0,1`: the exit codes that count as a pass (default 0).
Exit status: 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HANG = -1000  # the exit code of a run that passed its deadline


@dataclass
class Tally:
    """How the runs ended: exit codes (HANG for a hang), and the kept outputs."""

    ok: frozenset[int] = frozenset({0})
    codes: Counter[int] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(self.codes.values())

    @property
    def passes(self) -> int:
        return sum(n for code, n in self.codes.items() if code in self.ok)

    @property
    def hangs(self) -> int:
        return self.codes[HANG]

    @property
    def failures(self) -> int:
        return self.runs - self.passes - self.hangs

    def summary(self) -> str:
        codes = ", ".join(
            f"{'hang' if c == HANG else f'exit {c}'}: {n}" for c, n in sorted(self.codes.items())
        )
        slowest = max(self.seconds, default=0.0)
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else 0.0
        return (
            f"{self.runs} runs: {self.passes} passed, {self.failures} failed, "
            f"{self.hangs} hung ({codes}); {mean:.1f} s a run on average, slowest {slowest:.1f} s"
        )


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """`processes` other processes spinning on the CPU until the block ends."""
    spinners = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_once(
    argv: Sequence[str], deadline: float, ready: re.Pattern[bytes] | None = None
) -> tuple[int, bytes]:
    """One run in its own process group: its exit code (HANG past the deadline) and its
    output. With `ready`, SIGTERM once the output matches it."""
    output = bytearray()
    hung = threading.Event()
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None

        def expire() -> None:
            hung.set()
            _kill_group(proc)

        timer = threading.Timer(deadline, expire)
        timer.start()
        signalled = False
        try:
            # to the end of the output: the process's, and that of anything it left holding
            # the pipe (a server it started and did not stop is a hang too)
            for line in iter(proc.stdout.readline, b""):
                output += line
                if ready is not None and not signalled and ready.search(output):
                    proc.send_signal(signal.SIGTERM)
                    signalled = True
            code = proc.wait()
        finally:
            timer.cancel()
            _kill_group(proc)
    return (HANG if hung.is_set() else code), bytes(output)


def loop(
    argv: Sequence[str],
    n: int,
    *,
    deadline: float,
    ok: frozenset[int] = frozenset({0}),
    ready: str | None = None,
    keep: Path | None = None,
    report: bool = False,
) -> Tally:
    """Run `argv` n times, one after another; the output of every run that did not pass is
    written under `keep`."""
    tally = Tally(ok=ok)
    pattern = re.compile(ready.encode()) if ready else None
    for i in range(1, n + 1):
        started = time.monotonic()
        code, output = run_once(argv, deadline, pattern)
        tally.seconds.append(time.monotonic() - started)
        tally.codes[code] += 1
        verdict = "pass" if code in ok else "HANG" if code == HANG else f"FAIL (exit {code})"
        if code not in ok and keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            path = keep / f"run-{i:03d}.log"
            path.write_bytes(output)
            tally.kept.append(path)
            verdict += f", output in {path}"
        if report:
            print(f"run {i}/{n}: {verdict} ({tally.seconds[-1]:.1f} s)", flush=True)
    return tally


def csauto() -> str:
    """The `csauto` script beside this Python (the project's virtualenv)."""
    return shutil.which("csauto", path=str(Path(sys.executable).parent)) or "csauto"


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("pytest", "command"))
    parser.add_argument("target", nargs="+", help="test ids (pytest), or the command's argv")
    parser.add_argument("-n", type=int, default=50, help="runs (default 50)")
    parser.add_argument(
        "--load",
        type=int,
        default=os.cpu_count() or 2,
        help="processes spinning on the CPU meanwhile (default: one a core)",
    )
    parser.add_argument("--deadline", type=float, help="seconds a run may take before it is a hang")
    parser.add_argument("--ready", help="command mode: SIGTERM once the output matches this")
    parser.add_argument("--ok", default="0", help="exit codes that pass (default 0)")
    opts = parser.parse_args(args)
    if opts.mode == "pytest":
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *opts.target]
        deadline = opts.deadline or 900.0
    else:
        argv = [csauto() if opts.target[0] == "csauto" else opts.target[0], *opts.target[1:]]
        deadline = opts.deadline or 120.0
    keep = Path(".stress") / time.strftime("%Y%m%dT%H%M%S")
    ok = frozenset(int(c) for c in opts.ok.split(","))
    print(f"{opts.n} runs of {' '.join(argv)}; {opts.load} spinning processes; {deadline:.0f} s")
    with busy(opts.load):
        tally = loop(
            argv, opts.n, deadline=deadline, ok=ok, ready=opts.ready, keep=keep, report=True
        )
    print(tally.summary())
    return 0 if tally.passes == tally.runs else 1


if __name__ == "__main__":
    sys.exit(main())
