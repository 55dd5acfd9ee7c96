"""The scheduler: thin APScheduler jobs that only trigger work.

    config.py     schedules.yaml (pulls, sweeps, completion sync, misfire policy)
    leader.py     leader election by a lease row (SQLite and PostgreSQL)
    runs.py       run keys: each scheduled run claimed once, whoever leads
    executor.py   the misfire policy, and the fire time handed to each job
    jobs.py       the job functions (sweeps, pulls, completion sync) and the plan
    sweep.py      scheduled rules over every account, in batch mode
    scheduler.py  the process: elect, reconcile the job store, run while leading
    source_status.py  every pull and push source: last run, rows in and held, lag, last
                  error (`csauto sources status`, /metrics)

Its tables are the store's (store/scheduler_tables.py); its commands, `csauto scheduler run |
jobs | sweep`, are in cli/scheduler.py.

Modules are imported directly (`from csautomation.scheduling.sweep import sweep`): the
command line imports this package at start-up, and it stays light.
"""

__all__ = [
    "config", "executor", "jobs", "leader", "runs", "scheduler", "source_status", "sweep",
]  # fmt: skip
