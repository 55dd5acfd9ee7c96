"""Two csauto processes starting the bundled dev server at the same moment never share
one: the second takes a free port instead of connecting to the first's server (which
made a `csauto demo` wait for good for workflows that ran in another demo)."""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

import pytest

from csautomation.runtime.server import free_port, start_dev_server


@pytest.mark.asyncio
async def test_a_port_another_csauto_is_claiming_is_left_to_it(tmp_path: Path) -> None:
    wanted = free_port()
    # another csauto process holds the port's claim: it is starting a server on it
    with open(Path(tempfile.gettempdir()) / f"csauto-port-{wanted}.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        server = await start_dev_server(tmp_path, port=wanted, ui=False)
        try:
            assert server.address != f"127.0.0.1:{wanted}"
            assert server.claims == ()
        finally:
            await server.shutdown()


@pytest.mark.asyncio
async def test_a_free_unclaimed_port_is_taken_and_claimed(tmp_path: Path) -> None:
    wanted = free_port()
    server = await start_dev_server(tmp_path, port=wanted, ui=False)
    try:
        assert server.address == f"127.0.0.1:{wanted}"
        assert len(server.claims) == 1
        lock = Path(tempfile.gettempdir()) / f"csauto-port-{wanted}.lock"
        with open(lock, "a") as other, pytest.raises(OSError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        await server.shutdown()
    # given up with the server: the next csauto may have the port
    with open(Path(tempfile.gettempdir()) / f"csauto-port-{wanted}.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
