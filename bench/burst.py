"""bench/burst: the demo's burst against the raw SDK's, in one run.

A. `csauto demo` itself (`runtime.demo.run_demo`, the shipped rules, playbooks and sample data
   set, a temporary data folder): the day's 513 signals are stored at once and the pipeline
   and the priority workers, in this process as in the demo, take them to tasks. Per
   account: signal stored -> its first task created (the demo's own figure).
B. The peer: the raw temporalio SDK on a fresh dev server (SQLite, WAL, as the demo's), its
   worker in this process, starting as many one-activity workflows as the demo's rules
   started, all at once (100 starts in flight, as bench/playbooks A), the activity noting
   only when it ran.
   Per workflow: burst start -> activity ran. Evaluation, templates, the store and the
   CRM are not in it: it is the floor under A's figure, on this machine, in this run.

Each part prints p50, p95 and max, its CPU (this process and the dev server, from /proc), and
the ratio of the p95s; `--repeat N` runs both N times, taking turns.

    .venv/bin/python bench/burst.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from temporalio.client import Client

from csautomation import bootstrap
from csautomation.runtime.demo import DemoOptions, run_demo
from csautomation.runtime.server import start_dev_server
from playbooks import (
    RAW_QUEUE,
    OneActivityWorkflow,
    bounded,
    pct,
    process_cpu,
    quiet_stdout,
    raw_worker,
)

GOAL_S = 5.0


def _dev_servers() -> dict[int, float]:
    """The CPU seconds of every running `temporal` dev server, by pid."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if (
                len(cmd) > 2
                and cmd[0].endswith(b"temporal")
                and cmd[1:3] == [b"server", b"start-dev"]
            ):
                out[int(proc.name)] = process_cpu([int(proc.name)])
        except OSError:
            continue
    return out


class Usage:
    """This process's and the dev servers' CPU over a block, in cores. The servers are read
    every 0.2 s on a thread: the demo's starts and stops inside the block."""

    def __enter__(self) -> Usage:
        self.t, self.me = time.perf_counter(), time.process_time()
        self.first = _dev_servers()
        self.last = dict(self.first)
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        while not self.done.wait(0.2):
            self.last.update(_dev_servers())

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.reader.join()
        self.last.update(_dev_servers())
        wall = time.perf_counter() - self.t
        server = sum(v - self.first.get(pid, 0.0) for pid, v in self.last.items())
        self.text = (
            f"this process {(time.process_time() - self.me) / wall:.2f} core, "
            f"dev server {server / wall:.2f} core, over {wall:.0f} s; "
            f"load average {os.getloadavg()[0]:.2f}"
        )


def _row(name: str, values: list[float]) -> str:
    return (
        f"  {name:<44} {len(values):>5} {pct(values, 50):>7.2f} {pct(values, 95):>7.2f} "
        f"{max(values):>7.2f}"
    )


async def demo(folder: Path) -> tuple[list[float], int, str]:
    """A: the demo in `folder`; (first-task latencies, workflows its rules started, CPU)."""
    settings = bootstrap.settings()
    config = bootstrap.load_configuration(settings)
    opts = DemoOptions(
        data_dir=folder,
        sample_dir=settings.data_dir / "sample",
        rule_paths=[settings.rules_path],
        playbooks=dict(config.playbooks),
        model=config.model,
        matrix_path=settings.escalation_matrix_path,
        people_path=settings.people_path,
        review_port=0,
    )
    with Usage() as usage:
        result = await run_demo(opts, Console(file=io.StringIO()))
    return result.first_task_latency, sum(result.firings.values()), usage.text


async def raw(folder: Path, n: int) -> tuple[list[float], str]:
    """B: `n` one-activity workflows started at once; (start -> activity ran, CPU)."""
    with quiet_stdout():
        server = await start_dev_server(folder, port=None, ui_port=None, ui=False)
    try:
        client = await Client.connect(server.address)  # the SDK's default converter
        async with raw_worker(client):
            t0 = time.time()

            async def one(i: int) -> float:
                handle = await client.start_workflow(
                    OneActivityWorkflow.run, f"acct-{i}", id=f"burst:{i}", task_queue=RAW_QUEUE
                )
                ran: float = await handle.result()
                return ran - t0

            with Usage() as usage:
                _, ran = await bounded(n, 100, one)
    finally:
        await server.shutdown()
    return ran, usage.text


async def main(repeat: int) -> None:
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"  {'path':<44} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    ratios, ours = [], []
    for i in range(repeat):
        folder = Path(tempfile.mkdtemp(prefix="bench-burst-"))
        try:
            first, started, a_cpu = await demo(folder / "demo")
            ran, b_cpu = await raw(folder / "raw", started)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(_row(f"A{i + 1}. demo: signal stored -> first task", first))
        print(f"      {a_cpu}")
        print(_row(f"B{i + 1}. raw SDK: {started} workflows, start -> activity", ran))
        print(f"      {b_cpu}")
        ratios.append(pct(first, 95) / pct(ran, 95))
        ours.append(pct(first, 95))
    print(f"demo first-task p95 / raw SDK p95: {', '.join(f'{r:.2f}x' for r in ratios)}")
    best = min(ours)
    verdict = "met" if best < GOAL_S else "NOT met"
    print(f"goal demo burst first-task p95 < {GOAL_S:g} s: {verdict} ({best:.2f} s at best)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of A and B, taking turns")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # "slack is not configured"
    sys.exit(asyncio.run(main(args.repeat)))
