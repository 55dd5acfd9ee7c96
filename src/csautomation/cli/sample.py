"""`csauto sample`: the deterministic sample data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csautomation.cli.common import out

app = typer.Typer(help="The deterministic sample data set.", no_args_is_help=True)

DATA_DIR = Path(".csauto/sample")


@app.command("generate")
def sample_generate(
    out_dir: Annotated[Path, typer.Option("--out")] = DATA_DIR,
    accounts: Annotated[int, typer.Option("--accounts")] = 500,
    days: Annotated[int, typer.Option("--days")] = 180,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Write the deterministic sample data set (accounts.jsonl, signals.jsonl)."""
    from csautomation.sample.generate import write_sample

    acc, sig = write_sample(out_dir, n_accounts=accounts, days=days, seed=seed)
    out.print(f"wrote {acc} and {sig}")
