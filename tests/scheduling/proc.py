"""A scheduler process for the tests, as `csauto scheduler run` runs one but with a short
lease and the rules' daily sweeps every second:

    python -m scheduling.proc DATABASE_URL RULES SCHEDULES HOLDER [TTL] [RENEW]

SIGTERM stops it cleanly (the lease handed over); SIGKILL is what the tests use for a
crash. Logs go to stderr, one line per record, with the holder's name.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from csautomation import logs
from csautomation.facts.health import load_health_model
from csautomation.pipeline import SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.scheduling.config import load_schedules
from csautomation.scheduling.jobs import JobSpec, every
from csautomation.scheduling.scheduler import SchedulerOptions, run_scheduler
from csautomation.store.repo import Store


def every_second(spec: JobSpec) -> JobSpec:
    if spec.id.startswith("sweep:"):
        return replace(spec, trigger=every(timedelta(seconds=1)), describe="every 1s")
    return spec


async def main(argv: list[str]) -> None:
    url, rules, schedules, holder = argv[:4]
    ttl, renew = (float(x) for x in (argv[4:6] or ["2", "0.25"]))
    store = Store(url)
    runtime = RuleRuntime([Path(rules)], load_health_model(), cooldowns=SqlCooldowns(store))
    options = SchedulerOptions(
        lease_ttl=timedelta(seconds=ttl),
        renew_every=timedelta(seconds=renew),
        holder=holder,
        pulls_module="scheduling.support",
        adjust=every_second,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await run_scheduler(
            store,
            runtime,
            load_schedules(Path(schedules), required=True),
            options=options,
            stop=stop,
        )
    finally:
        runtime.close()
    print(f"{holder} stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    logs.setup(logging.INFO, f"%(asctime)s {sys.argv[4]} %(name)s %(message)s")
    asyncio.run(main(sys.argv[1:]))
