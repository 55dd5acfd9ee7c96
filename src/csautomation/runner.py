"""The process edge of `csauto`: run one command, then leave with its exit code and nothing else.

A process that used the Temporal SDK (a client, a worker, a replayer) keeps the SDK's Rust
threads alive until the interpreter finalizes; when one of them touches the GIL while Python
is finalizing, the process aborts (SIGABRT, exit code 134 or -6) after the command has done
its work and printed its result (temporalio/sdk-python issue 300). The SDK offers no way to
stop those threads. So the runner does at the end what finalization would do that matters
(the threading and atexit hooks: idle thread pools, logging and exporters flushed, temporary
files removed; then stdout and stderr flushed) and leaves with `os._exit`, before
finalization starts.

A watchdog bounds that exit work: if it has not finished in `EXIT_DEADLINE_SECONDS`, Python's
faulthandler (a C thread, which needs no GIL) prints every thread's stack and ends the
process with exit code 1, so a wedged exit is a visible failure, never a hang.

Exit codes: 0 done; 1 an error, stated on stderr; 2 a usage mistake (an unknown option, a
missing argument); 130 stopped by Ctrl-C. A long-running command stopped by SIGTERM shuts
down as on Ctrl-C and exits with 0.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NoReturn

__all__ = ["EXIT_DEADLINE_SECONDS", "exit_code", "run_and_exit"]

EXIT_DEADLINE_SECONDS = 60.0


def exit_code(code: object) -> int:
    """The process exit code a `SystemExit(code)` stands for, as the interpreter reads it;
    a message (a string) is printed to stderr and means 1."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _invoke(command: Callable[[], object]) -> int:
    try:
        command()
    except SystemExit as exc:
        return exit_code(exc.code)
    except KeyboardInterrupt:
        return 130
    except BaseException:  # the process edge: shown as the interpreter would, then exit 1
        traceback.print_exc()
        return 1
    return 0


def _finish() -> None:
    """What interpreter finalization would do that a user can see: join non-daemon threads
    and run the threading exit hooks (thread pools), then the atexit callbacks (logging's
    flush, exporters, temporary files)."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    atexit._run_exitfuncs()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`csauto ... | head`): nothing left to keep
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def run_and_exit(command: Callable[[], object]) -> NoReturn:
    """Run `command` (a Typer or Click app in standalone mode), finish the process's exit
    work under the watchdog, and leave with the command's exit code."""
    code = _invoke(command)
    faulthandler.dump_traceback_later(EXIT_DEADLINE_SECONDS, exit=True)
    try:
        _finish()
    except BaseException:  # an exit hook failed: said, and the command's code kept
        traceback.print_exc()
    _flush()
    os._exit(code)
