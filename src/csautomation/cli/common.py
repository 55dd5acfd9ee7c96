"""What every `csauto` command shares: its consoles, its options, how it fails and how a
long-running command runs and stops.

The project's errors become a message and exit code 1 in one place (`CommandGroup`), so a
command lets them rise; SIGTERM stops a long-running command with 0, Ctrl-C with 130.
Text that came from users, senders or vendors is printed with `plain`: rich markup in it
is not interpreted and terminal control characters are written as escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from csautomation import bootstrap
from csautomation.errors import ConfigFileError, CsAutomationError
from csautomation.settings import Settings

if TYPE_CHECKING:
    from csautomation.runtime.probe import ProbeServer
    from csautomation.store.repo import Store

__all__ = [
    "AddressOpt",
    "CommandGroup",
    "DataDirOpt",
    "DbOpt",
    "FormatOpt",
    "MetricsPortOpt",
    "ShowOpt",
    "err",
    "fail",
    "import_rows",
    "print_rejected",
    "open_store",
    "out",
    "read_store",
    "plain",
    "probing",
    "run",
    "safe",
    "write_schema",
]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
T = TypeVar("T")
R = TypeVar("R")

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="default: CSAUTO_DATA_DIR")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="default: CSAUTO_DATABASE_URL")]
AddressOpt = Annotated[
    str | None, typer.Option("--temporal-address", help="default: CSAUTO_TEMPORAL_ADDRESS")
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv or jsonl (default: from the suffix)")
]
ShowOpt = Annotated[int, typer.Option("--show", help="rejected rows to list")]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        help="serve /metrics and /health/live on this port (default: CSAUTO_METRICS_PORT; "
        "none). Keep it private",
    ),
]


# C0 and C1 controls but newline and tab: an ESC in someone's text must not reach the
# terminal as an escape sequence
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(value: object) -> str:
    """`value` as text with its terminal control characters written as escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def plain(value: object) -> Text:
    """Text from users, senders or vendors, as rich prints it literally (a table cell too)."""
    return Text(safe(value))


def fail(exc: Exception) -> NoReturn:
    """Print `exc` for a person (each located problem on its own line) and exit 1. Messages
    quote people's values ('[/red]' in a field), so they are printed as text."""
    if isinstance(exc, ConfigFileError):
        for p in exc.problems:
            err.print(Text("error ", "red") + plain(p), soft_wrap=True)
        err.print(f"{len(exc.problems)} problem(s) found")
    else:
        err.print(Text("error ", "red") + plain(exc), soft_wrap=True)
    raise typer.Exit(1)


class CommandGroup(TyperGroup):
    """The `csauto` group: a project error raised by any command below it ends the command
    with its message and exit code 1, never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context: typer vendors click
        try:
            return super().invoke(ctx)
        except CsAutomationError as exc:
            fail(exc)


class _Terminated(Exception):
    """SIGTERM asked the process to stop: a requested stop, which ends with exit code 0."""


async def _stoppable(factory: Callable[[], Awaitable[T]]) -> T:
    """SIGTERM cancels the main task, so servers and workers shut down as on Ctrl-C."""
    task = asyncio.current_task()
    assert task is not None
    terminated: list[bool] = []

    def terminate() -> None:
        terminated.append(True)
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await factory()
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise


def run(factory: Callable[[], Awaitable[T]], fast_loop: bool = False) -> T:
    """Run a coroutine to completion; Ctrl-C ends it quietly, our errors end it clearly.
    `fast_loop`: on uvloop where it is installed (the HTTP server; docs/benchmarks.md)."""
    # A long-running process keeps caches of many small objects that the cyclic collector
    # would traverse again and again (docs/benchmarks.md: pipeline throughput). Set back
    # when the command ends: a command run inside another process (a test's CliRunner)
    # must not change that process's collector.
    before = gc.get_threshold()
    gc.set_threshold(10_000, 10, 10)
    loop_factory = None
    if fast_loop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_stoppable(factory))
    except _Terminated:
        err.print("stopped")
        raise typer.Exit(0) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("stopped")
        raise typer.Exit(130) from None
    except (CsAutomationError, ValueError) as exc:
        fail(exc)
    finally:
        gc.set_threshold(*before)


@contextlib.contextmanager
def probing(settings: Settings, port: int | None) -> Iterator[ProbeServer | None]:
    """This process's /metrics and /health/live while the block runs, when a port is
    given (`--metrics-port`, else CSAUTO_METRICS_PORT); yields the server, or None."""
    port = settings.metrics_port if port is None else port
    if port is None:
        yield None
        return
    from csautomation.runtime.probe import ProbeServer

    with ProbeServer(settings.metrics_host, port) as probe:
        out.print(f"metrics and liveness on {probe.url}/metrics, /health/live")
        yield probe


def write_schema(model: Any, title: str, output: Path | None) -> None:
    """Print (or write to `output`) a JSON Schema: a pydantic model's, or one given whole."""
    schema = model if isinstance(model, dict) else model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    text = json.dumps(schema, indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def open_store(database_url: str | None) -> Store:
    """The store of `--database-url` (default: CSAUTO_DATABASE_URL), created or migrated
    as needed: for the commands that write (`read_store` for those that only look)."""
    return bootstrap.open_store(bootstrap.settings(database_url=database_url))


def read_store(database_url: str | None, data_dir: Path | None = None) -> Store:
    """The store of `--database-url` (else `--data-dir`'s, else CSAUTO_*) as it is, for a
    command that only looks: nothing is created or migrated, and where there is no store
    the command stops with "no store at ...; did you mean --data-dir ...?". A data
    folder's store that holds nothing (made by an earlier release's command that looked)
    is read, with a warning naming the data folders that hold more."""
    settings = bootstrap.settings(data_dir=data_dir, database_url=database_url)
    store = bootstrap.read_store(settings)
    if bootstrap.default_store(settings) and store.is_empty():
        hint = bootstrap.where_else(settings)
        if hint.startswith("did you mean"):
            where = settings.data_dir / "csauto.db"
            err.print(
                Text("warning ", "yellow") + plain(f"the store at {where} is empty; {hint}"),
                soft_wrap=True,
            )
    return store


def import_rows(
    file: Path, format_: str | None, database_url: str | None, run: Callable[..., R]
) -> R:
    """A file import with a progress bar: `run(store, file, fmt, progress=...)` over the
    store of `--database-url`, once the file is found and its format known."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from csautomation.ingest.batch import detect_format

    if not file.is_file():
        raise CsAutomationError(f"{file}: no such file")
    try:
        fmt = detect_format(file, format_)
    except ValueError as exc:
        raise CsAutomationError(str(exc)) from exc
    store = open_store(database_url)
    with file.open("rb") as handle:
        lines = sum(1 for _ in handle)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as bar:
        task = bar.add_task(f"importing {file.name}", total=lines)
        return run(store, file, fmt, progress=lambda line: bar.update(task, completed=line))


def print_rejected(rejected: Sequence[object], show: int) -> None:
    """The first `show` rejected rows, each with its line and field; exit 1 if any."""
    for problem in rejected[:show]:
        out.print(f"  {problem}", soft_wrap=True, markup=False)
    if len(rejected) > show:
        out.print(f"  ... and {len(rejected) - show} more (--show N)")
    if rejected:
        raise typer.Exit(1)
