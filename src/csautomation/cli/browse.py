"""`csauto browse`: look at a data folder's workflow runs in the Temporal UI (a finished
demo's: `csauto browse --data-dir .csauto/demo`) without resuming them.

`csauto dev` on the same folder would start workers, and the runs the demo left waiting
would carry on. This starts only the bundled Temporal server and its UI, on a copy of the
folder's temporal.db (csautomation.runtime.browse), until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from csautomation import bootstrap
from csautomation.cli.common import DataDirOpt, err, out, run
from csautomation.errors import NoStoreError


def browse(
    data_dir: DataDirOpt = None,
    port: Annotated[
        int, typer.Option("--port", min=0, help="the UI's port (0, or taken: a free one)")
    ] = 8233,
) -> None:
    """The Temporal UI over a data folder's runs, changing nothing: the bundled server on a
    copy of its temporal.db, with no worker, so no workflow resumes. Ctrl-C stops it and
    deletes the copy."""
    from csautomation.runtime.browse import DATABASE, browsing

    settings = bootstrap.settings(data_dir=data_dir)
    source = settings.data_dir / DATABASE
    if not source.is_file():
        raise NoStoreError(
            str(source), bootstrap.where_else(settings, DATABASE), what="Temporal data"
        )
    namespace = settings.temporal_namespace

    async def main() -> None:
        async with browsing(
            settings.data_dir, ui_port=port or None, log_level=settings.temporal_log_level
        ) as b:
            out.print(f"Temporal UI: {b.ui_url}/namespaces/{namespace}/workflows", markup=False)
            out.print(
                f"  the runs of {source}, on a copy: no worker runs, so nothing resumes, and "
                "nothing done here reaches the data folder",
                markup=False,
                soft_wrap=True,
            )
            out.print(
                f"  Temporal at {b.address}: `csauto replay WORKFLOW_ID --temporal-address "
                f"{b.address}`, or `csauto history export` to keep histories",
                markup=False,
                soft_wrap=True,
            )
            err.print("Ctrl-C stops it and deletes the copy")
            await asyncio.Event().wait()

    run(main)
