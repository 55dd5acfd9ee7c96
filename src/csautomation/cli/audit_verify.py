"""`csauto audit verify`: the decision ledger's hash chain walked from its first entry to its
head, and its append-only triggers checked; exit code 0 when both hold, 1 when not.

    csauto audit verify [--head HASH] [--json]
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from csautomation.cli.common import DataDirOpt, DbOpt, out, read_store, safe

__all__ = ["verify"]


def verify(
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="a head noted at an earlier verification: it must still be in the chain "
            "(what a chain alone cannot show is entries cut from its end)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    database_url: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the ledger's hash chain and its append-only triggers (exit 1 if either fails).

    No entry may be altered, removed or moved since it was written (each carries the hash
    of the one before it), and the database must refuse UPDATE, DELETE and (PostgreSQL)
    TRUNCATE on the ledger (a trigger there, enabled, unconditional, refusing). Reads only,
    from the store as it is. Prints the head to keep with the audit."""
    from csautomation.store.chain import verify as walk

    result = walk(read_store(database_url, data_dir).engine, head)
    if as_json:
        out.print_json(json.dumps(result.to_json()))
    else:
        for b in result.breaks:
            out.print(b.render(), markup=False, style="red", soft_wrap=True)
        if result.more_breaks:
            out.print(f"... and {result.more_breaks} more", markup=False, style="red")
        state = "intact" if not result.breaks else "BROKEN"
        head_text = (
            f"head: entry #{result.head_id}, {result.head_hash}"
            if result.head_id is not None
            else "no entries"
        )
        out.print(
            f"ledger: {result.entries} entries, chain {state}; {head_text}",
            markup=False,
            soft_wrap=True,  # the head in one piece, to copy
        )
        if result.expected_head_found is not None:
            found = "is in the chain" if result.expected_head_found else "is NOT in the chain"
            out.print(f"the head you gave {found}: {safe(head)}", markup=False, soft_wrap=True)
        guards = ", ".join(g.render() for g in result.guards)
        out.print(f"append-only: {guards}", markup=False)
        if result.ok:
            out.print("verified", style="green")
        else:
            down = sum(not g.ok for g in result.guards)
            out.print(
                f"NOT verified: {len(result.breaks) + result.more_breaks} broken link(s), "
                f"{down} statement(s) not refused",
                style="red",
                markup=False,
            )
    if not result.ok:
        raise typer.Exit(1)
