"""`csauto browse`: a data folder's Temporal runs in the Temporal UI, changing nothing.

The bundled dev server runs on a copy of the folder's temporal.db (SQLite's backup API: a
consistent copy even while another process writes), in a temporary folder deleted when it
stops. No worker and no pipeline run, so nothing polls the task queues and no workflow
resumes. What the server does by itself as it runs (timers that fall due, tasks that time
out, closed runs past the namespace's retention removed) and whatever is done in the UI
happen to the copy only. The frontend listens on a free port rather than 7233, so a worker
configured for the usual address cannot find it by mistake.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from csautomation.runtime.server import start_dev_server

DATABASE = "temporal.db"


@dataclass(frozen=True)
class Browsing:
    ui_url: str  # the UI's root; its workflows are under /namespaces/<ns>/workflows
    address: str  # the frontend (gRPC), for `csauto replay --temporal-address`
    copy: Path  # the copy the server runs on, gone when browsing ends


def copy_database(source: Path, target: Path) -> None:
    """`source` (opened read-only: it is not written, nor created) copied whole to
    `target`, as one consistent snapshot."""
    src = sqlite3.connect(f"file:{quote(str(source.resolve()))}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


@asynccontextmanager
async def browsing(
    data_dir: Path, ui_port: int | None = 8233, log_level: str = "error"
) -> AsyncIterator[Browsing]:
    """The dev server and its UI on a copy of `data_dir`'s temporal.db (which must exist),
    until the block ends; `ui_port` None or taken: a free one."""
    with tempfile.TemporaryDirectory(prefix="csauto-browse-") as folder:
        copy = Path(folder) / DATABASE
        await asyncio.to_thread(copy_database, data_dir / DATABASE, copy)
        server = await start_dev_server(
            Path(folder), port=None, ui_port=ui_port, log_level=log_level
        )
        try:
            yield Browsing(server.ui_url, server.address, copy)
        finally:
            await server.shutdown()
